"""Bare LF becomes CRLF whatever the chunking; CRLF and bare CR are kept."""

from __future__ import annotations

import random
import time

from correo.message.lineends import LineEnds


def _whole(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_any_chunking_gives_the_crlf_form() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        data = bytes(rng.choice(b"a\r\n") for _ in range(rng.randint(0, 40)))
        ends, out, i = LineEnds(), b"", 0
        while i < len(data):
            step = rng.randint(1, 6)
            out += ends.feed(data[i : i + step])
            i += step
        assert out == _whole(data), data


def test_crlf_split_across_chunks_is_not_doubled() -> None:
    ends = LineEnds()
    assert ends.feed(b"a\r") + ends.feed(b"\nb\n") + ends.feed(b"\r") == b"a\r\nb\r\n\r"


def test_linear_on_hostile_input() -> None:
    data = b"\r\n\n\r" * 500_000
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    out = LineEnds().feed(data)
    assert time.thread_time() - started < 1.0
    assert out == _whole(data)
