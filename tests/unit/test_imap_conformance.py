"""Conformance details imaptest checks, at the unit level: QP per RFC 2045 §6.7, binary
parts stored as base64, RFC 5256 base subjects and address keys, INTERNALDATE zones."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correo.imap.commands import List, parse_command
from correo.imap.errors import ParseError
from correo.imap.responses import format_internal_date, internal_datetime
from correo.message.imapfmt import TransferDecoder, base64_binary_parts, decode_transfer
from correo.message.mime import Address
from correo.message.structure import parse_structure
from correo.server.imap.ordering import _first_mailbox, base_subject

# -- quoted-printable (RFC 2045 §6.7) ---------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"hello  \r\nbar", b"hello\r\nbar"),  # rule 3: transport-added blanks go
        (b"bar=\r\n\r\nx", b"bar\r\nx"),  # rule 5: soft break
        (b"foo\t=\r\nbar", b"foo\tbar"),  # blanks before a soft break stay
        (b"foo\t \t= \r\n=62", b"foo\t \tb"),  # blanks after "=" still a soft break
        (b"foo = \t\r\nbar", b"foo bar"),
        (b"a=3d=3D", b"a=="),  # note 2: lowercase hex accepted
        (b"a==41 =G1 =4", b"a=A =G1 =4"),  # note 1: "=" without two hex digits is literal
        (b"bare\nlf=\nsoft", b"bare\r\nlfsoft"),  # bare LF lines too; hard breaks as CRLF
        (b"tail=", b"tail"),
        (b"=20\r\n", b" \r\n"),  # an encoded blank is content, not transport padding
        (b"", b""),
    ],
)
def test_quoted_printable_decoding(encoded: bytes, decoded: bytes) -> None:
    assert decode_transfer(encoded, "quoted-printable") == decoded
    streamed = TransferDecoder("Quoted-Printable")
    out = b"".join(streamed.feed(encoded[i : i + 1]) for i in range(len(encoded)))
    assert out + streamed.finish() == decoded


def test_quoted_printable_overlong_line_streams_bounded() -> None:
    """A line longer than the decoder's window is cut where no rule can change it."""
    line = b"x=41" * 40000 + b"   \r\nend"
    decoder = TransferDecoder("quoted-printable")
    out = b"".join(decoder.feed(line[i : i + 8192]) for i in range(0, len(line), 8192))
    assert out + decoder.finish() == b"xA" * 40000 + b"\r\nend"
    assert len(decoder._buf) == 0


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_quoted_printable_fuzz(data: bytes, step: int) -> None:
    """Invariant: any input decodes without an exception, and feeding it in chunks of any
    size gives the same octets as decoding it whole."""
    whole = decode_transfer(data, "quoted-printable")
    decoder = TransferDecoder("quoted-printable")
    parts = [decoder.feed(data[i : i + step]) for i in range(0, len(data), step)]
    assert b"".join(parts) + decoder.finish() == whole


# -- binary parts stored as base64 (RFC 9051 §4.3, §6.3.12) ---------------------------


def test_binary_part_is_stored_base64_and_decodes_back() -> None:
    body = b"\x00-\xe4\r\n\r\n"
    msg = (
        b"From: a@b.example\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + body
    )
    out = base64_binary_parts(msg)
    assert out is not None and b"\x00" not in out
    assert out.count(b"Content-Transfer-Encoding") == 1
    tree = parse_structure(out)
    assert tree.encoding == "base64"
    assert decode_transfer(out[tree.header_end : tree.body_end], tree.encoding) == body


def test_only_parts_with_nul_are_reencoded() -> None:
    msg = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
        b"--b\r\n\r\n\x00\x01\x02\r\n"  # a part with no header lines at all
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"Subject: inner\r\nContent-Transfer-Encoding:\r\n binary\r\n\r\nin\x00ner\r\n"
        b"--b--\r\n"
    )
    out = base64_binary_parts(msg)
    assert out is not None and b"\x00" not in out
    tree = parse_structure(out)
    plain, blob, wrapped = tree.children
    assert out[plain.header_end : plain.body_end] == b"plain text"
    assert plain.encoding is None
    assert decode_transfer(out[blob.header_end : blob.body_end], blob.encoding) == b"\x00\x01\x02"
    inner = wrapped.message
    assert inner is not None and inner.encoding == "base64"
    assert decode_transfer(out[inner.header_end : inner.body_end], "base64") == b"in\x00ner"
    assert base64_binary_parts(b"Subject: clean\r\n\r\nno nul\r\n") is None


