"""Email/get of a big message from its part tree says what parsing the message says.

A big message's body properties are built from the stored part tree and the octets of
its parts, read in pieces (web/jmap_parts.py); a small one's by parsing it whole
(``parse_email``). For every message here, every property set and every piece size,
the two must give the same answer to the octet; where the tree might disagree with
the parse (broken MIME), the tree path must say so (None: the caller parses whole)
rather than guess.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email
import email.policy
import json
import quopri
import random
import threading
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from correo.delivery.facts import facts_from_bytes, load_tree
from correo.jmap.mail import BODY_PROPS, parse_email
from correo.web.jmap_partdecode import Base64, Irregular, Text, TextSink
from correo.web.jmap_parts import _TEXT_CAP, email_of_tree

BLOB = "Bfeedfacefeedfacefeedface"
HEADS = ["subject", "from", "messageId", "sentAt", "header:X-Tag:asText", "header:Subject"]


def _b64(data: bytes, width: int = 76) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i : i + width] for i in range(0, len(text), width))


def _qp(text: bytes) -> bytes:
    return quopri.encodestring(text).replace(b"\n", b"\r\n")


def _mixed(boundary: bytes, *parts: bytes, head: bytes = b"") -> bytes:
    out = (
        head + b"From: Ana <ana@example.test>\r\nTo: bob@example.test\r\n"
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
        b"Message-ID: <m1@example.test>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
        b"X-Tag: =?iso-8859-1?q?tr=E8s?=\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\npreamble\r\n'
    )
    for part in parts:
        out += b"--" + boundary + b"\r\n" + part + b"\r\n"
    return out + b"--" + boundary + b"--\r\nepilogue\r\n"


def _part(ctype: bytes, body: bytes, *fields: bytes) -> bytes:
    return (
        b"Content-Type: " + ctype + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body
    )


BIG = random.Random(7).randbytes(600_000)
LATIN = "Grüße aus Köln, déjà vu. ".encode("iso-8859-1") * 40
UTF8 = "Ünïcödé ∑ 日本語 text. ".encode() * 30
ALTERNATIVE = _part(
    b"multipart/alternative; boundary=alt",
    b"--alt\r\n"
    + _part(b"text/plain; charset=utf-8", _qp(UTF8), b"Content-Transfer-Encoding: quoted-printable")
    + b"\r\n--alt\r\n"
    + _part(
        b"text/html; charset=utf-8",
        b"<html><head><title>t</title></head>"
        b"<body><p>Hello <b>there</b>&amp; all</p></body></html>",
    )
    + b"\r\n--alt--",
)
RELATED = _part(
    b"multipart/related; boundary=rel; type=text/html",
    b"--rel\r\n"
    + _part(b"text/html", b"<img src=cid:logo@x> <div>logo</div>")
    + b"\r\n--rel\r\n"
    + _part(
        b"image/png",
        _b64(BIG[:3000]),
        b"Content-ID: <logo@x>",
        b"Content-Transfer-Encoding: base64",
        b"Content-Disposition: inline",
    )
    + b"\r\n--rel--",
)
INNER = (
    b"From: c@example.test\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
    b"--in\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + _b64(LATIN)
    + b"\r\n--in\r\n"
    + _part(
        b'application/zip; name="z.zip"', _b64(BIG[:5001]), b"Content-Transfer-Encoding: BASE64"
    )
    + b"\r\n--in--\r\n"
)
ATTACHMENT = _part(
    b"application/octet-stream",
    _b64(BIG),
    b"Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20bill.bin",
    b"Content-Transfer-Encoding: base64",
)

GOOD: dict[str, bytes] = {
    "mixed-alternative-related-nested": _mixed(
        b"out",
        ALTERNATIVE,
        RELATED,
        _part(b"message/rfc822", INNER),
        ATTACHMENT,
        _part(b'text/plain; charset="ISO-8859-1"', LATIN, b"Content-Transfer-Encoding: 8bit"),
    ),
    "single-base64-text": b"From: a@example.test\r\nSubject: one\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(UTF8, 60) + b"\r\n",
    "single-no-mime": b"From: a@example.test\r\nSubject: plain\r\n\r\n"
    b"Just text,\r\nover two lines.\r\n",
    "qp-soft-breaks": _mixed(
        b"q",
        _part(
            b"text/plain; charset=utf-8",
            b"caf=C3=A9 =3D long=\r\n line=20\r\nsoft=\r\n=\r\nend=",
            b"Content-Transfer-Encoding: quoted-printable",
        ),
        _part(
            b"text/plain", b"a=\rb\r\nc=4 =ZZ ==41", b"Content-Transfer-Encoding: Quoted-Printable"
        ),
    ),
    "charsets": _mixed(
        b"cs",
        _part(
            b"text/plain; charset=shift_jis",
            "日本語のテキスト".encode("shift_jis"),
            b"Content-Transfer-Encoding: 8bit",
        ),
        _part(
            b"text/plain; charset=utf-16",
            _b64("wide text".encode("utf-16")),
            b"Content-Transfer-Encoding: base64",
        ),
        _part(b"text/plain; charset=utf-16", "no BOM, the machine's order".encode("utf-16-le")),
        _part(b"text/plain; charset=UTF-32", "a BOM".encode("utf-32")),
        _part(b"text/plain; charset=utf-16", b"\r\n\xff\xfeo\x00d\x00d\x00"),
        _part(b"text/plain; charset=x-unknown", b"unknown \xe9 charset"),
        _part(b"text/plain; charset=utf-8", b"late bad byte " * 50 + b"\xff end"),
        _part(b"text/plain; charset=utf-8", b"cut mid char \xe2\x82"),
        _part(b"text/html; charset=us-ascii", b"<p>8bit \xc3\xa9 in ascii</p>"),
        _part(b'text/plain; charset="utf\x00"', b"a NUL in the charset \xe9"),
        # problems past the first octets: read again as UTF-8 from the start
        _part(b"text/plain; charset=shift_jis", "日本語".encode("shift_jis") * 9 + b"\xff\xff!"),
        _part(b"text/plain; charset=iso-8859-7", "Καλη μερα ".encode("iso-8859-7") * 9 + b"\xae"),
        _part(b"text/plain; charset=utf-16-le", "wide ".encode("utf-16-le") * 9 + b"\x00\xd8a\x00"),
        _part(b"text/plain; charset=us-ascii", b"ascii then " * 9 + b"\xc3\xa9 utf-8"),
        _part(b"text/html; charset=utf-8\x00", b"<p>and in an html one</p>"),
    ),
    "dispositions": _mixed(
        b"d",
        _part(
            b"text/html",
            b"<p>an html file</p>",
            b"Content-Disposition: attachment; filename=page.html",
        ),
        _part(b"text/plain; name=notes.txt", b"inline named text", b"Content-Disposition: inline"),
        _part(b"text/calendar", b"BEGIN:VCALENDAR"),
        _part(b"image/gif", b"GIF89a", b"Content-ID:   <g@x>  "),
    ),
    "no-part-headers": b"Subject: bare\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\n\r\nno headers here\r\n--b\r\nContent-Type: text/plain\r\n\r\n\r\n--b--\r\n",
    "base64-padding": _mixed(
        b"p",
        _part(b"application/x-a", b"QQ", b"Content-Transfer-Encoding: base64"),
        _part(b"application/x-b", b"QUI=", b"Content-Transfer-Encoding: base64"),
        _part(b"application/x-c", b"QUJD\r\nRA=\r\n=", b"Content-Transfer-Encoding: base64"),
        _part(b"application/x-d", b"", b"Content-Transfer-Encoding: base64"),
        _part(b"application/x-e", b"QUJD", b"Content-Transfer-Encoding: base64 "),
    ),
    "long-text": _mixed(
        b"l",
        _part(b"text/plain", b"   \r\n" * 1000 + b"word " * 120_000),
        _part(
            b"text/html",
            _qp(b"<p>" + b"x" * 300_000 + b"</p>"),
            b"Content-Transfer-Encoding: quoted-printable",
        ),
    ),
    "long-base64-text": _mixed(
        b"lb",
        _part(b"text/plain; charset=utf-8", _b64(UTF8 * 400), b"Content-Transfer-Encoding: base64"),
        ATTACHMENT,
    ),
    "many-parts": _mixed(  # header sections read together, the parts between them not kept
        b"m",
        *[
            _part(
                b"image/jpeg",
                _b64(BIG[i * 30_000 : (i + 1) * 30_000]),
                b"Content-Transfer-Encoding: base64",
            )
            for i in range(20)
        ],
    ),
    "delimiter-blanks": b"Subject: x\r\nContent-Type: multipart/mixed; boundary=w\r\n\r\n"
    b"--w \t\r\nContent-Type: text/plain\r\n\r\none\r\n--w\t\r\n\r\ntwo\r\n--w-- \r\nend\r\n",
    "rfc2231-boundary": b"Subject: x\r\n"
    b"Content-Type: multipart/mixed; boundary*0=a; boundary*1=b\r\n\r\n"
    b"--ab\r\nContent-Type: text/plain\r\n\r\nt\r\n--ab--\r\n",
}

BROKEN: dict[str, bytes] = {
    "unclosed": GOOD["dispositions"].rsplit(b"--d--", 1)[0],
    "base64-junk": _mixed(
        b"j", _part(b"text/plain", b"SGVs bG8h\r\n", b"Content-Transfer-Encoding: base64")
    ),
    "base64-length": _mixed(
        b"k", _part(b"application/x", b"QUJDR", b"Content-Transfer-Encoding: base64")
    ),
    "base64-inner-pad": _mixed(
        b"k", _part(b"application/x", b"QQ==QUJD", b"Content-Transfer-Encoding: base64")
    ),
    "no-boundary": b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\n"
    b"--a\r\n\r\nbody\r\n--a--\r\n",
    "digest": b"Subject: x\r\nContent-Type: multipart/digest; boundary=g\r\n\r\n--g\r\n\r\n"
    b"Subject: in\r\n\r\ndigest body\r\n--g--\r\n",
    "bare-lf": GOOD["dispositions"].replace(b"\r\n", b"\n"),
    "header-without-colon": b"Subject: x\r\nnot a header\r\nFrom: a@x\r\n\r\nbody\r\n",
    "encoded-message": _mixed(
        b"e", _part(b"message/rfc822", _b64(INNER), b"Content-Transfer-Encoding: base64")
    ),
    "uuencode": _mixed(
        b"u",
        _part(
            b"application/x",
            b"begin 644 a\r\n#86)C\r\n`\r\nend\r\n",
            b"Content-Transfer-Encoding: x-uuencode",
        ),
    ),
    "delivery-status": _mixed(
        b"s", _part(b"message/delivery-status", b"Reporting-MTA: dns; x\r\n\r\nAction: failed\r\n")
    ),
    # lines that start with the delimiter but are none (RFC 2046 §5.1.1): the parse
    # reads "--bogus" as text and "--b-- x" too, so the part after it is one more
    "delimiter-prefix": b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--bogus\r\n"
    b"Content-Type: text/html\r\n\r\n<p>two</p>\r\n--b--\r\n",
    "close-with-more": b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b-- x\r\n"
    b"--b\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--b--\r\n",
    # a preamble line with "--" in it, then a delimiter line the parse ends at a bare CR
    "preamble-dashes-bare-cr": b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"pre -- amble\r\n--b \rContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n",
    "deep": b"Subject: deep\r\n"
    + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(20)
    )
    + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    + b"".join(b"--b%d--\r\n" % i for i in reversed(range(20))),
}

CASES: list[tuple[list[str], dict[str, bool], int]] = [
    ([*HEADS, *BODY_PROPS], {"all": True}, 0),
    (list(BODY_PROPS), {"text": True}, 7),
    (["bodyValues", "preview", "htmlBody"], {"html": True}, 100),
    (["attachments", "hasAttachment", "subject"], {}, 0),
    (["bodyValues"], {"all": True}, 3),
    (["preview", "hasAttachment"], {}, 0),  # no size asked: attachments are not read
    (["preview", "bodyValues"], {"text": True}, 0),
]


def _tree_path(
    raw: bytes, props: list[str], flags: dict[str, bool], most: int, piece: int
) -> dict[str, Any] | None:
    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        for at in range(start, end, piece):
            yield raw[at : min(at + piece, end)]

    async def run() -> tuple[dict[str, Any], int] | None:
        return await email_of_tree(
            load_tree(facts_from_bytes(raw)),
            read,
            props,
            blob=BLOB,
            body_values=flags,
            max_body_value_bytes=most,
        )

    done = asyncio.run(run())
    return None if done is None else done[0]


@pytest.mark.parametrize("name", sorted(GOOD))
@pytest.mark.parametrize("piece", [5, 1 << 16])
def test_the_tree_gives_what_the_parse_gives(name: str, piece: int) -> None:
    raw = GOOD[name]
    for props, flags, most in CASES:
        want = parse_email(raw, props, blob=BLOB, body_values=flags, max_body_value_bytes=most)
        got = _tree_path(raw, props, flags, most, piece)
        assert got is not None, f"{name}: the tree path gave up"
        assert got == want, (name, props, flags, most)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_mime_reads_whole_or_the_same(name: str) -> None:
    """Asked for every property, the tree path gives up on these (the parse repairs
    them in ways of its own); asked for fewer, it may answer, but only as the parse."""
    raw = BROKEN[name]
    for props, flags, most in CASES:
        got = _tree_path(raw, props, flags, most, 1 << 16)
        if props == CASES[0][0]:
            assert got is None, name
        want = parse_email(raw, props, blob=BLOB, body_values=flags, max_body_value_bytes=most)
        assert got is None or got == want, (name, props)


def test_a_preview_reads_at_most_its_cap() -> None:
    """A long first text part not asked for: its preview comes from its first octets."""
    text = b"start " + b"y" * (_TEXT_CAP * 3)
    raw = _mixed(b"c", _part(b"text/plain", text), ATTACHMENT)
    tree = load_tree(facts_from_bytes(raw))
    read_octets = 0

    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        nonlocal read_octets
        for at in range(start, end, 1 << 16):
            chunk = raw[at : min(at + (1 << 16), end)]
            read_octets += len(chunk)
            yield chunk

    done = asyncio.run(email_of_tree(tree, read, ["preview", "textBody"], blob=BLOB))
    assert done is not None
    assert done[0] == parse_email(raw, ["preview", "textBody"], blob=BLOB)
    # the attachment is read to count its decoded size; the text only to its cap
    assert read_octets < len(_b64(BIG)) + _TEXT_CAP + 8192
    assert done[1] < _TEXT_CAP + 8192  # and no more than the cap is held
    read_octets = 0  # no size asked for: the attachment is not read at all
    done = asyncio.run(email_of_tree(tree, read, ["preview"], blob=BLOB))
    assert done is not None and done[0] == parse_email(raw, ["preview"], blob=BLOB)
    assert read_octets < _TEXT_CAP + 8192


def test_html_previews_are_made_in_a_thread_from_a_bounded_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An html part of empty paragraphs, megabytes of them: html_to_text of it all is
    seconds of CPU; it sees at most the first _TEXT_CAP octets, and off the loop."""
    from correo.message import html

    calls: list[tuple[bool, int]] = []
    real = html.html_to_text

    def spy(value: str) -> str:
        calls.append((threading.current_thread() is threading.main_thread(), len(value)))
        return real(value)

    monkeypatch.setattr(html, "html_to_text", spy)
    paragraphs = b"<p>" * 700_000 + b"late words"  # 2.1 MB decoded
    raw = _mixed(b"h", _part(b"text/html", _b64(paragraphs), b"Content-Transfer-Encoding: base64"))
    tree = load_tree(facts_from_bytes(raw))

    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        for at in range(start, end, 1 << 20):  # the store's pieces
            yield raw[at : min(at + (1 << 20), end)]

    for props, flags in (
        (["preview", "textBody"], {}),
        (["preview", "bodyValues"], {"html": True}),
    ):
        done = asyncio.run(email_of_tree(tree, read, props, blob=BLOB, body_values=flags))
        assert done is not None and done[0]["preview"] == ""
        assert calls and all(not main and size <= _TEXT_CAP for main, size in calls), calls
        calls.clear()
        if "textBody" in props:  # the text held for a preview is cut at its cap
            assert done[1] <= _TEXT_CAP + 1024
        else:  # asked for whole: all of it
            assert done[0]["bodyValues"]["1"]["value"] == paragraphs.decode()


