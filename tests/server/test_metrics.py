"""The metrics listener over real sockets: /metrics moves by what clients did, /healthz,
/readyz, /status, and ``correo status`` against a running server and without one."""

from __future__ import annotations

import base64
import http.client
import json
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir
from tests.server.helpers import RawSmtp, pop3
from tests.server.imap_helpers import imap, message

Sample = tuple[str, tuple[tuple[str, str], ...]]


def get(server: Server, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["metrics"], timeout=10)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read()
    finally:
        conn.close()


def scrape(server: Server) -> dict[Sample, float]:
    """Every sample of /metrics by (name, sorted labels)."""
    status, kind, body = get(server, "/metrics")
    assert status == 200 and kind.startswith("text/plain; version="), (status, kind)
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def delta(before: dict[Sample, float], after: dict[Sample, float]) -> Callable[..., float]:
    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    return moved


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def srv(start_server: Callable[..., Server]) -> Server:
    """A private server: nothing but the test moves its counters."""
    return start_server()


def test_counters_move_by_what_clients_did(srv: Server) -> None:
    before = scrape(srv)

    # SMTP: one message to a local mailbox over the MX listener
    smtp = RawSmtp(srv.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd("MAIL FROM:<someone@elsewhere.test>")[0] == 250
    assert smtp.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert smtp.cmd("RCPT TO:<nobody@example.test>")[0] == 550
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(message("metrics", sender="someone@elsewhere.test", to="alice@example.test"))
    assert smtp.cmd(".")[0] == 250
    assert smtp.cmd("QUIT")[0] == 221
    smtp.close()

    # IMAP: login, SELECT, FETCH, a command that fails, LOGOUT
    client = imap(srv)
    client.select("INBOX")
    typ, data = client.fetch("1", "(BODY.PEEK[] FLAGS)")
    assert typ == "OK" and b"metrics" in data[0][1]
    assert client.select("No/Such/Box")[0] == "NO"
    client.logout()

    # a failed AUTH on submission, after STARTTLS: EHLO STARTTLS EHLO AUTH QUIT
    sub = smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10)
    sub.starttls(context=client_tls())
    sub.ehlo()
    plain = base64.b64encode(b"\0bob@example.test\0not-the-password").decode()
    assert sub.docmd("AUTH", "PLAIN " + plain)[0] == 535
    sub.quit()

    # POP3: a good login and STAT (one +OK each beyond the greeting)
    box = pop3(srv.ports["pop3s"], "alice@example.test")
    assert box.stat()[0] == 1
    box.quit()

    after = scrape(srv)
    moved = delta(before, after)
    assert moved("correo_connections_total", service="smtp") == 1
    assert moved("correo_connections_total", service="imaps") == 1
    assert moved("correo_connections_total", service="submission") == 1
    # EHLO MAIL RCPT RCPT DATA <end of data> QUIT
    assert moved("correo_commands_total", protocol="smtp") == 7 + 5
    assert moved("correo_replies_total", protocol="smtp", **{"class": "2xx"}) == 5 + 4
    assert moved("correo_replies_total", protocol="smtp", **{"class": "3xx"}) == 1  # 354
    assert moved("correo_replies_total", protocol="smtp", **{"class": "5xx"}) == 2  # 550, 535
    assert moved("correo_messages_accepted_total", service="smtp") == 1
    assert moved("correo_deliveries_total", route="mailbox", outcome="delivered") == 1
    assert moved("correo_delivery_seconds_count", route="mailbox") == 1
    assert moved("correo_junk_verdicts_total", verdict="ham") == 1  # scored, below threshold
    # CAPABILITY (imaplib asks on connecting) LOGIN SELECT FETCH SELECT LOGOUT
    assert moved("correo_commands_total", protocol="imap") == 6
    assert moved("correo_replies_total", protocol="imap", **{"class": "OK"}) == 5
    assert moved("correo_replies_total", protocol="imap", **{"class": "NO"}) == 1
    # USER PASS STAT QUIT, each answered +OK
    assert moved("correo_commands_total", protocol="pop3") == 4
    assert moved("correo_replies_total", protocol="pop3", **{"class": "+OK"}) == 4
    assert moved("correo_auth_total", result="ok") == 2  # IMAP and POP3
    assert moved("correo_auth_total", result="failed") == 1
    assert moved("correo_tls_handshakes_total", version="TLSv1.3") == 3  # imaps, STARTTLS, pop3s
    assert moved("correo_store_commit_batch_size_count") >= 1
    assert moved("correo_store_commit_seconds_sum") > 0
    assert moved("correo_dns_lookups_total", type="TXT") >= 1  # SPF of the MX sender
    assert after[("correo_queue_messages", ())] == 0
    assert after[("correo_connections_open", (("service", "metrics"),))] >= 1  # this scrape
    assert moved("correo_connections_total", service="metrics") >= 1


