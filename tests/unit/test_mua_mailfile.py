"""Maildir and mboxrd formats: exact round trips, flags and dates, hostile files."""

from __future__ import annotations

import io
import mailbox
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.mua.mailfile import (
    MaildirWriter,
    MboxWriter,
    crlf_chunks,
    lf_chunks,
    maildir_folders,
    read_maildir,
    read_mbox,
)

CASES = [
    (b"Subject: a\r\n\r\nbody\r\n", ("\\Seen",)),
    (b"Subject: b\r\n\r\nFrom the top\r\n>From once\r\n>>From twice\r\n", ("\\Flagged", "kw")),
    (b"Subject: c\r\n\r\n\r\n\r\n", ("\\Answered", "\\Draft", "\\Deleted")),
    (b"Subject: d\r\n", ()),
    (b"Subject: e\r\nStatusline: kept\r\n\r\n" + b"x" * 3_000_000 + b"\r\n", ()),
]


@pytest.mark.parametrize(
    ("chunks", "want"),
    [
        ([b"a\nb\r\n"], b"a\r\nb\r\n"),
        ([b"a\r", b"\nb"], b"a\r\nb"),
        ([b"a\r"], b"a\r"),
        ([b"bare\rcr\n"], b"bare\rcr\r\n"),
    ],
)
def test_crlf_chunks(chunks: list[bytes], want: bytes) -> None:
    got = b"".join(crlf_chunks(chunks))
    assert got == want
    assert b"".join(lf_chunks([got])) == want.replace(b"\r\n", b"\n")


def test_mbox_round_trip_flags_dates_and_quoting(tmp_path: Path) -> None:
    path = tmp_path / "box"
    writer = MboxWriter(path)
    for i, (data, flags) in enumerate(CASES):
        writer.add([data[:5], data[5:]], flags, 1_700_000_000 + i)
    writer.close()
    raw = path.read_bytes()
    assert b"\n>From the top\n>>From once\n>>>From twice\n" in raw  # mboxrd
    assert len(mailbox.mbox(path)) == len(CASES)  # stdlib agrees on the split
    with open(path, "rb") as fh:
        got = [(b"".join(m.chunks), m.flags, m.internal_date) for m in read_mbox(fh)]
    want_flags = [("\\Seen",), ("\\Flagged", "kw"), ("\\Answered", "\\Deleted", "\\Draft"), (), ()]
    for (data, _), (body, flags, date), wf, i in zip(
        CASES, got, want_flags, range(len(CASES)), strict=True
    ):
        assert body == data
        assert sorted(flags) == sorted(wf)
        assert date == 1_700_000_000 + i


def test_mbox_reader_skips_unconsumed_messages_and_junk() -> None:
    raw = (
        b"junk before\n"
        b"From a@b Sat Jan  1 00:00:00 2000\nSubject: 1\n\ntext\nFrom inside without blank\n\n"
        b"From someone Sun Jan  2 00:00:00 2000\nStatus: RO\nX-Status: AF\n\nbody\n"
    )
    msgs = list(read_mbox(io.BytesIO(raw)))  # never consumed: the reader must skip ahead
    assert [m.flags for m in msgs] == [(), ("\\Seen", "\\Answered", "\\Flagged")]
    assert msgs[0].sender == "a@b" and msgs[1].internal_date == 946771200.0
    one = next(read_mbox(io.BytesIO(raw)))
    assert b"".join(one.chunks) == b"Subject: 1\r\n\r\ntext\r\nFrom inside without blank\r\n"


def test_maildir_writer_reader_and_folders(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    w = MaildirWriter(root)
    for i, (data, flags) in enumerate(CASES[:4]):
        w.add([data], flags, 1_600_000_000 + i)
    w.add([b"Subject: n\r\n\r\nx\r\n"], (), 1_600_000_010, new=True)
    w.sync()
    sub = MaildirWriter(MaildirWriter.folder(root, "Lists/Tëst"))
    sub.add([b"Subject: s\r\n\r\n"], ("\\Seen",), 5.0)
    sub.sync()
    assert len(list((root / "new").iterdir())) == 1
    assert not list((root / "tmp").iterdir())
    assert len(mailbox.Maildir(root, create=False)) == 5
    got = list(read_maildir(root))
    assert [b"".join(m.chunks) for m in got][:4] == [c[0] for c in CASES[:4]]
    assert sorted(got[1].flags) == ["\\Flagged", "kw"]
    assert [m.internal_date for m in got] == [1_600_000_000 + i for i in (0, 1, 2, 3, 10)]
    assert [n for n, _ in maildir_folders(root)] == ["INBOX", "Lists/Tëst"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_fuzz_mbox_reader(data: bytes, step: int) -> None:
    """Invariant: any bytes read as an mbox yield messages, never an exception, and every
    body byte outside From_ lines and metadata fields is accounted for (no line is lost
    across the chunked CRLF conversion)."""
    for m in read_mbox(io.BytesIO(b"From x\n" + data)):
        assert isinstance(b"".join(m.chunks), bytes)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    assert b"".join(crlf_chunks(chunks)) == b"".join(crlf_chunks([data]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([b"From x", b">From y", b"", b"text", b"  cont"]), max_size=8),
        min_size=1,
        max_size=5,
    )
)
def test_property_mbox_write_read_identity(bodies: list[list[bytes]]) -> None:
    """Invariant: write then read gives back every message byte for byte (mboxrd)."""
    messages = [b"Subject: t\r\n\r\n" + b"".join(line + b"\r\n" for line in b) for b in bodies]
    buf_path = Path(__import__("tempfile").mkdtemp()) / "m"
    writer = MboxWriter(buf_path)
    for m in messages:
        writer.add([m])
    writer.close()
    with open(buf_path, "rb") as fh:
        assert [b"".join(m.chunks) for m in read_mbox(fh)] == messages