def test_many_header_sections_are_parsed_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """999 parts of short header lines (0.85 MB of them) and a long To: list: parsed,
    and the leaves' JSON made, in one worker-thread hop, not in a slice of the loop."""
    from correo.web import jmap_parts

    where: list[bool] = []
    parse_head, parse, lists = jmap_parts._parse_head, jmap_parts.parse_email, jmap_parts._lists

    def head_spy(section: bytes) -> Any:
        where.append(threading.current_thread() is threading.main_thread())
        return parse_head(section)

    def parse_spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        where.append(threading.current_thread() is threading.main_thread())
        return parse(*args, **kwargs)

    def lists_spy(root: Any) -> Any:  # and the leaves' lists, with their JSON
        where.append(threading.current_thread() is threading.main_thread())
        return lists(root)

    monkeypatch.setattr(jmap_parts, "_parse_head", head_spy)
    monkeypatch.setattr(jmap_parts, "_lists", lists_spy)
    monkeypatch.setattr(jmap_parts, "parse_email", parse_spy)
    fields = [b"X-F%d: v" % i for i in range(100)]
    many = _mixed(b"n", *[_part(b"text/plain", b"x", *fields) for i in range(999)])
    to = b"To: " + b", ".join(b"user%d@example.test" % i for i in range(10_000)) + b"\r\n"
    for raw, props in ((many, ["bodyStructure"]), (to + GOOD["dispositions"], ["to", "textBody"])):
        got = _tree_path(raw, props, {}, 0, 1 << 20)
        assert got == parse(raw, props, blob=BLOB)
        assert where and not any(where), sum(where)
        where.clear()
    small = _tree_path(GOOD["dispositions"], ["subject", "textBody"], {}, 0, 1 << 20)
    assert small is not None and all(where)  # a few short ones: on the loop, no hop


