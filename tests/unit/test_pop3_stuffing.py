"""DotStuffer and TopFilter: tables, plus every chunk split point against a reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.pop3 import DotStuffer, TopFilter


def reference_stuff(data: bytes) -> bytes:
    """Line-by-line stuffing, slow but obviously right (tests only)."""
    lines = data.split(b"\n")
    out = b"\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
    if not data or data.endswith(b"\r\n"):
        return out + b".\r\n"
    return out + b"\r\n.\r\n"


def reference_top(data: bytes, n: int) -> bytes:
    """Header through the first empty line, then n lines (tests only)."""
    lines = re.findall(rb"[^\n]*\n|[^\n]+", data)  # LF ends a line, a bare CR does not
    out: list[bytes] = []
    it = iter(lines)
    for line in it:
        out.append(line)
        if line in (b"\r\n", b"\n"):
            break
    else:
        return b"".join(out)
    for _, line in zip(range(n), it, strict=False):
        out.append(line)
    return b"".join(out)


def stuff_chunks(chunks: list[bytes]) -> bytes:
    s = DotStuffer()
    return b"".join(s.feed(c) for c in chunks) + s.finish()


STUFF_CASES = [
    (b"", b".\r\n"),
    (b"hello\r\n", b"hello\r\n.\r\n"),
    (b"hello", b"hello\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
    (b".start", b"..start\r\n.\r\n"),
    (b"a.\r\nb. .\r\n", b"a.\r\nb. .\r\n.\r\n"),
    (b"x\n.y\n", b"x\n..y\n\r\n.\r\n"),  # bare LF still protected, and CRLF added
    (b"x\r", b"x\r\r\n.\r\n"),
]


@pytest.mark.parametrize(("data", "expected"), STUFF_CASES)
def test_dot_stuffer_table(data: bytes, expected: bytes) -> None:
    assert stuff_chunks([data]) == expected
    assert reference_stuff(data) == expected
    # every split into single bytes gives the same
    assert stuff_chunks([data[i : i + 1] for i in range(len(data))]) == expected


@pytest.mark.parametrize("periods", [0, 1, 15, 16, 17, 40])
def test_dot_stuffer_line_start_after_many_periods(periods: int) -> None:
    """A line starting with "." is stuffed however many periods inside lines come first
    (a chunk is scanned period by period, then by replace() when there are many)."""
    data = b"a. b" * periods + b"\r\n.hidden\r\nend.\r\n"
    assert stuff_chunks([data]) == reference_stuff(data)
    assert b"\r\n..hidden\r\n" in stuff_chunks([data])
    plain = b"a. b" * periods + b"\r\n"
    assert stuff_chunks([plain]) == plain + b".\r\n"


def test_dot_stuffer_misuse() -> None:
    s = DotStuffer()
    s.finish()
    with pytest.raises(ValueError):
        s.feed(b"x")
    with pytest.raises(ValueError):
        s.finish()


_LINEY = st.binary(max_size=60) | st.lists(
    st.sampled_from([b".", b"\r\n", b"\n", b"\r", b"a", b"..", b"Subject: x", b" "]), max_size=30
).map(b"".join)


@settings(max_examples=300)
@given(data=_LINEY)
def test_dot_stuffer_every_split_point(data: bytes) -> None:
    """Invariant: for every split of the input in two chunks (and byte by byte) the
    output equals the reference line-by-line stuffing of the whole input."""
    expected = reference_stuff(data)
    for i in range(len(data) + 1):
        assert stuff_chunks([data[:i], data[i:]]) == expected
    assert stuff_chunks([data[i : i + 1] for i in range(len(data))]) == expected


def test_dot_stuffer_large_message_streams() -> None:
    chunk = (b"." * 10 + b"\r\n") * 5000
    s = DotStuffer()
    total = 0
    for _ in range(200):  # ~12 MB through, each output bounded by 2x chunk
        out = s.feed(chunk)
        assert len(out) <= 2 * len(chunk)
        total += len(out)
    assert total == 200 * 5000 * 13
    assert s.finish() == b".\r\n"


MSG = b"From: a\r\nSubject: s\r\n\r\nline1\r\nline2\r\n\r\nline4\r\n"

TOP_CASES = [
    (MSG, 0, b"From: a\r\nSubject: s\r\n\r\n"),
    (MSG, 1, b"From: a\r\nSubject: s\r\n\r\nline1\r\n"),
    (MSG, 3, b"From: a\r\nSubject: s\r\n\r\nline1\r\nline2\r\n\r\n"),
    (MSG, 99, MSG),
    (b"\r\nbody1\r\nbody2\r\n", 1, b"\r\nbody1\r\n"),  # no header at all
    (b"From: a\r\nno blank line", 5, b"From: a\r\nno blank line"),
    (b"From: a\r\n\r\nlast line without crlf", 1, b"From: a\r\n\r\nlast line without crlf"),
    (b"From: a\n\nbody\nmore\n", 1, b"From: a\n\nbody\n"),
]


@pytest.mark.parametrize(("data", "lines", "expected"), TOP_CASES)
def test_top_filter_table(data: bytes, lines: int, expected: bytes) -> None:
    assert reference_top(data, lines) == expected
    f = TopFilter(lines)
    assert f.feed(data) == expected
    g = TopFilter(lines)
    assert b"".join(g.feed(data[i : i + 1]) for i in range(len(data))) == expected


def test_top_filter_done_lets_shell_stop() -> None:
    assert not TopFilter(1).done
    f = TopFilter(1)
    assert f.feed(b"A: b\r\n\r\nx\r\n") == b"A: b\r\n\r\nx\r\n"
    assert f.done
    assert f.feed(b"more\r\n") == b""
    z = TopFilter(0)
    states = [z.done]
    z.feed(b"A: b\r\n")
    states.append(z.done)
    z.feed(b"\r\n")
    states.append(z.done)
    assert states == [False, False, True]
    with pytest.raises(ValueError):
        TopFilter(-1)


@settings(max_examples=300)
@given(
    data=st.lists(
        st.sampled_from([b"\r\n", b"\n", b"\r", b"H: v", b"body", b".", b"x"]), max_size=25
    ).map(b"".join),
    lines=st.integers(min_value=0, max_value=6),
)
def test_top_filter_every_split_point(data: bytes, lines: int) -> None:
    """Invariant: for every two-chunk split and byte-by-byte feeding, TopFilter emits
    exactly the reference header + blank line + `lines` body lines."""
    expected = reference_top(data, lines)
    for i in range(len(data) + 1):
        f = TopFilter(lines)
        assert f.feed(data[:i]) + f.feed(data[i:]) == expected
    f = TopFilter(lines)
    assert b"".join(f.feed(data[i : i + 1]) for i in range(len(data))) == expected
