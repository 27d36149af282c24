"""The streaming transfer decoder under hostile chunking: a quoted-printable line with
no line break, fed a few octets at a time (a body streamed from the store in small
pieces, or a client's BINARY FETCH of such a part), costs time in proportion to its
length, not to its square (the pending tail was joined and searched again per piece)."""

from __future__ import annotations

import random
import time

import pytest

from correo.message.imapfmt import TransferDecoder, _qp, decode_transfer


def _feed(data: bytes, cte: str, step: int) -> tuple[bytes, float]:
    """Decode ``data`` fed in ``step``-octet pieces; the output and thread CPU spent."""
    decoder = TransferDecoder(cte)
    out: list[bytes] = []
    start = time.thread_time()
    for i in range(0, len(data), step):
        out.append(decoder.feed(data[i : i + step]))
    out.append(decoder.finish())
    return b"".join(out), time.thread_time() - start


def _best_cpu(data: bytes, step: int) -> float:
    return min(_feed(data, "quoted-printable", step)[1] for _ in range(5))


def _growth(unit: bytes, step: int) -> tuple[float, float]:
    """Thread CPU for a line of about 6.5 KB and one of 65 KB (under the 64 KiB a line
    is held whole), both without a line break, fed ``step`` octets at a time."""
    small = unit * (6_500 // len(unit))
    large = unit * (65_000 // len(unit))
    _feed(small, "quoted-printable", step)  # warm up
    return _best_cpu(small, step), _best_cpu(large, step)


def test_a_long_unbroken_line_in_small_pieces_decodes_in_linear_time() -> None:
    """Ten times the line, about ten times the CPU (before: about 25 times, the held
    tail copied and searched again for every octet fed)."""
    one, ten = _growth(b"ab=3Dc", 1)
    assert ten < 18 * max(one, 1e-5), (one, ten)


def test_a_long_line_of_blanks_and_soft_breaks_stays_linear() -> None:
    """Blanks and "=" are what the decoder holds back at a cut: a line of them is
    still decoded in linear time."""
    one, ten = _growth(b" " * 30 + b"=", 1)
    assert ten < 18 * max(one, 1e-5), (one, ten)


def test_an_overlong_line_is_cut_and_decoded_as_one_piece() -> None:
    """Past 64 KiB without a line break the decoder emits what it holds (bounded
    memory), with the same octets as decoding the whole body at once."""
    data = (b"x=41" + b" " * 70 + b"=3D\t=\r\n") * 4000 + b"y" * 200_000 + b"=42 \r\nz"
    whole = decode_transfer(data, "quoted-printable")
    decoder = TransferDecoder("quoted-printable")
    out = []
    most = 0
    for i in range(0, len(data), 100):
        out.append(decoder.feed(data[i : i + 100]))
        most = max(most, decoder._held)
    out.append(decoder.finish())
    assert b"".join(out) == whole
    assert most <= 65_536 + 100


def test_any_split_decodes_as_one_piece() -> None:
    """Random quoted-printable-like text cut anywhere: the same octets as the whole
    body decoded at once. A literal "=" ending a line before a soft break is "=" even
    when the next line starts with two hex digits (it was read as an escape whole)."""
    rng = random.Random(11)
    alphabet = [b"a", b"=", b"3D", b"=41", b" ", b"\t", b"\r\n", b"\n", b"=\r\n", b"=\n", b"\xc3"]
    assert decode_transfer(b"a==\r\n41", "quoted-printable") == b"a=41"
    for _ in range(60):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 2000)))
        whole = decode_transfer(data, "quoted-printable")
        for step in (1, 2, 3, 7, 64):
            assert _feed(data, "quoted-printable", step)[0] == whole, (data, step)


def test_a_whole_body_is_decoded_in_bounded_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """decode_transfer (webhooks, Sieve's body test) goes through the streaming decoder:
    no single regex pass over the whole body, which for 16 MB of "=" held the GIL 2.4 s."""
    from correo.message import imapfmt

    sizes: list[int] = []
    whole = imapfmt._qp

    def counted(data: bytes, final: bool = True) -> bytes:
        sizes.append(len(data))
        return whole(data, final)

    monkeypatch.setattr(imapfmt, "_qp", counted)
    data = b"=" * 2_000_000
    got = decode_transfer(data, "quoted-printable")
    assert max(sizes) <= 200_000, max(sizes)
    assert got == whole(data)  # every "=" literal but the last, a soft break


def test_overlong_lines_of_equals_signs_decode_as_one_piece() -> None:
    """A line past 64 KiB is cut within it: a piece ending in "=" followed by "=" is a
    literal "=", not a soft break (it was dropped at every cut)."""
    rng = random.Random(9)
    alphabet = [b"a", b"=", b"3D", b"=41", b" ", b"\t", b"=4", b"  " * 50]
    for _ in range(12):
        lines = [
            b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60_000)))
            for _ in range(rng.randrange(1, 4))
        ]
        data = b"\n".join(lines)
        whole = _qp(data)
        for step in (777, 100_003):
            assert _feed(data, "quoted-printable", step)[0] == whole
    for data in (b"=" * 300_000, b"= " * 150_000, b"=4" * 100_000 + b"1"):
        assert _feed(data, "quoted-printable", 4096)[0] == _qp(data)
