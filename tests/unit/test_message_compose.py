"""compose -> parse -> section bytes: attachments, names and subjects survive intact."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from correo.message import (
    Attachment,
    compose,
    decode_header,
    decode_param,
    decode_transfer,
    parse_structure,
    searchable_text,
    section,
)

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
FILES = [
    Attachment(os.urandom(3000), "résumé été.pdf"),
    Attachment(b"plain ascii\r\nlines\r\n", "notes.txt"),
    Attachment(
        bytes(range(256)), "日本語のファイル名はとても長いのでRFC2231の継続行が必要です.bin"
    ),
    Attachment(b"--boundary-like\r\n--==\r\n", "tricky.dat", content_type="application/x-tricky"),
]


def _parts_with_files(data: bytes) -> dict[str, bytes]:
    root = parse_structure(data)
    out: dict[str, bytes] = {}
    for p in root.walk():
        name = decode_param(p.disposition_params, "filename")
        if name is not None:
            out[name] = decode_transfer(data[p.header_end : p.body_end], p.encoding)
    return out


@pytest.mark.parametrize("html", [None, "<p>Hi <b>there</b> — ünïcode</p>"])
def test_round_trip(html: str | None) -> None:
    subject = "Grüße — " + " ".join(["long subject"] * 8)
    data = compose(
        from_=("Jörg Ünicode", "j@x.test"),
        to=["Mary <m@y.test>", ("Zoë, the Tester", "z@y.test")],
        cc=["c@y.test"],
        subject=subject,
        text="Body text with ünïcode\nand a second line",
        html=html,
        attachments=[*FILES, Attachment(b"GIF89a\x00", "a.gif", content_id="img1@x")],
        date=WHEN,
        message_id="<fixed@x.test>",
    )
    assert data.isascii()  # SMTPUTF8 only for non-ASCII addresses
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF everywhere
    root = parse_structure(data)
    assert all(not p.defects for p in root.walk())
    env = root.envelope
    assert env is not None and env.subject is not None
    assert decode_header(env.subject) == subject
    assert env.from_ is not None and decode_header(env.from_[0].name or "") == "Jörg Ünicode"
    assert env.to is not None and decode_header(env.to[1].name or "") == "Zoë, the Tester"
    assert env.message_id == "<fixed@x.test>"
    files = _parts_with_files(data)
    for a in FILES:
        assert files[a.filename] == a.data
    assert files["a.gif"] == b"GIF89a\x00"
    text = "\n".join(searchable_text(data, root))
    assert "ünïcode" in text and subject in text
    if html:
        assert root.media_type == "multipart/mixed"
        alt = root.children[0]
        assert alt.media_type == "multipart/alternative"
        assert alt.children[1].media_type == "multipart/related"
        assert section(root, "1.2.2.MIME") is not None
        assert "<b>" not in text and "there" in text


def test_text_only_is_single_part() -> None:
    data = compose(from_="a@b.test", to=["c@d.test"], subject="hi", text="hello", date=WHEN)
    root = parse_structure(data)
    assert root.media_type == "text/plain"
    assert data.endswith(b"hello\r\n")
    assert b"MIME-Version: 1.0\r\n" in data and b"Date: Wed, 01 May 2024" in data


def test_html_only_derives_text() -> None:
    data = compose(
        from_="a@b.test", to=["c@d.test"], html="<p>Only&nbsp;HTML</p><script>x</script>"
    )
    root = parse_structure(data)
    assert root.media_type == "multipart/alternative"
    plain = root.children[0]
    assert (
        "Only" in decode_transfer(data[plain.header_end : plain.body_end], plain.encoding).decode()
    )


def test_bad_address_is_value_error() -> None:
    with pytest.raises(ValueError):
        compose(from_="", to=["c@d.test"])