def test_a_stored_tree_is_counted_before_it_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from correo.web import jmap_parts

    loads: list[tuple[bool, int]] = []

    def spy(facts: Any) -> Any:
        loads.append((threading.current_thread() is threading.main_thread(), len(facts.tree)))
        return load_tree(facts)

    monkeypatch.setattr(jmap_parts, "load_tree", spy)
    facts = facts_from_bytes(GOOD["dispositions"])

    def with_parts(count: int) -> Any:
        child = {"o": [0, 2, 3]}
        tree = {"o": [0, 1, 9], "t": ["multipart", "mixed"], "children": [child] * count}
        return dataclasses.replace(facts, tree=json.dumps(tree, separators=(",", ":")).encode())

    with pytest.raises(Irregular):
        asyncio.run(jmap_parts._load(with_parts(2001)))
    assert loads == []  # 10,000 parts took 155 ms to load: not loaded at all
    assert len(asyncio.run(jmap_parts._load(with_parts(1999))).children) == 1999
    assert loads == [(False, len(with_parts(1999).tree))]  # long: loaded in a thread
    assert asyncio.run(jmap_parts._load(facts)) == load_tree(facts)
    assert loads[1][0]  # short: on the loop


def test_leaves_side_by_side_are_read_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """999 tiny base64 leaves, or 60 of 48 KiB: not a store read each (a worker-thread
    hop and a statement); and past a bound on reads, the message is parsed whole."""
    from correo.web import jmap_parts

    def reads_for(raw: bytes, props: list[str]) -> tuple[int, dict[str, Any] | None]:
        count = 0

        async def read(start: int, end: int) -> AsyncIterator[bytes]:
            nonlocal count
            count += 1
            for at in range(start, end, 1 << 20):
                yield raw[at : min(at + (1 << 20), end)]

        done = asyncio.run(email_of_tree(load_tree(facts_from_bytes(raw)), read, props, blob=BLOB))
        return count, None if done is None else done[0]

    coded = b"Content-Transfer-Encoding: base64"
    tiny = _mixed(b"t", *[_part(b"image/gif", _b64(b"GIF%d" % i), coded) for i in range(999)])
    wide = _mixed(b"w", *[_part(b"image/png", _b64(BIG[: 36 << 10]), coded) for _ in range(60)])
    for raw in (tiny, wide):
        count, got = reads_for(raw, ["bodyStructure", "subject"])
        assert got == parse_email(raw, ["bodyStructure", "subject"], blob=BLOB)
        assert count <= 2 + len(raw) // (1 << 20) * 2, count
    spread = _mixed(  # leaves 300 KB apart: a read each, past the bound too many
        b"s",
        *[
            part
            for i in range(12)
            for part in (_part(b"image/gif", _b64(b"GIF"), coded), _part(b"a/b", b"z" * 300_000))
        ],
    )
    count, got = reads_for(spread, ["bodyStructure"])
    assert got is not None and count > 12
    monkeypatch.setattr(jmap_parts, "_READS", 12)
    assert reads_for(spread, ["bodyStructure"])[1] is None


