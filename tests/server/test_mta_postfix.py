"""Interop with Debian's Postfix, both ways, through a throwaway instance on 127.0.0.4:25.

correo (a.test) → MX of pf.test = Postfix → transport → correo (b.test): correo's client
talks to Postfix's smtpd, and Postfix's smtp client talks to correo's MX.  A message
injected into Postfix for b.test takes the second leg alone.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest_mta import DnsServer, Instance, correo, message

pytest_plugins = ["tests.server.conftest_mta"]

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# inet_interfaces names a configured address (127.0.0.4 is routable on Linux but not
# listed on lo); master.cf binds the smtpd to 127.0.0.4:25 explicitly.
MAIN_CF = """\
compatibility_level = 3.6
config_directory = {w}/etc
queue_directory = {w}/spool
data_directory = {w}/data
maillog_file = {w}/postfix.log
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.pf.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = pf.test
transport_maps = texthash:{w}/etc/transport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtp_tls_security_level = may
smtpd_tls_security_level = none
smtputf8_enable = no
smtp_host_lookup = native
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

MASTER_CF = """\
127.0.0.4:25 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@pytest.fixture
def postfix() -> Iterator[Path]:
    if os.geteuid() != 0 or not Path(POSTFIX).exists():
        pytest.skip("needs root and Debian's postfix")
    w = Path(f"/var/tmp/correo-mta-postfix-{os.getpid()}")
    shutil.rmtree(w, ignore_errors=True)
    (w / "etc").mkdir(parents=True)
    (w / "data").mkdir()
    (w / "spool").mkdir()
    w.chmod(0o755)
    shutil.chown(w / "data", "postfix", "postfix")
    (w / "etc" / "main.cf").write_text(MAIN_CF.format(w=w))
    (w / "etc" / "master.cf").write_text(MASTER_CF)
    (w / "etc" / "transport").write_text(
        "pf.test smtp:[127.0.0.3]:25\nb.test smtp:[127.0.0.3]:25\n"
    )
    pf = [POSTFIX, "-c", str(w / "etc")]
    subprocess.run([*pf, "check"], capture_output=True, timeout=60, check=False)
    r = subprocess.run([*pf, "start"], capture_output=True, text=True, timeout=60, check=False)
    if r.returncode != 0:
        shutil.rmtree(w, ignore_errors=True)
        pytest.fail(f"postfix start failed: {r.stdout}{r.stderr}")
    yield w
    subprocess.run([*pf, "stop"], capture_output=True, timeout=60, check=False)
    time.sleep(0.2)
    shutil.rmtree(w, ignore_errors=True)


def test_postfix_interop_both_ways(instances: object, dns_server: DnsServer, postfix: Path) -> None:
    dns_server.zone["pf.test"] = {"MX": ["10 mx.pf.test"]}
    dns_server.zone["mx.pf.test"] = {"A": ["127.0.0.4"]}
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    assert correo(b.data, "domain", "add", "pf.test").returncode == 0
    assert correo(b.data, "alias", "add", "bob@pf.test", "bob@b.test").returncode == 0
    # correo → Postfix → correo
    a.submit("alice@a.test", ["bob@pf.test"], message("alice@a.test", "bob@pf.test", "via pf"))
    # Postfix → correo
    with smtplib.SMTP("127.0.0.4", 25, timeout=10) as s:
        s.sendmail(
            "carol@outside.test",
            ["bob@b.test"],
            message("carol@outside.test", "bob@b.test", "from pf"),
        )
    box = b.wait_mail("bob", 2, timeout=25)
    log = (postfix / "postfix.log").read_text() if (postfix / "postfix.log").exists() else ""
    assert len(box) == 2, a.log()[-2000:] + log[-3000:]
    joined = b"\n".join(box)
    assert b"Subject: via pf" in joined and b"Subject: from pf" in joined
    assert b"by mx.pf.test (Postfix)" in joined
    assert "mx.pf.test" in a.log() and "event=queue.delivered" in a.log()
