"""Section ranges, HEADER.FIELDS, transfer decoding, literal/quoted choice."""

from __future__ import annotations

import base64
import binascii

import pytest

from correo.message import (
    TransferDecoder,
    decode_transfer,
    header_fields,
    parse_structure,
    section,
)
from correo.message.imapfmt import istring

# RFC 9051 §6.4.5's example shape: a multipart/mixed with text, a message/rfc822 holding
# a multipart, and a single-part message/rfc822.
MSG = (
    b"Subject: top\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n"
    b"--o\r\nContent-Type: text/plain\r\n\r\nONE\r\n"
    b"--o\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"
    b"--i\r\n\r\nTWO-ONE\r\n--i\r\nContent-Type: text/html\r\n\r\nTWO-TWO\r\n--i--\r\n"
    b"--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: single\r\n\r\nTHREE\r\n"
    b"--o--\r\n"
)
ROOT = parse_structure(MSG)


def _sec(spec: str) -> bytes | None:
    r = section(ROOT, spec)
    return None if r is None else MSG[r[0] : r[1]]


SECTIONS = [
    ("", MSG),
    ("HEADER", b"Subject: top\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n"),
    ("1", b"ONE"),
    ("1.MIME", b"Content-Type: text/plain\r\n\r\n"),
    ("2.HEADER", b"Subject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"),
    ("2.1", b"TWO-ONE"),
    ("2.2", b"TWO-TWO"),
    ("2.2.MIME", b"Content-Type: text/html\r\n\r\n"),
    ("3.1", b"THREE"),
    ("3.TEXT", b"THREE"),
    ("3.HEADER.FIELDS (Subject)", b"Subject: single\r\n\r\n"),
    ("1.HEADER", None),  # not a message/rfc822 part
    ("4", None),
    ("1.1", None),
    ("0", None),
    ("MIME", None),
    ("2.BOGUS", None),
    ("text", MSG[MSG.index(b"--o") :]),
]


@pytest.mark.parametrize(("spec", "expected"), SECTIONS)
def test_sections(spec: str, expected: bytes | None) -> None:
    assert _sec(spec) == expected


def test_single_part_message_is_part_one() -> None:
    msg = b"Subject: x\r\n\r\nbody\r\n"
    root = parse_structure(msg)
    assert section(root, "1") == (14, len(msg))  # RFC 9051 §6.4.5
    assert section(root, "2") is None


def test_header_fields() -> None:
    hdr = b"From: a@b\r\nSubject: one\r\n two\r\nX-Y: z\r\n\r\n"
    assert header_fields(hdr, ["subject"], False) == b"Subject: one\r\n two\r\n\r\n"
    assert header_fields(hdr, ["SUBJECT", "x-y"], True) == b"From: a@b\r\n\r\n"
    assert header_fields(b"", ["a"], False) == b"\r\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"NIL"),
        ("abc", b'"abc"'),
        ('a"b', b'{3}\r\na"b'),
        ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
        ("a\\b", b"{3}\r\na\\b"),
        ("", b'""'),
    ],
)
def test_istring(value: str | None, expected: bytes) -> None:
    assert istring(value) == expected


PAYLOAD = bytes(range(256)) * 40


@pytest.mark.parametrize(
    ("encoded", "cte"),
    [
        (base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n"), "base64"),
        (base64.b64encode(PAYLOAD), "BASE64"),
        (binascii.b2a_qp(PAYLOAD, istext=False).replace(b"\n", b"\r\n"), "quoted-printable"),
        (PAYLOAD, "8bit"),
        (PAYLOAD, None),
    ],
)
def test_decode_transfer_whole_and_streaming(encoded: bytes, cte: str | None) -> None:
    assert decode_transfer(encoded, cte) == PAYLOAD
    for size in (1, 5, 77, 4096):
        dec = TransferDecoder(cte)
        out = b"".join(dec.feed(encoded[i : i + size]) for i in range(0, len(encoded), size))
        assert out + dec.finish() == PAYLOAD, size


def test_decode_transfer_tolerates_junk() -> None:
    assert decode_transfer(b"aGVs!!bG8\r\n", "base64") == b"hello"
    assert decode_transfer(b"aGVsbG8=junk", "base64") == b"hello"
    assert decode_transfer(b"a=ZZb=\r\nc", "quoted-printable") == b"a=ZZbc"
