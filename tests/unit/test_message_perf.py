"""Speed and memory bounds of the structure parser."""

from __future__ import annotations

import time
import tracemalloc

from correo.message import StructureBuilder, parse_structure

MSG_5K = (
    b"From: a@b.test\r\nTo: c@d.test\r\nSubject: perf\r\n"
    b"Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain\r\n\r\n"
    + b"some text line of a message body\r\n" * 70
    + b"--b\r\nContent-Type: text/html\r\n\r\n"
    + b"<p>some text line of a message body</p>\r\n" * 60
    + b"--b--\r\n"
)


def test_5k_message_is_fast() -> None:
    assert 4500 < len(MSG_5K) < 6000
    runs = 200
    t0 = time.perf_counter()
    for _ in range(runs):
        parse_structure(MSG_5K)
    per = (time.perf_counter() - t0) / runs
    assert per < 1e-3, per  # typically ~0.1 ms


def test_100mb_attachment_streams_in_bounded_memory() -> None:
    head = (
        b"Subject: big\r\nContent-Type: multipart/mixed; boundary=BIG\r\n\r\n--BIG\r\n"
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--BIG\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    chunk = line * (65536 // len(line))
    total = 100 * 1024 * 1024
    tracemalloc.start()
    try:
        b = StructureBuilder()
        b.feed(head)
        sent = len(head)
        while sent < total:
            b.feed(chunk)
            sent += len(chunk)
        b.feed(b"\r\n--BIG--\r\n")
        root = b.finish()
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, peak
    att = root.children[1]
    assert att.body_size == sent - len(head)
    assert att.header_end == len(head)