def test_a_text_is_held_once() -> None:
    """A text asked for whole is held as one decode, not its fallback beside it."""
    data = "Ünïcödé text ".encode() * 40_000  # 520,000 characters
    for charset, encoded in (("utf-8", data), ("iso-8859-1", data.decode().encode("latin-1"))):
        tracemalloc.start()
        sink = TextSink(charset, 1 << 62)
        for at in range(0, len(encoded), 1 << 16):
            sink.feed(encoded[at : at + (1 << 16)])
        sink.feed(b"", final=True)
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        want = encoded.decode(charset)  # Latin-1 characters: an octet each in a str
        assert sink.text() == Text(want, False)
        assert held < len(want) * 1.5, (charset, held)


def test_base64_in_pieces_is_the_stdlib_decode_or_irregular() -> None:
    """Random base64-ish bodies: decoded in pieces, the octets and size are what
    get_payload(decode=True) gives, or the body is one the stdlib repairs."""
    rng = random.Random(1)
    alphabet = b"QUJDabc+/=\r\n \x00"
    agreed = 0
    for _ in range(3000):
        body = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        if rng.random() < 0.5:  # mostly clean ones, so that most decode
            body = base64.b64encode(rng.randbytes(rng.randrange(0, 12)))
            body = body.rstrip(b"=") if rng.random() < 0.3 else body
        message = email.message_from_bytes(
            b"Content-Transfer-Encoding: base64\r\n\r\n" + body, policy=email.policy.compat32
        )
        want = message.get_payload(decode=True)
        decoder = Base64()
        try:
            step = rng.randrange(1, 5)
            out = b"".join(
                decoder.feed(body[i : i + step], True) for i in range(0, len(body), step)
            )
            last, size = decoder.finish(True)
        except Irregular:
            continue
        agreed += 1
        assert (out + last, size) == (want, len(want)), body
        counter = Base64()  # counting only, as for a part whose size alone is asked
        for i in range(0, len(body), step):
            counter.feed(body[i : i + step], False)
        assert counter.finish(False) == (b"", len(want)), body
    assert agreed > 1000


