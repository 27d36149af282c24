"""Big messages stream through FETCH: the server never holds one whole in memory.

A 40 MB message is appended and fetched back whole, by section and by partial range;
every byte comes back exact, and the server's peak RSS grows far less than the message.
"""

from __future__ import annotations

import base64
import hashlib
import imaplib
import re
from pathlib import Path

from tests.conftest import Server
from tests.server.imap_helpers import imap

_MB = 1 << 20


def _peak_rss(server: Server) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) * 1024


def _selected_with(server: Server, box: str, data: bytes) -> tuple[imaplib.IMAP4, int]:
    """A session with ``data`` appended to a new ``box``, selected; and the peak RSS then."""
    client = imap(server)
    client.create(box)
    assert client.append(box, None, None, data)[0] == "OK"
    client.select(box)
    return client, _peak_rss(server)


def _big_message() -> bytes:
    head = (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: big\r\n"
        b"Message-ID: <big@example.test>\r\n\r\n"
    )
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    body = b"".join(b"%08d " % i + line for i in range(40 * _MB // (len(line) + 9)))
    return head + body


def test_fetch_of_a_big_message_streams_with_flat_memory(server: Server) -> None:
    data = _big_message()
    header_end = data.index(b"\r\n\r\n") + 4
    client, before = _selected_with(server, "Big", data)
    typ, got = client.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK"
    assert hashlib.sha256(got[0][1]).digest() == hashlib.sha256(data).digest()
    typ, got = client.fetch("1", "(BODY.PEEK[TEXT]<1000.3000000>)")
    assert typ == "OK" and got[0][1] == data[header_end + 1000 : header_end + 3_001_000]
    typ, got = client.fetch("1", "(RFC822.SIZE RFC822 FLAGS)")
    assert typ == "OK" and got[0][1] == data
    assert b"RFC822.SIZE %d" % len(data) in got[0][0]
    assert b"\\Seen" in got[1]  # RFC822 sets \Seen; FLAGS after the literal says so
    grown = _peak_rss(server) - before
    assert grown < len(data) // 4, f"peak RSS grew {grown / _MB:.1f} MiB for a 40 MiB message"
    client.logout()


def test_binary_of_a_big_attachment_streams_decoded(server: Server) -> None:
    payload = bytes(range(256)) * (24 * _MB // 256)  # NUL and 8-bit: literal8 (RFC 3516)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    data = (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: attachment\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b1--\r\n"
    )
    client, before = _selected_with(server, "Attach", data)
    typ, got = client.fetch("1", "(BINARY.SIZE[2])")
    assert typ == "OK" and b"BINARY.SIZE[2] %d" % len(payload) in got[0]
    tag = client._new_tag()  # imaplib does not know literal8 (~{n}); read it by hand
    client.send(tag + b" FETCH 1 (BINARY.PEEK[2])\r\n")
    head = client.readline()
    assert head.endswith(b"~{%d}\r\n" % len(payload)), head[:80]
    digest = hashlib.sha256()
    left = len(payload)
    while left:
        chunk = client.read(min(left, 1 << 16))
        digest.update(chunk)
        left -= len(chunk)
    assert client.readline() == b")\r\n"
    assert client.readline().startswith(tag + b" OK")
    assert digest.digest() == hashlib.sha256(payload).digest()
    client.send(tag + b"x FETCH 1 (BINARY.PEEK[2]<1000000.64>)\r\n")
    head = client.readline()
    assert head.endswith(b"~{64}\r\n")
    assert client.read(64) == payload[1_000_000:1_000_064]
    assert client.readline() == b")\r\n"
    assert client.readline().startswith(tag + b"x OK")
    grown = _peak_rss(server) - before
    assert grown < len(payload) // 4, f"peak RSS grew {grown / _MB:.1f} MiB for 24 MiB"
    client.logout()
