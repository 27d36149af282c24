"""The PROXY protocol over real sockets: the test plays the load balancer.

One server trusts 127.0.0.1 as its balancer (``[server] proxy_protocol``). Connections
from there open with a version 1 or 2 header naming a made-up client, and every
listener — SMTP, submissions (implicit TLS), IMAP, IMAPS, POP3, POP3S, ManageSieve and
https — must use that client: in the ``Received:`` field of a delivered message, the
login throttle, the log. A client on 127.0.0.2 is untrusted: a PROXY line from it is
just a bad command. A trusted peer without a valid header is closed.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORDS, Server, make_data_dir
from tests.server.helpers import message
from tests.server.proxy_helpers import (
    Imap,
    ImapTls,
    Pop3,
    Pop3Tls,
    Smtp,
    SmtpTls,
    balancer_socket,
    closed_without_answer,
    https_get,
    tlv,
    v1,
    v2,
)

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture(scope="module")
def lb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("proxy") / "data"
    make_data_dir(
        data,
        {
            "proxy_protocol": '["127.0.0.1"]',
            "command_timeout": "3.0",  # the header is due within it (10 s at most)
            "free_failures": "0",
            "max_delay": "0.0",
            "lockout_failures": "3",
        },
    )
    srv = Server(data)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def _logged(srv: Server, pattern: str, timeout: float = 10.0) -> str:
    """The first log line matching ``pattern`` (a regex), waited for."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while True:
        for line in list(srv.log_lines):
            if rx.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line matches {pattern!r}:\n" + srv.log()[-3000:])
        time.sleep(0.05)


def _received(srv: Server, subject: str) -> bytes:
    """The message with ``subject`` in alice's INBOX, read over POP3 through the balancer."""
    deadline = time.monotonic() + 10
    while True:
        pop = Pop3Tls(srv.ports["pop3s"], v2("198.51.100.200", 41000))
        try:
            pop.user(ALICE)
            pop.pass_(PASSWORDS[ALICE])
            count, _ = pop.stat()
            for i in range(count):
                text = b"\r\n".join(pop.retr(i + 1)[1])
                if f"Subject: {subject}".encode() in text:
                    return text
        finally:
            pop.quit()
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject!r} was not delivered")
        time.sleep(0.1)


def _deliver(client: Smtp | SmtpTls, subject: str, login: bool = False) -> None:
    with client:
        client.ehlo("client.example")
        if login:
            client.login(BOB, PASSWORDS[BOB])
        client.sendmail(BOB, [ALICE], message(BOB, ALICE, subject))


# -- SMTP --------------------------------------------------------------------------------


def test_smtp_v1_client_is_in_received_and_log(lb: Server) -> None:
    _deliver(Smtp(lb.ports["smtp"], v1("203.0.113.7", 40001)), "v1 over mx")
    text = _received(lb, "v1 over mx")
    received = text.split(b"\r\n\r\n")[0]
    assert b"[203.0.113.7]" in received, received
    assert b"127.0.0.1" not in received.split(b"Subject:")[0].split(b";")[0]
    _logged(lb, r"event=smtp\.connect .*peer=203\.0\.113\.7:40001")


def test_smtp_v2_ipv6_client(lb: Server) -> None:
    _deliver(Smtp(lb.ports["smtp"], v2("2001:db8:5::9", 40002)), "v2 over mx")
    received = _received(lb, "v2 over mx").split(b"\r\n\r\n")[0]
    assert b"2001:db8:5::9" in received, received


def test_submissions_v2_before_the_tls_handshake(lb: Server) -> None:
    header = v2("192.0.2.77", 40003, tlvs=tlv(0x04, b"pad") + tlv(0x01, b"smtp"))
    _deliver(SmtpTls(lb.ports["submissions"], header), "v2 over submissions", login=True)
    received = _received(lb, "v2 over submissions").split(b"\r\n\r\n")[0]
    assert b"192.0.2.77" in received, received
    _logged(lb, r"event=auth\.ok .*peer=192\.0\.2\.77")


def test_ipv4_mapped_client_is_its_ipv4(lb: Server) -> None:
    _deliver(Smtp(lb.ports["smtp"], v2("::ffff:203.0.113.44", 40004)), "mapped")
    received = _received(lb, "mapped").split(b"\r\n\r\n")[0]
    assert b"[203.0.113.44]" in received, received


# -- IMAP, POP3, ManageSieve, https ------------------------------------------------------


def test_imap_and_imaps(lb: Server) -> None:
    with Imap(lb.ports["imap"], v1("198.51.100.10", 40010)) as imap:
        assert imap.capability()[0] == "OK"
    _logged(lb, r"event=imap\.connect .*peer=198\.51\.100\.10:40010")
    with ImapTls(lb.ports["imaps"], v2("198.51.100.11", 40011)) as imap:
        imap.login(ALICE, PASSWORDS[ALICE])
        assert imap.select("INBOX")[0] == "OK"
    _logged(lb, r"event=auth\.ok .*peer=198\.51\.100\.11 ")


def test_pop3_and_pop3s(lb: Server) -> None:
    pop = Pop3(lb.ports["pop3"], v2("198.51.100.20", 40020))
    assert pop.getwelcome().startswith(b"+OK")
    pop.quit()
    _logged(lb, r"event=pop3\.connect .*peer=198\.51\.100\.20:40020")
    pop = Pop3Tls(lb.ports["pop3s"], v1("198.51.100.21", 40021))
    pop.user(ALICE)
    pop.pass_(PASSWORDS[ALICE])
    pop.quit()
    _logged(lb, r"event=pop3\.connect .*peer=198\.51\.100\.21:40021")