def _random_entity(rng: random.Random, depth: int) -> bytes:
    """A random MIME entity: nested multiparts and messages, charsets, encodings."""
    if depth < 4 and rng.random() < 0.4:
        if rng.random() < 0.25:
            inner = _random_entity(rng, depth + 1)
            return b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\nFrom: x@y\r\n" + inner
        sub = rng.choice([b"mixed", b"alternative", b"related", b"signed"])
        cut = b"b%d" % rng.randrange(10**6)
        out = b"Content-Type: multipart/" + sub + b'; boundary="' + cut + b'"\r\n\r\n'
        for _ in range(rng.randint(1, 4)):
            out += b"--" + cut + b"\r\n" + _random_entity(rng, depth + 1) + b"\r\n"
        return out + b"--" + cut + b"--" + rng.choice([b"", b"\r\nepilogue"])
    kind = rng.choice([b"text/plain", b"text/html", b"application/pdf", b"TEXT/Plain", b""])
    charset = rng.choice(["us-ascii", "utf-8", "iso-8859-1", "shift_jis", "utf-16", "x-bogus"])
    cte = rng.choice([b"", b"base64", b"quoted-printable", b"8bit", b"BASE64"])
    text = rng.choice(["plain words", "Grüße, déjà vu €", "日本語", "<p>Hi <b>x</b></p>", " "])
    try:
        data = (text * rng.randint(1, 40)).encode(charset)
    except (LookupError, UnicodeError):
        data = text.encode()
    data += bytes([rng.randrange(256)]) if rng.random() < 0.1 else b""
    if cte.lower() == b"base64":
        data = _b64(data, rng.choice([76, 4, 1000]))
    elif cte == b"quoted-printable":
        data = _qp(data)
    head = b"Content-Type: " + kind + b"; charset=" + charset.encode() + b"\r\n" if kind else b""
    head += b"Content-Transfer-Encoding: " + cte + b"\r\n" if cte else b""
    disposition = rng.choice([b"", b"inline", b"attachment; filename=a.txt"])
    head += b"Content-Disposition: " + disposition + b"\r\n" if disposition else b""
    return head + b"\r\n" + data