def submit(server: Server, recipients: list[str]) -> None:
    sub = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10)
    sub.starttls(context=client_tls())
    sub.login("alice@example.test", PASSWORDS["alice@example.test"])
    sub.sendmail("alice@example.test", recipients, message("out", to=recipients[0]))
    sub.quit()


def test_queue_gauges_and_deferred_mail(tmp_path: Path) -> None:
    """Mail for a smart host that refuses connections waits in the queue, deferred."""
    data = tmp_path / "data"
    make_data_dir(data)
    with (data / "correo.toml").open("a") as fh:
        fh.write('\n[outbound]\nrelayhost = "[127.0.0.1]:1"\nrelayhost_tls = "none"\n')
    srv = Server(data)
    srv.start()
    try:
        submit(srv, ["x@far.test", "y@far.test"])
        wait_for(lambda: scrape(srv).get(("correo_deliveries_total", _remote("deferred"))) == 2)
        samples = scrape(srv)
        assert samples[("correo_queue_messages", ())] == 1
        assert samples[("correo_queue_recipients", ())] == 2
        assert 0 <= samples[("correo_queue_oldest_seconds", ())] < 60
        assert samples[("correo_messages_accepted_total", (("service", "submission"),))] == 1
        assert ("correo_deliveries_total", _remote("delivered")) not in samples
    finally:
        assert srv.stop() == 0


def test_bounces(srv: Server) -> None:
    """Mail for a domain that does not exist bounces: two recipients, one notice."""
    submit(srv, ["x@nowhere.invalid", "y@nowhere.invalid"])
    wait_for(lambda: scrape(srv).get(("correo_deliveries_total", _remote("bounced"))) == 2)
    wait_for(lambda: scrape(srv)[("correo_queue_messages", ())] == 0)
    samples = scrape(srv)
    assert ("correo_deliveries_total", _remote("deferred")) not in samples
    assert samples[("correo_queue_oldest_seconds", ())] == 0


def _remote(outcome: str) -> tuple[tuple[str, str], ...]:
    return (("outcome", outcome), ("route", "remote"))


def test_imap_idle_sessions_gauge(srv: Server) -> None:
    client = imap(srv)
    client.select("INBOX")
    tag = client._new_tag().decode()  # type: ignore[attr-defined]
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+")
    wait_for(lambda: scrape(srv)[("correo_imap_idle_sessions", ())] == 1)
    client.send(b"DONE\r\n")
    assert client.readline().startswith(tag.encode() + b" OK")
    assert scrape(srv)[("correo_imap_idle_sessions", ())] == 0
    client.logout()


def test_health_endpoints(srv: Server) -> None:
    assert get(srv, "/healthz")[::2] == (200, b"ok\n")
    assert get(srv, "/readyz")[::2] == (200, b"ready\n")
    assert get(srv, "/readyz", "HEAD")[::2] == (200, b"")
    assert get(srv, "/nothing")[0] == 404
    assert get(srv, "/metrics", "POST")[0] == 405
    # the LMTP socket is a listener too: without it the server is not ready
    (srv.data / "lmtp.sock").unlink()
    status, _, body = get(srv, "/readyz")
    assert status == 503 and body.startswith(b"not ready: LMTP socket") and b"lmtp.sock" in body
    assert get(srv, "/healthz")[0] == 200  # alive all the same


