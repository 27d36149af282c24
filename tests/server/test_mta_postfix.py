"""Interop with Debian's Postfix, both ways, through a throwaway instance on 127.0.0.4
(all MXs on ``MX_PORT``).

correo (a.test) → MX of pf.test = Postfix → transport → correo (b.test): correo's client
talks to Postfix's smtpd, and Postfix's smtp client talks to correo's MX.  A message
injected into Postfix for b.test takes the second leg alone.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tests.server.conftest_mta import MX_PORT, DnsServer, Instance, correo, message
from tests.server.postfix import Postfix, needs_postfix

pytestmark = needs_postfix

# Relays pf.test and b.test to correo's b.test MX; retries fast.
SETTINGS = """\
relay_domains = pf.test
transport_maps = texthash:{etc}/transport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_tls_security_level = may
smtp_host_lookup = native
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    with Postfix() as pf:
        (pf.etc / "transport").write_text(
            f"pf.test smtp:[127.0.0.3]:{MX_PORT}\nb.test smtp:[127.0.0.3]:{MX_PORT}\n"
        )
        pf.start("mx.pf.test", f"127.0.0.4:{MX_PORT}", SETTINGS.format(etc=pf.etc))
        yield pf


def test_postfix_interop_both_ways(
    instances: object, dns_server: DnsServer, postfix: Postfix
) -> None:
    dns_server.zone["pf.test"] = {"MX": ["10 mx.pf.test"]}
    dns_server.zone["mx.pf.test"] = {"A": ["127.0.0.4"]}
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    assert correo(b.data, "domain", "add", "pf.test").returncode == 0
    assert correo(b.data, "alias", "add", "bob@pf.test", "bob@b.test").returncode == 0
    # correo → Postfix → correo
    a.submit("alice@a.test", ["bob@pf.test"], message("alice@a.test", "bob@pf.test", "via pf"))
    # Postfix → correo
    with smtplib.SMTP("127.0.0.4", MX_PORT, timeout=10) as s:
        s.sendmail(
            "carol@outside.test",
            ["bob@b.test"],
            message("carol@outside.test", "bob@b.test", "from pf"),
        )
    box = b.wait_mail("bob", 2, timeout=25)
    assert len(box) == 2, a.log()[-2000:] + postfix.log()[-3000:]
    joined = b"\n".join(box)
    assert b"Subject: via pf" in joined and b"Subject: from pf" in joined
    assert b"by mx.pf.test (Postfix)" in joined
    assert "mx.pf.test" in a.log() and "event=queue.delivered" in a.log()
