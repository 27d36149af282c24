"""Anti-spoofing end to end: a real correo MX resolving against a local DNS server.

The DNS half (the local server and correo's resolver reading it) runs now.  The MX half
needs the lead's wiring of :class:`correo.mailauth.MessageAuthenticator` into
``smtp_session.py``; those tests are skipped until it lands (remove the skip marks then).
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator

import pytest

from correo.dns import DnsNotFound, DnsPythonResolver
from correo.mailauth.keys import dns_record
from correo.mailauth.signing import DkimSigner, SigningKey
from tests.server.dnsserver import DnsServer, Zone

pytestmark = pytest.mark.timeout(60)

KEY_ZONE: Zone = {
    "sender.example": {
        "TXT": ["v=spf1 ip4:192.0.2.1 -all"],
        "MX": ["10 mx.sender.example."],
    },
    "_dmarc.sender.example": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@sender.example"]},
    "alias.sender.example": {"CNAME": ["sender.example"]},
}


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer({k: dict(v) for k, v in KEY_ZONE.items()}) as server:
        yield server


def test_resolver_reads_the_local_server(dns_server: DnsServer) -> None:
    resolver = DnsPythonResolver([dns_server.address], timeout=3)

    async def run() -> None:
        assert await resolver.txt("_dmarc.sender.example") == [
            b"v=DMARC1; p=reject; rua=mailto:d@sender.example"
        ]
        assert (await resolver.mx("sender.example"))[0].host == "mx.sender.example"
        assert await resolver.txt("alias.sender.example") == [b"v=spf1 ip4:192.0.2.1 -all"]
        with pytest.raises(DnsNotFound):
            await resolver.txt("nothing.sender.example")

    asyncio.run(run())


def test_long_txt_records_are_split_and_joined(dns_server: DnsServer) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns_server.zone["rsa._domainkey.sender.example"] = {"TXT": [dns_record(key)]}
    resolver = DnsPythonResolver([dns_server.address], timeout=3)
    got = asyncio.run(resolver.txt("rsa._domainkey.sender.example"))
    assert got == [dns_record(key).encode()]


WIRING = pytest.mark.skip(reason="needs the lead's MessageAuthenticator wiring in smtp_session")


def _message(from_addr: str) -> bytes:
    return (
        f"From: {from_addr}\r\nTo: alice@example.test\r\nSubject: e2e\r\n"
        "Message-ID: <e2e@sender.example>\r\n\r\nhello\r\n"
    ).encode()


@WIRING
def test_spoofed_mail_from_p_reject_domain_is_refused(
    dns_server: DnsServer, start_server: object
) -> None:
    server = start_server({"nameservers": f'["{dns_server.address}"]'})  # type: ignore[operator]
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("mx.spoofer.example")
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail(
                "ceo@sender.example", ["alice@example.test"], _message("ceo@sender.example")
            )
        assert info.value.smtp_code == 550
        assert b"5.7.1" in info.value.smtp_error


@WIRING
def test_signed_message_passes_with_authentication_results(
    dns_server: DnsServer, start_server: object
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    dns_server.zone["ed._domainkey.sender.example"] = {"TXT": [dns_record(key)]}
    message = _message("news@sender.example")
    signed = DkimSigner([SigningKey("sender.example", "ed", key)]).sign(message) + message
    server = start_server({"nameservers": f'["{dns_server.address}"]'})  # type: ignore[operator]
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("mx.sender.example")
        smtp.sendmail("bounce@sender.example", ["alice@example.test"], signed)
    # The stored copy carries: Authentication-Results: localhost; ... dkim=pass
    # header.d=sender.example ...; dmarc=pass — read it back over POP3 once wired.
    log = server.log()
    assert "smtp.accepted" in log
