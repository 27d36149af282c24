"""Hostile clients against SMTP, submission and POP3: each test pins a defect once found.

One module-scoped server with short timeouts (so the slow-client cases end in seconds);
every test talks to it over real sockets and checks both what the client sees and that
the server logged no crash.
"""

from __future__ import annotations

import base64
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir
from tests.server.helpers import RawSmtp, mailbox

TIMEOUT = 1.5  # command_timeout of the server under test


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data: Path = tmp_path_factory.mktemp("hostile") / "data"
    make_data_dir(data, {"command_timeout": str(TIMEOUT), "data_timeout": "3.0"})
    srv = Server(data)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]
    assert "session_crashed" not in srv.log() and "Traceback" not in srv.log()


def no_crash(srv: Server) -> None:
    """The server logs to one ordered stream: once a new connection's line is in, so is
    anything the sessions before it logged (no fixed wait for a crash to show)."""
    start = len(srv.log_lines)
    with socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10) as sock:
        sock.recv(1000)  # the greeting: the session has begun and logged its connect
    assert srv.wait_log("event=smtp.connect", start=start)
    assert "session_crashed" not in srv.log(), srv.log()[-2000:]


def test_bdat_zero_last_as_the_only_chunk_is_a_message(hostile: Server) -> None:
    """RFC 3030 §2: "BDAT 0 LAST" is a legal (empty) last chunk, even the first one.

    It used to reach the end of the message without a spool and crash the session.
    """
    before = len(mailbox(hostile.ports["pop3s"], "carol@example.test"))
    raw = RawSmtp(hostile.ports["smtp"])
    assert raw.cmd("EHLO client.test")[0] == 250
    assert raw.cmd("MAIL FROM:<>")[0] == 250
    assert raw.cmd("RCPT TO:<carol@example.test>")[0] == 250
    assert raw.cmd("BDAT 0")[0] == 250
    code, text = raw.cmd("BDAT 0 LAST")
    assert code == 250 and text.startswith("2.0.0"), text
    assert raw.cmd("MAIL FROM:<>")[0] == 250  # the session goes on
    assert raw.cmd("RCPT TO:<carol@example.test>")[0] == 250
    assert raw.cmd("BDAT 0 LAST")[0] == 250
    assert raw.cmd("QUIT")[0] == 221
    raw.close()
    assert len(mailbox(hostile.ports["pop3s"], "carol@example.test")) == before + 2
    no_crash(hostile)


def test_auth_as_someone_else_is_refused_and_answered(hostile: Server) -> None:
    """RFC 4954 §6: an authorization identity we do not allow gets a 535 reply.

    It used to get no reply at all, and the next command crashed the session.
    """
    creds = f"bob@example.test\0alice@example.test\0{PASSWORDS['alice@example.test']}"
    token = base64.b64encode(creds.encode()).decode()
    with smtplib.SMTP_SSL(
        "127.0.0.1", hostile.ports["submissions"], context=client_tls(), timeout=10
    ) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.docmd("AUTH", f"PLAIN {token}")
        assert code == 535 and text.startswith(b"5.7.8"), text
        assert smtp.noop()[0] == 250
        code, _ = smtp.docmd("MAIL", "FROM:<bob@example.test>")
        assert code == 530  # still not authenticated
    no_crash(hostile)


def _dribble(port: int, first: bytes) -> tuple[int, bytes]:
    """Send a command one byte at a time, 0.25 s apart; (octets sent until cut off, reply)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.recv(1000)  # greeting
    sent = 0
    got = b""
    try:
        for i in range(DRIBBLED):  # 10 s of dribbling, far past the 1.5 s command timeout
            sock.sendall(first[i % len(first) : i % len(first) + 1])
            sent += 1
            time.sleep(0.25)
    except OSError:
        pass
    sock.settimeout(2)
    try:
        while chunk := sock.recv(1000):
            got += chunk
    except OSError:
        pass
    sock.close()
    return sent, got


#: Octets _dribble sends at most: a server that timed each byte would take them all.
DRIBBLED = 40


@pytest.mark.parametrize(
    ("service", "expected"),
    [("smtp", b"421 4.4.2"), ("pop3", b"-ERR Autologout")],
)
def test_slowloris_command_line_times_out(hostile: Server, service: str, expected: bytes) -> None:
    """The command timeout bounds the wait for a whole command, not each byte of it.

    A line dribbled a byte at a time used to reset the idle timer forever.  Cut off
    before the end of its 10 s is the proof, whatever a loaded machine does to each
    0.25 s; the seconds it took would measure the machine too.
    """
    sent, got = _dribble(hostile.ports[service], b"NOOPNOOPNOOP")
    assert sent < DRIBBLED, "the whole dribbled line was read"
    assert got.startswith(expected), got


@pytest.mark.parametrize(
    ("service", "command", "event"),
    [
        ("smtp", b"NOOP\r\n", "smtp.write_timeout"),
        ("pop3", b"CAPA\r\n", "pop3.write_timeout"),
    ],
)
def test_client_that_never_reads_is_dropped(
    hostile: Server, service: str, command: bytes, event: str
) -> None:
    """Pipelined commands whose replies are never read must not hold a session forever.

    The server used to wait on the full socket without a bound; now it aborts the
    connection once replies have been stuck for the command timeout.
    """
    sock = socket.create_connection(("127.0.0.1", hostile.ports[service]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(0.5)
    burst = command * 2000
    try:
        for _ in range(2000):  # until both socket buffers are full
            sock.sendall(burst)
    except TimeoutError:
        pass
    # The replies first fill the kernel's send buffer (megabytes on loopback), then the
    # server's own; only then is the write stuck, so allow for a slow, loaded machine.
    assert hostile.wait_log(event, TIMEOUT + 40)
    sock.settimeout(10)
    with pytest.raises(OSError) as ended:  # the connection was reset, not left half-open
        for _ in range(100):
            sock.sendall(command)
            if not sock.recv(65536):
                raise ConnectionResetError
    assert not isinstance(ended.value, TimeoutError), "left half-open"
    sock.close()
    no_crash(hostile)
