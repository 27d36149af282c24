"""Postfix -> correo over LMTP (issue 7 §1): a throwaway Postfix instance whose
``virtual_transport`` is correo's LMTP listener delivers one message end to end."""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, make_data_dir
from tests.server.helpers import mailbox

POSTFIX = shutil.which("postfix") or (
    "/usr/sbin/postfix" if Path("/usr/sbin/postfix").exists() else None
)
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(POSTFIX is None, reason="postfix not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a Postfix instance must start as root"),
]

_MASTER = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postfix(tmp_path: Path) -> Iterator[tuple[Server, int, Path]]:
    data = tmp_path / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]', "lmtp": '["127.0.0.1:0"]'})
    srv = Server(data)
    srv.start()
    work = Path(tempfile.mkdtemp(prefix="correo-postfix-"))
    work.chmod(0o755)
    etc, spool, pdata = work / "etc", work / "spool", work / "data"
    for d in (etc, spool, pdata):
        d.mkdir(mode=0o755)
    pw = pwd.getpwnam("postfix")
    os.chown(pdata, pw.pw_uid, pw.pw_gid)
    host = "127.0.0.1"  # 127.0.0.5 is not a local interface in every container
    port = _free_port(host)
    (etc / "main.cf").write_text(
        f"""compatibility_level = 3.6
config_directory = {etc}
queue_directory = {spool}
data_directory = {pdata}
maillog_file = {work}/postfix.log
maillog_file_prefixes = {work}
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.example.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
virtual_mailbox_domains = example.test
virtual_mailbox_maps = static:ok
virtual_transport = lmtp:inet:127.0.0.1:{srv.ports["lmtp"]}
lmtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = no
"""
    )
    (etc / "master.cf").write_text(_MASTER.replace("{listen}", f"{host}:{port}"))
    subprocess.run([POSTFIX, "-c", str(etc), "check"], check=False, capture_output=True)
    started = subprocess.run([POSTFIX, "-c", str(etc), "start"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "postfix did not listen"
                time.sleep(0.1)
        yield srv, port, work
    finally:
        subprocess.run([POSTFIX, "-c", str(etc), "stop"], check=False, capture_output=True)
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_postfix_delivers_over_lmtp(postfix: tuple[Server, int, Path]) -> None:
    srv, port, work = postfix
    before = len(mailbox(srv.ports["pop3s"], "bob@example.test"))
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.sendmail(
            "dave@remote.test",
            ["bob@example.test"],
            b"From: dave@remote.test\r\nTo: bob@example.test\r\nSubject: via postfix\r\n\r\nHi\r\n",
        )
    deadline = time.monotonic() + 30
    while True:
        stored = mailbox(srv.ports["pop3s"], "bob@example.test")
        if len(stored) > before or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    log = (work / "postfix.log").read_text() if (work / "postfix.log").exists() else ""
    assert len(stored) == before + 1, log[-3000:]
    assert b"Subject: via postfix" in stored[-1] and b"with LMTP" in stored[-1]
    assert "status=sent" in log