def _mutated(rng: random.Random, raw: bytes) -> bytes:
    """``raw`` broken a little: lines lost, doubled with a bare LF, given a bare CR or
    blanks, junk lines put in, the message cut short."""
    lines = raw.split(b"\r\n")
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(lines))
        how = rng.randrange(6)
        if how == 0:
            del lines[at]
        elif how == 1:
            lines[at] += b"\n" + lines[at]
        elif how == 2:
            lines[at] += rng.choice([b"\r", b" \t"])
        elif how == 3:
            lines.insert(at, rng.choice([b"junk", b"", b"--", b" folded", b"="]))
        elif how == 4:
            lines = lines[: max(at, 1)]
        else:
            lines[at] = lines[at].upper()
    return b"\r\n".join(lines)


@pytest.mark.parametrize("broken", [False, True])
def test_random_messages_give_what_the_parse_gives(broken: bool) -> None:
    rng = random.Random(11 + broken)
    answered = 0
    for _ in range(80):
        raw = b"From: a@example.test\r\nSubject: r\r\n" + _random_entity(rng, 0)
        raw = _mutated(rng, raw) if broken else raw
        for props, flags, most in CASES:
            want = parse_email(raw, props, blob=BLOB, body_values=flags, max_body_value_bytes=most)
            got = _tree_path(raw, props, flags, most, rng.choice([3, 1 << 16]))
            assert got is None or got == want, raw
            answered += got is not None
    every = 80 * len(CASES)
    assert answered > (every // 4 if broken else every - 1)  # well-formed ones all are
