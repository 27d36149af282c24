"""HTTP requests sent to mail ports are hung up on before any command runs.

A web page can make a browser POST to any host and port; on a line-based mail port
the body would be read as commands (forged mail through LMTP or SMTP). The first line
of an HTTP/1.x request is its request line, so the listener drops the connection there.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from correo.config import load_config
from tests.conftest import Server, correo
from tests.server.helpers import mailbox

ALICE = "alice@example.test"


def _after_greeting(port: int, last: bytes, payload: bytes) -> bytes:
    """Everything the server sends after its greeting (whose last line starts with
    ``last``), until it closes the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = b""
    while True:
        while b"\r\n" not in buf:
            chunk = sock.recv(4096)
            assert chunk, buf
            buf += chunk
        line, _, buf = buf.partition(b"\r\n")
        if line.startswith(last):
            break
    rest = buf
    try:
        sock.sendall(payload)
        while chunk := sock.recv(65536):
            rest += chunk
    except ConnectionError:
        pass  # a hang-up may reset the connection: the payload was not all read
    finally:
        sock.close()
    return rest


def _post(port: int, body: bytes, target: bytes = b"/form") -> bytes:
    return (
        b"POST " + target + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"User-Agent: Mozilla/5.0\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % (port, len(body))
    ) + body


def _forgery(hello: bytes, subject: bytes) -> bytes:
    return (
        hello + b" evil.test\r\n"
        b"MAIL FROM:<forger@evil.test>\r\n"
        b"RCPT TO:<alice@example.test>\r\n"
        b"DATA\r\n"
        b"Subject: " + subject + b"\r\n\r\nforged\r\n.\r\n"
        b"QUIT\r\n"
    )


def _logged(server: Server, event: str, count: int = 1) -> bool:
    """Wait (up to 10 s) for ``count`` log lines of ``event``; the log trails the socket."""
    deadline = time.monotonic() + 10
    while server.log().count(f"event={event}") < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _delivered(server: Server, subject: bytes) -> bool:
    return any(subject in m for m in mailbox(server.ports["pop3s"], ALICE))


def test_http_post_to_lmtp_delivers_nothing(server: Server) -> None:
    port = server.ports["lmtp"]
    subject = b"forged over http to lmtp"
    before = server.log().count("event=server.http_hangup")
    replies = _after_greeting(port, b"220 ", _post(port, _forgery(b"LHLO", subject)))
    assert replies == b"", replies  # not one command answered, let alone run
    assert not _delivered(server, subject)
    assert _logged(server, "server.http_hangup", before + 1)


def test_http_post_to_smtp_delivers_nothing(server: Server) -> None:
    port = server.ports["smtp"]
    subject = b"forged over http to smtp"
    before = server.log().count("event=server.http_hangup")
    replies = _after_greeting(port, b"220 ", _post(port, _forgery(b"EHLO", subject)))
    assert replies == b"", replies
    # A request line longer than any command line is recognised all the same.
    long_target = b"/" + b"a" * 20000
    subject2 = b"forged over a long request line"
    replies = _after_greeting(port, b"220 ", _post(port, _forgery(b"EHLO", subject2), long_target))
    assert b"250" not in replies and b"354" not in replies, replies
    assert not _delivered(server, subject) and not _delivered(server, subject2)
    assert _logged(server, "server.http_hangup", before + 2)


def test_http_requests_to_pop3_imap_and_sieve_are_hung_up(server: Server) -> None:
    get = b"GET / HTTP/1.1\r\nHost: mail.example.test\r\nAccept: */*\r\n\r\n"
    before = server.log().count("event=server.http_hangup")
    assert _after_greeting(server.ports["pop3"], b"+OK", get + b"CAPA\r\n") == b""
    assert _after_greeting(server.ports["imap"], b"* OK", get + b"a1 CAPABILITY\r\n") == b""
    assert _after_greeting(server.ports["sieve"], b"OK", get + b"CAPABILITY\r\n") == b""
    assert _logged(server, "server.http_hangup", before + 3)
    log = server.log()
    assert "Traceback" not in log and "session_crashed" not in log


def test_mail_clients_are_not_mistaken_for_http(server: Server) -> None:
    # A command that merely contains "HTTP/1.1" or a colon is answered as usual.
    replies = _after_greeting(
        server.ports["smtp"], b"220 ", b"EHLO HTTP/1.1\r\nNOOP a: b HTTP/1.1\r\nQUIT\r\n"
    )
    assert replies.startswith(b"250-") and b"\r\n221 " in replies, replies


def test_new_configs_speak_lmtp_on_the_socket_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = correo(data, "init", "--domain", "example.test", "--hostname", "localhost")
    assert r.returncode == 0, r.stderr
    config = load_config(data)
    assert config.listen["lmtp"] == ()  # LMTP has no authentication: no TCP by default
    assert config.lmtp.socket == "lmtp.sock"
    assert config.listen["smtp"] == (("127.0.0.1", 2525),)
