"""Anti-spoofing end to end: a real correo MX resolving against a local DNS server."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
from collections.abc import Iterator

import pytest

from correo.dns import DnsNotFound, DnsPythonResolver
from correo.mailauth.keys import dns_record
from correo.mailauth.signing import DkimSigner, SigningKey
from tests.conftest import PASSWORDS, client_tls
from tests.server.dnsserver import DnsServer, Zone
from tests.server.helpers import mailbox

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


def _message(from_addr: str) -> bytes:
    return (
        f"From: {from_addr}\r\nTo: alice@example.test\r\nSubject: e2e\r\n"
        "Message-ID: <e2e@sender.example>\r\n\r\nhello\r\n"
    ).encode()


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
    (stored,) = mailbox(server.ports["pop3s"], "alice@example.test")
    header = stored.split(b"\r\n\r\n")[0].replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ")
    results = [
        line for line in header.split(b"\r\n") if line.startswith(b"Authentication-Results:")
    ]
    assert len(results) == 1, header
    assert results[0].startswith(b"Authentication-Results: localhost;")
    assert b"dkim=pass" in results[0] and b"header.d=sender.example" in results[0]
    assert b"spf=fail" in results[0]  # 127.0.0.1 is not in sender.example's SPF record
    assert b"dmarc=pass" in results[0]  # aligned DKIM is enough (RFC 7489 §4.2)


def test_forged_results_are_removed_and_quarantine_goes_to_junk(
    dns_server: DnsServer, start_server: object
) -> None:
    dns_server.zone["_dmarc.q.example"] = {"TXT": ["v=DMARC1; p=quarantine"]}
    dns_server.zone["q.example"] = {"TXT": ["v=spf1 -all"]}
    server = start_server({"nameservers": f'["{dns_server.address}"]'})  # type: ignore[operator]
    forged = b"Authentication-Results: localhost; dmarc=pass\r\n" + _message("boss@q.example")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("boss@q.example", ["alice@example.test"], forged)
    assert mailbox(server.ports["pop3s"], "alice@example.test") == []
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=client_tls())
    client.login("alice@example.test", PASSWORDS["alice@example.test"])
    client.select("Junk")
    _, data = client.fetch("1", "(BODY.PEEK[HEADER])")
    header = data[0][1]
    client.logout()
    assert header.count(b"Authentication-Results: localhost") == 1
    assert b"dmarc=fail" in header


def test_submitted_mail_is_dkim_signed(dns_server: DnsServer, start_server: object) -> None:
    from correo.directory.dkim_files import FileKeyStore
    from correo.mailauth.keys import load_domain_keys

    server = start_server({"nameservers": f'["{dns_server.address}"]'})  # type: ignore[operator]
    for key in load_domain_keys(FileKeyStore(server.data), "example.test"):
        dns_server.zone[f"{key.selector}._domainkey.example.test"] = {"TXT": [dns_record(key.key)]}
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=client_tls()) as smtp:
        smtp.login("alice@example.test", PASSWORDS["alice@example.test"])
        smtp.sendmail("alice@example.test", ["bob@example.test"], _message("alice@example.test"))
    (stored,) = mailbox(server.ports["pop3s"], "bob@example.test")
    signed = stored.split(b"\r\n", 1)[1]  # without Return-Path, as it would be queued
    assert signed.count(b"DKIM-Signature:") == 2  # ed25519 and rsa-sha256
    import dkim

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        record = dns_server.zone[name.decode().rstrip(".")]["TXT"][0]
        return record.encode() if isinstance(record, str) else record

    assert dkim.verify(signed + b"\r\n", dnsfunc=dnsfunc)
