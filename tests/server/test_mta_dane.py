"""DANE end to end (RFC 7672): a.test sends to b.test through a resolver that validates.

The test DNS server plays the validating resolver: answers for the names in its
``signed`` set carry the AD bit, which a.test trusts with ``[dns] dnssec = true``.
b.test keeps the self-signed certificate ``correo init`` wrote; the TLSA record names
its key (``3 1 1``), or a key it does not have.
"""

from __future__ import annotations

import hashlib
import re
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from correo.dane import record_for
from tests.conftest import correo
from tests.server.conftest_mta import MX_PORT, DnsServer, Instance, message

pytestmark = pytest.mark.timeout(120)

TLSA_NAME = f"_{MX_PORT}._tcp.mx.b.test"  # [outbound] port is the MX port of the tests
SIGNED = {"b.test", "mx.b.test", TLSA_NAME}


def _sender(instances: object) -> Instance:
    """a.test, trusting the AD bit of its resolver."""
    a: Instance = instances("a.test", "127.0.0.2", start=False)  # type: ignore[operator]
    path = a.data / "correo.toml"
    cfg = re.sub(r"(?m)^dnssec = .*\n", "", path.read_text())
    cfg = re.sub(r"(?m)^(nameservers = .*)$", r"\1\ndnssec = true", cfg)
    path.write_text(cfg)
    a.start()
    return a


def _wait(predicate: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _b_record(b: Instance) -> str:
    return record_for((b.data / "tls" / "cert.pem").read_bytes()).text()


def test_matching_tlsa_delivers_over_tls(instances: object, dns_server: DnsServer) -> None:
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    dns_server.zone[TLSA_NAME] = {"TLSA": [_b_record(b)]}
    dns_server.signed |= SIGNED
    a = _sender(instances)
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "dane ok"))
    box = b.wait_mail("bob", 1)
    assert len(box) == 1 and b"Subject: dane ok" in box[0], a.log()[-3000:]
    log = a.log()
    assert re.search(r"event=queue\.tls host=mx\.b\.test .*tls=\"TLSv1\.[23] \S+ DANE\"", log), log
    assert (TLSA_NAME, "TLSA") in dns_server.queries


def test_mismatching_tlsa_holds_the_mail_without_plaintext_retry(
    instances: object, dns_server: DnsServer
) -> None:
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    wrong = "3 1 1 " + hashlib.sha256(b"not b's key").hexdigest()
    dns_server.zone[TLSA_NAME] = {"TLSA": [wrong]}
    dns_server.signed |= SIGNED
    a = _sender(instances)
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "dane bad"))
    # two attempts (retry_initial is 1 s), each refused by DANE
    assert _wait(lambda: a.log().count("event=queue.deferred") >= 2), a.log()[-3000:]
    log = a.log()
    assert "status=4.7.5" in log and "no TLSA record (DANE-EE) matches" in log
    assert "tls=none" not in log  # never a session without TLS
    assert "event=smtp.accepted" not in b.log() and b.mailbox("bob") == []
    listing = correo(a.data, "queue", "list").stdout
    assert "bob@b.test" in listing


def test_tlsa_without_validation_is_ignored(instances: object, dns_server: DnsServer) -> None:
    """No AD bit: the (wrong) TLSA record is not trusted, TLS stays opportunistic."""
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    wrong = "3 1 1 " + hashlib.sha256(b"not b's key").hexdigest()
    dns_server.zone[TLSA_NAME] = {"TLSA": [wrong]}
    dns_server.signed |= {"b.test", "mx.b.test"}  # the TLSA answer itself is insecure
    a = _sender(instances)
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "insecure"))
    box = b.wait_mail("bob", 1)
    assert len(box) == 1, a.log()[-3000:]
    assert "DANE" not in a.log()


class _NoStartTls(socketserver.StreamRequestHandler):
    """An MX that offers no STARTTLS; it records every command it is sent."""

    commands: list[str] = []

    def handle(self) -> None:
        self.wfile.write(b"220 mx.c.test ESMTP\r\n")
        for raw in self.rfile:
            line = raw.decode("ascii", "replace").strip()
            self.commands.append(line)
            verb = line.split(" ")[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-mx.c.test\r\n250 PIPELINING\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def plain_mx(dns_server: DnsServer) -> Iterator[list[str]]:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.4", MX_PORT), _NoStartTls)
    _NoStartTls.commands = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    name = f"_{MX_PORT}._tcp.mx.c.test"
    dns_server.zone["c.test"] = {"MX": ["10 mx.c.test"]}
    dns_server.zone["mx.c.test"] = {"A": ["127.0.0.4"]}
    dns_server.zone[name] = {"TLSA": ["3 1 1 " + "ab" * 32]}
    dns_server.signed |= {"c.test", "mx.c.test", name}
    yield _NoStartTls.commands
    server.shutdown()
    server.server_close()


def test_an_mx_without_starttls_gets_nothing(instances: object, plain_mx: list[str]) -> None:
    a = _sender(instances)
    a.submit("alice@a.test", ["carol@c.test"], message("alice@a.test", "carol@c.test", "plain"))
    assert _wait(lambda: a.log().count("event=queue.deferred") >= 2), a.log()[-3000:]
    log = a.log()
    assert "status=4.7.5" in log and "did not offer STARTTLS" in log
    assert plain_mx and not [c for c in plain_mx if c.upper().startswith(("MAIL", "RCPT"))]
