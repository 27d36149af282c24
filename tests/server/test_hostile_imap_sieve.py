"""Hostile input against IMAP and ManageSieve over real sockets (audit regressions).

Each test pins one defect found by probing a running server: the input, and the
effect the server must show (its own error reply, a live session, bounded memory).
"""

from __future__ import annotations

import base64
import re
import select
import socket
import ssl
import time
import zlib
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORDS, Server, client_tls

USER = "alice@example.test"


class Imap:
    """A raw IMAP client on the implicit-TLS port, optionally compressed."""

    def __init__(self, srv: Server, *, login: bool = True) -> None:
        raw = socket.create_connection(("127.0.0.1", srv.ports["imaps"]), timeout=10)
        self.sock: ssl.SSLSocket = client_tls().wrap_socket(raw)
        self.buf = b""
        self.deflate: zlib._Compress | None = None
        self.inflate: zlib._Decompress | None = None
        self.read_until(rb"\* OK .*\r\n")
        if login:
            self.command(b"L LOGIN " + USER.encode() + b" " + PASSWORDS[USER].encode(), b"L OK")

    def send(self, data: bytes) -> None:
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def read_until(self, pattern: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.buf):
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)  # a timeout fails the test with socket.timeout
            if not data:
                raise AssertionError(f"connection closed; got {self.buf[-300:]!r}")
            self.buf += self.inflate.decompress(data) if self.inflate is not None else data
        out, self.buf = self.buf, b""
        return out

    def command(self, line: bytes, expect: bytes) -> bytes:
        tag = line.split(b" ", 1)[0]
        self.send(line + b"\r\n")
        out = self.read_until(rb"(?m)^" + re.escape(tag) + rb" (OK|NO|BAD)[^\r]*\r\n")
        assert expect in out, out[-400:]
        return out

    def compress(self) -> None:
        self.command(b"Z COMPRESS DEFLATE", b"Z OK")
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def imap(server: Server) -> Iterator[Imap]:
    client = Imap(server)
    yield client
    client.close()


def _no_crash(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log
    assert "session_crashed" not in log


# ---- search programs: NOT/OR nesting is bounded like parentheses -----------------


@pytest.mark.parametrize(
    "command",
    [
        b"S1 SEARCH " + b"NOT " * 5000 + b"ALL",
        b"S2 SEARCH " + b"OR ALL " * 3000 + b"ALL",
        b"S3 UID SORT (DATE) UTF-8 " + b"NOT " * 5000 + b"ALL",
        b"S4 UID THREAD REFERENCES UTF-8 " + b"OR ALL " * 3000 + b"ALL",
    ],
    ids=["not-chain", "or-chain", "sort-not-chain", "thread-or-chain"],
)
def test_deep_search_program_is_bad_limit(server: Server, imap: Imap, command: bytes) -> None:
    """A NOT/OR chain thousands deep once overflowed the parser's recursion and killed the
    session without a reply; it is now ``BAD [LIMIT]`` and the session goes on."""
    imap.command(b"A SELECT INBOX", b"A OK")
    tag = command.split(b" ", 1)[0]
    imap.command(command, tag + b" BAD [LIMIT]")
    imap.command(b"N NOOP", b"N OK")
    imap.command(b"T SEARCH " + b"NOT " * 20 + b"ALL", b"T OK")  # moderate nesting still works
    _no_crash(server)


# ---- COMPRESS=DEFLATE ----------------------------------------------------------------


def test_compressed_block_split_across_reads_is_not_eof(server: Server, imap: Imap) -> None:
    """RFC 4978: one deflate block arriving in pieces inflates to nothing at first; the
    session once took that empty result for EOF and hung up."""
    imap.compress()
    assert imap.deflate is not None
    blob = imap.deflate.compress(b"N1 NOOP\r\n") + imap.deflate.flush(zlib.Z_SYNC_FLUSH)
    for i in range(len(blob)):
        imap.sock.sendall(blob[i : i + 1])
        time.sleep(0.02)
    assert b"N1 OK" in imap.read_until(rb"N1 OK.*\r\n")


def _hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    pytest.skip("no /proc VmHWM")


def test_deflate_bomb_is_inflated_piecewise(server: Server, imap: Imap) -> None:
    """200 MiB of one line in ~200 KiB of deflate: each 64 KiB read once inflated to
    ~64 MiB at once (memory, and the event loop held for seconds); now the core gets
    bounded pieces, the line is refused, other clients are served meanwhile."""
    assert server.proc is not None
    imap.compress()
    assert imap.deflate is not None
    chunk = b"A" * (1 << 20)
    blob = b"".join(imap.deflate.compress(chunk) for _ in range(200))
    blob += imap.deflate.compress(b"\r\nN2 NOOP\r\n") + imap.deflate.flush(zlib.Z_SYNC_FLUSH)
    before = _hwm_kib(server.proc.pid)
    started = time.monotonic()
    imap.sock.sendall(blob)
    other = Imap(server, login=False)  # the greeting came while the bomb was inflating
    other.close()
    out = imap.read_until(rb"N2 OK.*\r\n", timeout=20)
    assert b"BAD [TOOBIG] line too long" in out
    assert time.monotonic() - started < 15
    assert _hwm_kib(server.proc.pid) - before < 40 * 1024
    _no_crash(server)


# ---- IDLE --------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
def test_done_pipelined_with_idle_ends_it(server: Server, imap: Imap, compressed: bool) -> None:
    """DONE arriving in the same packet as IDLE sat unread in the core's buffer while the
    session waited on the socket: the client hung until it sent something else."""
    imap.command(b"A SELECT INBOX", b"A OK")
    if compressed:
        imap.compress()
    imap.send(b"I IDLE\r\nDONE\r\nN3 NOOP\r\n")
    out = imap.read_until(rb"N3 OK.*\r\n", timeout=5)
    assert b"+ idling" in out and b"I OK" in out


# ---- ManageSieve -------------------------------------------------------------------


def test_sieve_nested_script_is_refused_cleanly(server: Server) -> None:
    """Deeply nested tests get a NO naming the limit, not a crash (RFC 5804 §2.6)."""
    raw = socket.create_connection(("127.0.0.1", server.ports["sieve"]), timeout=10)
    buf = b""

    def until(sock: socket.socket, pattern: bytes) -> bytes:
        nonlocal buf
        while not re.search(pattern, buf):
            data = sock.recv(65536)
            assert data, buf
            buf += data
        out, buf = buf, b""
        return out

    until(raw, rb"(?m)^OK.*\r\n")
    raw.sendall(b"STARTTLS\r\n")
    until(raw, rb"(?m)^OK.*\r\n")
    sock = client_tls().wrap_socket(raw)
    until(sock, rb"(?m)^OK.*\r\n")
    plain = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORDS[USER].encode())
    sock.sendall(b'AUTHENTICATE "PLAIN" "' + plain + b'"\r\n')
    assert b"OK" in until(sock, rb"(?m)^(OK|NO).*\r\n")
    script = b"if " + b"not " * 5000 + b"true { keep; }"
    sock.sendall(b'PUTSCRIPT "deep" {%d+}\r\n' % len(script) + script + b"\r\n")
    assert until(sock, rb"(?m)^(OK|NO).*\r\n").startswith(b"NO")
    sock.sendall(b"NOOP\r\n")
    assert b"OK" in until(sock, rb"(?m)^(OK|NO).*\r\n")
    sock.close()
    _no_crash(server)