# -- SORT keys (RFC 5256 §2.1, §3; RFC 5957) -----------------------------------------


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("a", "A"),
        ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "B"),
        ("Re: [FWD: c]", "C"),
        ("[xyz]", "[XYZ]"),  # a blob is kept when nothing would remain
        (None, ""),
        ("=?iso-8859-1?q?_?=", ""),
        ("=?iso-8859-1?q?RE:_C?=", "C"),  # encoded words are decoded first
        ("=?us-ascii?b?UmU6IGM=?=", "C"),
        ("Ad: Re: Ad: Re: Ad: x", "AD: RE: AD: RE: AD: X"),
        ("re: [fwd: [fwd: re: [fwd: babylon]]]", "BABYLON"),
        ("Re:  \t Fwd:   spaced   out ", "SPACED OUT"),
        ("Résumé", "RéSUMé"),  # i;ascii-casemap: only a-z change
    ],
)
def test_base_subject(subject: str | None, base: str) -> None:
    assert base_subject(subject) == base


def test_base_subject_sorts_by_ascii_casemap() -> None:
    """i;ascii-casemap uppercases: "C" < "[xyz]" < "_", unlike a lowercase fold."""
    subjects = ["_", "[xyz]", "c", "b (a)", "babylon"]
    assert sorted(subjects, key=base_subject) == ["b (a)", "babylon", "c", "[xyz]", "_"]


def test_address_sort_key_is_first_address_even_a_group() -> None:
    group = (
        Address(None, None, "user2", None),  # group start: its name
        Address(None, None, "blah", "d.example"),
        Address(None, None, None, None),
    )
    assert _first_mailbox(group, False) == "USER2"
    named = (Address("foo bar", None, "zed", "d.example"),)
    assert _first_mailbox(named, False) == "ZED"
    assert _first_mailbox(named, True) == "FOO BAR"
    assert _first_mailbox((Address(None, None, "b", "c.d"),), True) == "B@C.D"
    assert _first_mailbox(None, True) == ""


# -- INTERNALDATE zone (RFC 9051 §2.3.3) and LIST selection (RFC 5258 §3) -------------


@pytest.mark.parametrize(
    ("zone", "text"),
    [
        (-420, b'"17-Jul-1996 02:44:25 -0700"'),
        (0, b'"17-Jul-1996 09:44:25 +0000"'),
        (330, b'"17-Jul-1996 15:14:25 +0530"'),
        (99999, b'"17-Jul-1996 09:44:25 +0000"'),  # nonsense stored zone: UTC
    ],
)
def test_internal_date_in_its_zone(zone: int, text: bytes) -> None:
    ts = dt.datetime(1996, 7, 17, 9, 44, 25, tzinfo=dt.UTC).timestamp()
    assert format_internal_date(ts, zone) == text


def test_internal_datetime_date_is_the_zones_own() -> None:
    """RFC 9051 §6.4.4: SEARCH ON compares the date, disregarding time and zone."""
    ts = dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC).timestamp()
    assert internal_datetime(ts, 120).date() == dt.date(2024, 3, 2)
    assert internal_datetime(ts, -60).date() == dt.date(2024, 3, 1)


@pytest.mark.parametrize(
    "line",
    [b'A LIST (RECURSIVEMATCH) "" "*"', b'A LIST (RECURSIVEMATCH REMOTE) "" "*"'],
)
def test_recursivematch_needs_a_real_selection_option(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_command([line], [])


def test_recursivematch_with_subscribed_parses() -> None:
    cmd = parse_command([b'A LIST (SUBSCRIBED RECURSIVEMATCH REMOTE) "" "*"'], [])
    assert isinstance(cmd, List) and cmd.selection == {"SUBSCRIBED", "RECURSIVEMATCH", "REMOTE"}
