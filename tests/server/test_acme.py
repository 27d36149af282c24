"""Certificates by ACME against Debian's pebble, with real validation (docs/tls.md).

Pebble validates over correo's own listeners: tls-alpn-01 on ``https``, http-01 on
``http``.  Its certificates live seconds, so renewal (at two thirds of the lifetime)
happens within the test.
"""

from __future__ import annotations

import http.client
import imaplib
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORDS, Server, correo, make_data_dir
from tests.server.acme_helpers import Pebble, free_port, peer_certificate, wait_for
from tests.server.dnsserver import DnsServer

pytestmark = pytest.mark.slow

NAME = "mail.example.test"
OTHER = "mta-sts.example.test"
VALIDITY = 24  # seconds: renewal comes 16 s after issuance


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer({NAME: {"A": ["127.0.0.1"]}, OTHER: {"A": ["127.0.0.1"]}})
    yield server
    server.close()


def _start(tmp_path: Path, dns: DnsServer, challenge: str) -> tuple[Server, Pebble, Path]:
    http, https = free_port(), free_port()
    pebble = Pebble(tmp_path / "pebble", dns, http_port=http, tls_port=https, validity=VALIDITY)
    data = tmp_path / "data"
    make_data_dir(
        data,
        {
            "http": f'["127.0.0.1:{http}"]',
            "https": f'["127.0.0.1:{https}"]',
            "directory": f'"{pebble.directory}"',
            "email": '"postmaster@example.test"',
            "challenge": f'"{challenge}"',
            "ca_file": f'"{pebble.ca.cert_path}"',
            "names": f'["{NAME}", "{OTHER}"]',
        },
    )
    server = Server(data)
    server.start()
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble.root())
    return server, pebble, root


def _wait(server: Server, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        wait_for(predicate, timeout, what)
    except AssertionError as exc:
        events = [line for line in server.log_lines if "event=tls." in line or "http" in line]
        raise AssertionError(f"{exc}:\n" + "".join(events[-30:])) from None


def _acme_orders(server: Server) -> dict[str, float]:
    """correo_acme_orders_total by outcome, scraped from the metrics listener."""
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["metrics"], timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        s.labels["outcome"]: s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "correo_acme_orders_total"
    }


def _installed(server: Server) -> int:
    return server.log().count("event=tls.certificate_installed")


def test_tls_alpn_01_issues_renews_and_swaps_without_dropping_sessions(
    tmp_path: Path, dns: DnsServer
) -> None:
    server, pebble, root = _start(tmp_path, dns, "tls-alpn-01")
    try:
        _wait(server, lambda: _installed(server) >= 1, 30, "the first certificate")
        https = server.ports["https"]
        first = peer_certificate(https, NAME, cafile=root)  # verified chain and name
        assert "Pebble" in first.issuer.rfc4514_string()
        # every TLS listener serves it, for every name it holds
        assert peer_certificate(server.ports["imaps"], OTHER, cafile=root) == first
        # a session opened now must outlive the renewal
        verified = ssl.create_default_context(cafile=str(root))
        verified.check_hostname = False  # an IP address: no SNI, the chain still verified
        session = imaplib.IMAP4_SSL(
            "127.0.0.1", server.ports["imaps"], ssl_context=verified, timeout=10
        )
        session.login("alice@example.test", PASSWORDS["alice@example.test"])
        assert session.select("INBOX")[0] == "OK"
        _wait(server, lambda: _installed(server) >= 2, 40, "the renewed certificate")
        second = peer_certificate(server.ports["imaps"], NAME, cafile=root)
        assert second.serial_number != first.serial_number  # new handshakes: new certificate
        assert session.noop()[0] == "OK"  # the old session goes on
        assert session.select("INBOX")[0] == "OK"
        session.logout()
        status = correo(server.data, "tls", "status")
        assert status.returncode == 0, status.stderr
        assert NAME in status.stdout and OTHER in status.stdout
        assert "Pebble" in status.stdout
        assert re.search(r"expires\s+20\d\d-", status.stdout)
        assert re.search(r"renewal\s+20\d\d-", status.stdout)
        assert "tls-alpn-01" in server.log()
        orders = _acme_orders(server)
        assert orders["issued"] == 1 and orders["renewed"] >= 1, orders
        assert orders["failed"] == 0, orders
    finally:
        server.stop()
        pebble.close()


def test_http_01_issues_and_a_failed_renewal_keeps_the_old_certificate(
    tmp_path: Path, dns: DnsServer
) -> None:
    server, pebble, root = _start(tmp_path, dns, "http-01")
    try:
        _wait(server, lambda: _installed(server) >= 1, 30, "the first certificate")
        first = peer_certificate(server.ports["https"], NAME, cafile=root)
        # the name moves elsewhere: the CA's next validation cannot reach us
        dns.zone[OTHER] = {"A": ["127.0.0.9"]}
        _wait(server, lambda: "event=tls.acme_failed" in server.log(), 40, "the failed renewal")
        failure = next(line for line in server.log_lines if "event=tls.acme_failed" in line)
        assert OTHER in failure and "http-01" in failure  # says which name and why
        assert _installed(server) == 1
        still = peer_certificate(server.ports["https"], NAME, cafile=root)
        assert still.serial_number == first.serial_number  # the old one keeps serving
        status = correo(server.data, "tls", "status")
        assert status.returncode == 0, status.stderr
        assert "last error" in status.stdout and OTHER in status.stdout
        orders = _acme_orders(server)
        assert orders["issued"] == 1 and orders["failed"] >= 1, orders
    finally:
        server.stop()
        pebble.close()


def test_http_listener_redirects_to_https(tmp_path: Path) -> None:
    """Without ACME the http listener only redirects, keeping the path."""
    data = tmp_path / "data"
    make_data_dir(data)
    server = Server(data)
    server.start()
    try:
        port, https = server.ports["http"], server.ports["https"]

        class NoFollow(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(NoFollow)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/a/b?c=d", headers={"Host": f"{NAME}:{port}"}
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=10)
        assert answer.value.code == 301
        assert answer.value.headers["Location"] == f"https://{NAME}:{https}/a/b?c=d"
        token = urllib.request.Request(f"http://127.0.0.1:{port}/.well-known/acme-challenge/x")
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(token, timeout=10)
        assert answer.value.code == 301  # no ACME: nothing is answered there
    finally:
        assert server.stop() == 0