def test_metrics_listener_speaks_only_http(srv: Server) -> None:
    """A hostile request gets an HTTP error and the listener serves the next one."""
    import socket

    with socket.create_connection(("127.0.0.1", srv.ports["metrics"]), timeout=10) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * 10000 + b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", sock.recv(100))
    with socket.create_connection(("127.0.0.1", srv.ports["metrics"]), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")  # RFC 9112 §3.2: Host is required
        assert re.match(rb"HTTP/1\.[01] 400 ", sock.recv(100))
    assert get(srv, "/healthz")[0] == 200


def test_status_json(srv: Server) -> None:
    status, kind, body = get(srv, "/status")
    assert status == 200 and kind.startswith("application/json")
    doc = json.loads(body)
    assert doc["ready"] is True and doc["hostname"] == "localhost"
    assert doc["listeners"]["smtp"] == [f"127.0.0.1:{srv.ports['smtp']}"]
    assert doc["queue"] == {"messages": 0, "recipients": 0, "oldest_seconds": None}
    (cert,) = doc["certificates"]
    assert cert["subject"] == "localhost" and cert["self_signed"] is True
    assert cert["days_left"] > 300


def _point_config_at(server: Server) -> None:
    """Tests bind every listener to port 0; ``correo status`` reads the real one from the
    config, as it would in production."""
    path = server.data / "correo.toml"
    text, n = re.subn(
        r"^metrics = \[.*\]$",
        f'metrics = ["127.0.0.1:{server.ports["metrics"]}"]',
        path.read_text(),
        flags=re.M,
    )
    assert n == 1
    path.write_text(text)


def test_correo_status_against_a_running_server(srv: Server) -> None:
    _point_config_at(srv)
    sub = smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10)
    sub.starttls(context=client_tls())
    sub.ehlo()
    plain = base64.b64encode(b"\0carol@example.test\0wrong-password").decode()
    assert sub.docmd("AUTH", "PLAIN " + plain)[0] == 535  # a warning for the last hour
    sub.quit()
    result = correo(srv.data, "status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^correo \S+ on localhost \(pid \d+\): ready$", out, re.M), out
    assert re.search(r"^Up \d+ (s|min)", out, re.M), out
    assert re.search(rf"^  smtp +127\.0\.0\.1:{srv.ports['smtp']}$", out, re.M), out
    assert "Queue: empty" in out
    assert re.search(r"tls/cert\.pem: localhost, self-signed, expires \S+ \(\d+ days\)", out), out
    assert re.search(r"^Warnings and errors in the last hour: [1-9]", out, re.M), out
    assert re.search(r"^ +1  warning auth\.failed$", out, re.M), out
    as_json = correo(srv.data, "status", "--json")
    assert json.loads(as_json.stdout)["errors"]["by_event"]["warning auth.failed"] == 1


def test_correo_status_without_a_server(start_server: Callable[..., Server]) -> None:
    srv = start_server()
    _point_config_at(srv)
    assert srv.stop() == 0
    result = correo(srv.data, "status")
    assert result.returncode == 1
    assert "correo is not running: nothing listens on 127.0.0.1:" in result.stdout
    assert "Traceback" not in result.stderr


def _https_get(port: int, context: ssl.SSLContext) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.request("GET", "/")
        status = conn.getresponse().status
        return status
    finally:
        conn.close()


def test_https_tls_versions_and_cipher_classes(srv: Server) -> None:
    """Each connection on the https listener counts once, by TLS version and cipher class."""
    before = scrape(srv)
    modern = client_tls()  # TLS 1.3
    old = client_tls()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    old.set_ciphers("ECDHE+CHACHA20")
    for context in (modern, modern, old):
        assert _https_get(srv.ports["https"], context) < 500
    moved = delta(before, scrape(srv))
    name = "correo_https_tls_connections_total"
    assert moved(name, version="TLSv1.3", cipher="aes-gcm") == 2
    assert moved(name, version="TLSv1.2", cipher="chacha20-poly1305") == 1
    assert moved("correo_connections_total", service="https") == 3


def test_acme_outcomes_are_series_from_the_start(srv: Server) -> None:
    """Issued, renewed and failed are there at 0 before any order (tests/server/test_acme.py
    moves them against pebble)."""
    samples = scrape(srv)
    for outcome in ("issued", "renewed", "failed"):
        assert samples[("correo_acme_orders_total", (("outcome", outcome),))] == 0