def test_a_literal_too_big_to_skip_ends_the_connection(server: Server) -> None:
    """RFC 7888 §4: a refused LITERAL+ literal is not read for gigabytes; BAD, BYE, close."""
    client = Imap(server)
    client.command(b"s SELECT INBOX", b"s OK")
    client.send(b"a SEARCH TEXT {99999999999+}\r\nxxxx")
    out = client.read_until(rb"\* BYE [^\r]*\r\n")
    assert b"a BAD [TOOBIG]" in out
    client.sock.settimeout(5)
    assert client.sock.recv(100) == b""  # closed by the server, not waiting for the octets
    small = Imap(server)  # a refused literal within the bound is still skipped
    small.command(b"s SELECT INBOX", b"s OK")
    small.send(b"b SEARCH TEXT {70000+}\r\n" + b"x" * 70000 + b"\r\n")
    assert b"b BAD [TOOBIG]" in small.read_until(rb"b BAD[^\r]*\r\n")
    small.command(b"c NOOP", b"c OK")
    small.close()
    _no_crash(server)


def test_a_command_dribbled_a_byte_at_a_time_times_out(start_server: object) -> None:
    """The command timeout counts from a command's first octet, not from the last one."""
    srv: Server = start_server({"command_timeout": "1.0"})  # type: ignore[operator]
    client = Imap(srv)
    got = b""
    # Dribbled whole, the command takes 8 s, eight times the timeout: a server that
    # timed from the last read would never cut it off, so a BYE before its end is the
    # proof, however much a loaded machine stretches each 0.2 s.
    for byte in b"a NOOP and on and on and on and on and on":
        client.send(bytes([byte]))  # every byte well inside the per-read timeout
        time.sleep(0.2)
        if select.select([client.sock], [], [], 0)[0] or client.sock.pending():
            got = client.sock.recv(1000)
            break
    assert got.startswith(b"* BYE"), got


def test_keywords_per_mailbox_are_bounded(server: Server) -> None:
    """FLAGS/PERMANENTFLAGS list every keyword: a client cannot make them grow forever."""
    from correo.server.imap.view import MAX_KEYWORDS

    client = Imap(server)
    box = f"Kw{int(time.time() * 1000)}".encode()
    client.command(b"c CREATE " + box, b"c OK")
    client.command(b"a APPEND " + box + b" {4+}\r\nHi\r\n", b"a OK")
    client.command(b"s SELECT " + box, b"s OK")
    words = [b"kw%d" % i for i in range(MAX_KEYWORDS + 10)]
    for start in range(0, MAX_KEYWORDS, 64):
        batch = b" ".join(words[start : min(start + 64, MAX_KEYWORDS)])
        client.command(b"t STORE 1 +FLAGS.SILENT (" + batch + b")", b"t OK")
    client.command(b"u STORE 1 +FLAGS.SILENT (" + b" ".join(words[-10:]) + b")", b"u NO [LIMIT]")
    client.command(b"w STORE 1 +FLAGS.SILENT (kw3 \\Seen)", b"w OK")  # known ones are fine
    out = client.command(b"x SELECT " + box, b"x OK")
    assert b"PERMANENTFLAGS (" in out and b"\\*)" not in out  # no new keywords now
    client.command(b"v STORE 1 -FLAGS.SILENT (kw1 kw2)", b"v OK")  # removing always is
    many = b" ".join(words)
    client.command(b"y APPEND " + box + b" (" + many + b") {4+}\r\nHi\r\n", b"y NO [LIMIT]")
    client.command(b"z NOOP", b"z OK")
    client.close()
    _no_crash(server)
