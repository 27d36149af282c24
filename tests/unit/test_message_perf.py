"""Memory bounds of the structure parser (its speed is measured in bench/, not here)."""

from __future__ import annotations

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


def test_5k_message_parts_and_offsets() -> None:
    assert 4500 < len(MSG_5K) < 6000
    root = parse_structure(MSG_5K)
    plain, html = root.children
    assert (plain.subtype, html.subtype) == ("plain", "html")
    assert MSG_5K[plain.header_end : plain.header_end + 10] == b"some text "
    assert MSG_5K[html.header_end : html.header_end + 3] == b"<p>"
    assert plain.body_lines == 69 and html.body_lines == 59  # the last CRLF is the boundary's


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