def test_managesieve(lb: Server) -> None:
    sock = balancer_socket(lb.ports["sieve"], v1("198.51.100.30", 40030))
    with sock:
        assert b'"IMPLEMENTATION"' in sock.recv(4096)
    _logged(lb, r"event=sieve\.connect .*peer=198\.51\.100\.30:40030")


def test_https_request_is_logged_with_the_client(lb: Server) -> None:
    status = https_get(lb.ports["https"], v2("198.51.100.40", 40040), "/proxy-probe-v2")
    assert status.startswith(b"HTTP/1.1 "), status
    _logged(lb, r"peer=198\.51\.100\.40 .*path=/proxy-probe-v2")
    status = https_get(lb.ports["https"], v1("2001:db8::40", 40041), "/proxy-probe-v1")
    assert status.startswith(b"HTTP/1.1 "), status
    _logged(lb, r"peer=2001:db8::40 .*path=/proxy-probe-v1")


def test_http_listener_reads_the_header_too(lb: Server) -> None:
    with balancer_socket(lb.ports["http"], v1("198.51.100.41", 40042, dport=80)) as sock:
        sock.sendall(b"GET /proxy-probe-http HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 3")  # the redirect to https
    _logged(lb, r"peer=198\.51\.100\.41 .*path=/proxy-probe-http")


def test_lmtp_and_metrics_read_no_header_by_default(lb: Server) -> None:
    """A local MTA's LMTP and the monitoring scrape come from the trusted address too,
    without a header: those listeners are not in proxy_protocol_services by default."""
    with balancer_socket(lb.ports["lmtp"], b"") as sock:
        assert sock.makefile("rb").readline().startswith(b"220 ")
    with balancer_socket(
        lb.ports["metrics"], b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    ) as sock:
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


# -- the login throttle is keyed by the client, not the balancer -------------------------


def test_lockout_hits_the_guessing_client_only(lb: Server) -> None:
    port = lb.ports["imaps"]
    guesser = v2("203.0.113.66", 40050)
    for n in range(3):  # lockout_failures = 3, each on another account: the address locks
        with ImapTls(port, guesser) as imap, pytest.raises(imaplib.IMAP4.error):
            imap.login(f"nobody{n}@example.test", "wrong-password")
    with ImapTls(port, guesser) as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login(ALICE, PASSWORDS[ALICE])  # locked: even the right password fails
    _logged(lb, r"event=auth\.locked .*peer=203\.0\.113\.66")
    with ImapTls(port, v2("203.0.113.67", 40051)) as imap:  # another client, same balancer
        assert imap.login(ALICE, PASSWORDS[ALICE])[0] == "OK"


# -- who may send a header, and what a bad one gets --------------------------------------


def test_untrusted_source_gets_the_protocol_error(lb: Server) -> None:
    with balancer_socket(lb.ports["smtp"], b"", source="127.0.0.2") as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(v1("203.0.113.99", 40060))
        reply = f.readline()
        assert reply[:1] == b"5", reply  # an unknown command, never a header
    _logged(lb, r"event=smtp\.connect .*peer=127\.0\.0\.2:")
    with balancer_socket(lb.ports["imap"], b"", source="127.0.0.2") as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"* OK")
        sock.sendall(v1("203.0.113.99", 40061))
        assert b"BAD" in f.readline()
    assert not any("203.0.113.99" in line for line in lb.log_lines)


def test_trusted_source_without_header_is_closed(lb: Server) -> None:
    sock = balancer_socket(lb.ports["smtp"], b"EHLO client.example\r\n")
    with sock:
        assert closed_without_answer(sock)
    _logged(lb, r"event=proxy\.refused .*service=smtp .*no PROXY header")


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("bad v2 signature", b"\r\n\r\n\x00\r\nQUIX\n" + bytes(8)),
        ("v1 too long", b"PROXY TCP4 " + b"1" * 120),
        ("v1 bad address", b"PROXY TCP4 300.1.2.3 192.0.2.1 1 25\r\n"),
        ("v2 bad version", b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12)),
        ("v2 udp", b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + bytes(12)),
    ],
)
def test_malformed_header_is_closed(lb: Server, name: str, header: bytes) -> None:
    start = len(lb.log_lines)
    for service in ("smtp", "imaps"):
        sock = balancer_socket(lb.ports[service], header)
        with sock:
            assert closed_without_answer(sock), (name, service)
    assert lb.wait_log("event=proxy.refused", start=start)


def test_incomplete_header_is_closed_after_the_timeout(lb: Server) -> None:
    started = time.monotonic()
    sock = balancer_socket(lb.ports["pop3s"], b"PROXY TCP4 203.0.113.1 192.0")
    with sock:
        assert closed_without_answer(sock, timeout=20)
    took = time.monotonic() - started
    # Not at once but at the timeout (command_timeout = 3 s); a lower bound, which load
    # only lengthens.  That it closes at all is the 20 s read above, which raises.
    assert took > 2.0, took
    _logged(lb, r"event=proxy\.refused .*service=pop3s .*in time")


def test_local_command_keeps_the_balancer_address(lb: Server) -> None:
    """A version 2 LOCAL header (a balancer's own health check) is valid: the session
    runs with the connection's real endpoints."""
    pop = Pop3(lb.ports["pop3"], v2(local=True))
    assert "UIDL" in pop.capa()
    pop.quit()
    _logged(lb, r"event=pop3\.connect .*peer=127\.0\.0\.1:")
