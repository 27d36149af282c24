"""The junk filter's rspamd client (``[junk] rspamd_url``) against a real rspamd.

A private rspamd runs in the foreground on a free loopback port with a minimal config
(no Lua rules, no redis, a three-entry public-suffix list, caches in its temp dir) so
it starts in about a second and writes nothing outside that dir.  Its core still
recognises GTUBE, which gives a known high score; a plain message scores 0.  The test
delivers both over SMTP to a real ``correo serve`` and looks where a user would: the
Junk folder over IMAP, INBOX over POP3.  That test is skipped when rspamd is not
installed (Debian: ``apt-get install --no-install-recommends rspamd``); the fallback
test (rspamd unreachable) always runs.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, quiet_dns
from tests.server.helpers import RawSmtp, mailbox

RSPAMD = shutil.which("rspamd")

ALICE = "alice@example.test"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

CONFIG = """\
options {{
  pidfile = "{dir}/rspamd.pid";
  filters = "";
  disable_hyperscan = true;
  hs_cache_dir = "{dir}";
  maps_cache_dir = "{dir}";
  url_tld = "{dir}/tld.dat";
  dns {{ nameserver = ["{dns}"]; timeout = 1s; retransmits = 1; }}
}}
logging {{ type = "console"; level = "notice"; }}
actions {{ reject = 15; add_header = 6; greylist = 4; }}
worker "normal" {{ bind_socket = "127.0.0.1:{port}"; count = 1; }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private rspamd; yields its base URL."""
    assert RSPAMD is not None
    work = tmp_path_factory.mktemp("rspamd")
    port = free_port()
    (work / "rspamd.conf").write_text(CONFIG.format(dir=work, dns=quiet_dns(), port=port))
    (work / "tld.dat").write_text("com\norg\ntest\n")  # the full list takes 15 s to compile
    args = [RSPAMD, "-f", "-c", str(work / "rspamd.conf")]
    args += [f"--var={v}={work}" for v in ("DBDIR", "RUNDIR", "LOGDIR")]
    if os.geteuid() == 0:
        args += ["-u", "root", "-g", "root", "-i"]  # it refuses root workers otherwise
    log = (work / "rspamd.log").open("wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1) as reply:
                if reply.read().strip() == b"pong":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("rspamd did not start:\n" + (work / "rspamd.log").read_text()[-3000:])
        time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def smtp_send(srv: Server, data: bytes) -> None:
    c = RawSmtp(srv.ports["smtp"])
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<dave@remote.test>")[0] == 250
    assert c.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(data + b"\r\n.\r\n")
    try:
        code, text = c.reply()
    except OSError as exc:
        raise AssertionError(f"{exc}; server log:\n{srv.log()[-4000:]}") from exc
    assert code == 250, text
    c.cmd("QUIT")
    c.close()


def message(subject: str, body: str) -> bytes:
    return (
        f"From: Dave <dave@remote.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n"
        f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    ).encode()


def imap_folder(srv: Server, name: str) -> list[bytes]:
    """Every message in alice's ``name`` folder (empty if it does not exist)."""
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.starttls(client_tls())
    m.login(ALICE, PASSWORDS[ALICE])
    try:
        typ, _ = m.select(f'"{name}"', readonly=True)
        if typ != "OK":
            return []
        _, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        m.logout()


def header_of(data: bytes) -> bytes:
    return data.partition(b"\r\n\r\n")[0]


@pytest.mark.skipif(RSPAMD is None, reason="rspamd is not installed")
def test_rspamd_score_sorts_spam_into_junk(
    rspamd: str, start_server: Callable[[dict[str, str]], Server]
) -> None:
    srv = start_server({"rspamd_url": f'"{rspamd}"'})
    smtp_send(srv, message("Cheap watches", f"Buy now.\r\n{GTUBE}"))
    smtp_send(srv, message("Lunch on Friday", "Shall we meet at noon?"))

    junk = imap_folder(srv, "Junk")
    assert len(junk) == 1
    head = header_of(junk[0])
    assert b"Subject: Cheap watches" in head
    assert b"X-Spam: yes (tests=rspamd)" in head
    assert b"X-Spam-Score: 15.0" in head  # our [actions] reject = 15, GTUBE's score

    inbox = mailbox(srv.ports["pop3s"], ALICE)
    assert len(inbox) == 1
    head = header_of(inbox[0])
    assert b"Subject: Lunch on Friday" in head
    assert b"X-Spam: no (tests=rspamd)" in head
    assert b"X-Spam-Score: 0.0" in head


def test_rspamd_unreachable_falls_back_to_own_score(
    start_server: Callable[[dict[str, str]], Server],
) -> None:
    """rspamd down: mail is still delivered, scored by our own signals (GTUBE is 0)."""
    with socket.socket() as closed:  # bound, never listening: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        srv = start_server({"rspamd_url": f'"http://127.0.0.1:{port}"'})
        smtp_send(srv, message("Cheap watches", f"Buy now.\r\n{GTUBE}"))

    inbox = mailbox(srv.ports["pop3s"], ALICE)
    assert len(inbox) == 1
    head = header_of(inbox[0])
    assert b"X-Spam: no" in head
    assert b"tests=rspamd" not in head
    assert imap_folder(srv, "Junk") == []
    assert "event=junk.rspamd_failed" in srv.log()
