"""The streaming MIME parser under hostile chunking: a header line that arrives a few
octets at a time (an SMTP client dripping its DATA, each piece fed as it comes) is
searched for its end once, not from its start at every piece (quadratic: a part
header line of 256 KiB fed byte by byte scanned 32 GB)."""

from __future__ import annotations

import random

from correo.message import StructureBuilder, parse_structure


class _CountingBuffer(bytearray):
    """A bytearray that counts the octets its ``find`` calls look at."""

    scanned = 0

    def find(self, sub: object, start: int = 0, end: int | None = None) -> int:  # type: ignore[override]
        at = super().find(sub, start, end)  # type: ignore[arg-type]
        stop = len(self) if end is None else min(end, len(self))
        _CountingBuffer.scanned += max(0, (at if at >= 0 else stop) - start)
        return at


def _drip(message: bytes, sizes: list[int]) -> tuple[StructureBuilder, int]:
    builder = StructureBuilder()
    builder._buf = _CountingBuffer()  # the parser's own buffer, counted
    _CountingBuffer.scanned = 0
    pos = 0
    for size in sizes:
        builder.feed(message[pos : pos + size])
        pos += size
    builder.feed(message[pos:])
    return builder, _CountingBuffer.scanned


def test_a_dripping_part_header_line_is_searched_once() -> None:
    line = b"X-Long: " + b"a" * 200_000 + b"\r\n"
    message = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        + line
        + b"Content-Type: text/plain\r\n\r\nbody\r\n--b--\r\n"
    )
    builder, scanned = _drip(message, [1] * len(message))
    assert scanned <= 4 * len(message)  # before: about len(line) ** 2 / 2
    assert builder.finish() == parse_structure(message)


def test_random_drips_give_the_tree_of_one_feed() -> None:
    """Header lines of every length cut at random places: the same tree as one feed."""
    rng = random.Random(7)
    for _ in range(40):
        parts = [
            b"Content-Type: text/plain\r\nX-A: " + b"b" * rng.randrange(0, 3000) + b"\r\n"
            b" folded " + b"c" * rng.randrange(0, 500) + b"\r\n\r\nbody\r\n"
            for _ in range(rng.randrange(1, 4))
        ]
        message = (
            b"Subject: s\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
            + b"".join(b"--zz\r\n" + p for p in parts)
            + b"--zz--\r\n"
        )
        sizes = [rng.randrange(1, 40) for _ in range(len(message) // 10)]
        builder, _ = _drip(message, sizes)
        assert builder.finish() == parse_structure(message)
