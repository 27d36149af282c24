"""Re-encoding 8-bit parts for a peer without 8BITMIME (RFC 6152 §3) a piece at a time:
quopri and base64 encode in C and hold the GIL for all of one call, in the worker
thread too, so one call over a 50 MB part kept the event loop waiting for most of a
second. The pieces give the same text as one call over the whole part."""

from __future__ import annotations

import base64
import email
import email.policy
import quopri
import random

import pytest

from correo.queue import attempt
from correo.queue.attempt import downgrade_8bit


def _message(text: bytes, binary: bytes) -> bytes:
    return (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: text/plain; charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + text
        + b"\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + binary + b"\r\n--b--\r\n"
    )


def _parts(raw: bytes) -> list[tuple[str, bytes]]:
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    out = []
    for part in parsed.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append((str(part["Content-Transfer-Encoding"]), payload))
    return out


def test_pieces_encode_as_one_call_would() -> None:
    rng = random.Random(3)
    for _ in range(20):
        size = rng.randrange(0, 300_000)
        data = bytes(rng.choice(b"ab \t=\xe9\xff\n") for _ in range(size))
        assert attempt._base64_lines(data) == base64.encodebytes(data).decode("ascii")
        lines = data.replace(b"\n" * 2, b"\n")
        qp = attempt._quoted_printable(lines)
        if max(map(len, lines.split(b"\n")), default=0) < 60_000:
            assert qp == quopri.encodestring(lines).decode("ascii")


def test_large_parts_are_encoded_in_bounded_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    qp, b64 = quopri.encodestring, base64.encodebytes

    def counted_qp(data: bytes, quotetabs: bool = False, header: bool = False) -> bytes:
        sizes.append(len(data))
        return qp(data, quotetabs, header)

    def counted_b64(data: bytes) -> bytes:
        sizes.append(len(data))
        return b64(data)

    monkeypatch.setattr(quopri, "encodestring", counted_qp)
    monkeypatch.setattr(base64, "encodebytes", counted_b64)
    text = b"caf\xe9 au lait " * 6 + b"\r\n"
    text = text * (3_000_000 // len(text))
    binary = bytes(range(256)) * 12_000
    out = downgrade_8bit(_message(text, binary))
    assert out is not None and out.isascii()
    assert max(sizes) <= 66_000, max(sizes)
    (cte_text, got_text), (cte_bin, got_bin) = _parts(out)
    assert (cte_text, cte_bin) == ("quoted-printable", "base64")
    assert got_text.replace(b"\r\n", b"\n") == text.replace(b"\r\n", b"\n")
    assert got_bin == binary


def test_a_text_line_longer_than_a_piece_goes_as_base64() -> None:
    text = b"\xe9" * 200_000
    out = downgrade_8bit(_message(text, b"\x00\x01"))
    assert out is not None
    (cte_text, got_text), _ = _parts(out)
    assert cte_text == "base64" and got_text == text
