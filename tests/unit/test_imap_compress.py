"""COMPRESS=DEFLATE's server side (RFC 4978): the compressor may be dropped or swapped
for a smaller one between writes, and the client still reads one valid deflate stream."""

from __future__ import annotations

import random
import zlib

from correo.server.imap.compress import Deflate


def test_writes_rests_and_sizes_make_one_stream() -> None:
    rng = random.Random(4978)
    d = Deflate()
    client = zlib.decompressobj(-15)  # the client's side: one stream, 32 KiB window
    sent = b""
    for i in range(60):
        size = rng.choice([20, 300, 5000, 70_000])
        data = bytes(rng.choice(b"abcdefgh \r\n") for _ in range(size)) + b"%d\r\n" % i
        out = d.deflate(data)
        assert d.deflater is not None
        sent += data
        assert client.decompress(out) == data  # sync-flushed: all of it, at once
        if rng.random() < 0.3:
            d.rest()
            assert d.deflater is None  # nothing kept while the session waits
    assert len(sent) > 100_000


def test_small_writes_use_a_smaller_window() -> None:
    """Small replies use a 4 KiB window, so a match 10 KiB back is not found; a big
    write brings the full 32 KiB compressor, which does find it."""
    rng = random.Random(1951)
    block = bytes(rng.randrange(256) for _ in range(1000))
    filler = bytes(rng.randrange(256) for _ in range(10_000))
    d = Deflate()
    client = zlib.decompressobj(-15)
    first = d.deflate(block)
    assert client.decompress(first) == block
    for i in range(0, len(filler), 1000):
        assert client.decompress(d.deflate(filler[i : i + 1000])) == filler[i : i + 1000]
    again = d.deflate(block)  # 10 KiB back: out of the small window
    assert client.decompress(again) == block and len(again) > 900
    big = block + filler + block  # > 4 KiB at once: the full window
    out = d.deflate(big)
    assert client.decompress(out) == big and len(out) < len(big) - 900
