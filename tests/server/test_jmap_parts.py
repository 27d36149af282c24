"""Email/get of a big message reads its parts, not the whole message (RFC 8621 §4.1.4).

A webmail opening a 40 MB message with a 35 MB attachment asks for its body
structure, its text and its preview; the server answers from the stored part tree,
reading the text parts in pieces, so its memory does not grow with the message. The
answer is the one parsing the whole message gives.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import pytest

from correo.jmap.mail import BODY_PROPS, parse_email
from tests.conftest import Server
from tests.server.jmap_helpers import Jmap
from tests.server.test_imap_streaming import _MB, _peak_rss
from tests.server.test_jmap_streaming import _appended

_PROPS = ["subject", "from", "header:X-Note:asText", *BODY_PROPS]
_ARGS: dict[str, Any] = {"fetchAllBodyValues": True, "maxBodyValueBytes": 4096}


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _message(attachment: bytes) -> bytes:
    text = "Grüße — the report is attached. ".encode() * 400
    return (
        b"From: Ana <ana@example.test>\r\nTo: alice@example.test\r\n"
        b"Subject: =?utf-8?q?the_report_=E2=80=94_final?=\r\nX-Note: big\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
        b"--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
        b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(text) + b"\r\n"
        b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><body><p>The <b>report</b> is attached.</p></body></html>\r\n--alt--\r\n"
        b"\r\n--outer\r\nContent-Type: application/octet-stream; name=report.bin\r\n"
        b"Content-Disposition: attachment; filename=report.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"\r\n--outer--\r\n"
    )


def _get(server: Server, box: str, data: bytes) -> tuple[Jmap, str, str]:
    """``data`` appended over IMAP to a new ``box``: the session, its id and blobId."""
    jmap, email = _appended(server, box, data, ["id", "blobId", "size"])
    assert email["size"] == len(data)
    return jmap, email["id"], email["blobId"]


def _parsed(data: bytes, blob: str) -> dict[str, object]:
    """What the whole-message parse answers for the same request."""
    return parse_email(
        data,
        _PROPS,
        blob=blob,
        body_values={"all": True},
        max_body_value_bytes=_ARGS["maxBodyValueBytes"],
    )


def test_a_big_message_is_got_from_its_parts_with_flat_memory(server: Server) -> None:
    payload = random.Random(5).randbytes(30 * _MB)
    data = _message(_b64(payload))
    jmap, ident, blob = _get(server, "BigParts", data)
    before = _peak_rss(server)
    (got,) = jmap.call("Email/get", ids=[ident], properties=_PROPS, **_ARGS)["list"]
    grown = _peak_rss(server) - before
    (attachment,) = got["attachments"]
    assert attachment["size"] == len(payload) and attachment["name"] == "report.bin"
    assert got["preview"].startswith("Grüße — the report is attached.")
    assert got["subject"] == "the report — final"
    # parsing whole holds the 41 MB message and more; the parts path, pieces of it
    assert grown < len(data) // 4, f"peak RSS grew {grown / _MB:.1f} MiB for a 41 MiB message"
    del got["id"]
    assert got == _parsed(data, blob)


def test_a_big_message_the_tree_may_misread_is_parsed_whole(server: Server) -> None:
    """Base64 with a stray character, which the stdlib's parser repairs in a way of its
    own: the answer is the parse's, as for a small message."""
    encoded = _b64(bytes(range(256)) * (6 * _MB // 256))
    data = _message(encoded[:1000] + b" !" + encoded[1000:])
    jmap, ident, blob = _get(server, "BigBroken", data)
    (got,) = jmap.call("Email/get", ids=[ident], properties=_PROPS, **_ARGS)["list"]
    del got["id"]
    assert got == _parsed(data, blob)


def test_a_big_message_is_got_from_its_parts_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The parts are read by range from PostgreSQL's copy as from SQLite's files."""
    pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")
    from tests.server.test_postgres_store import pg_node

    server = pg_node(tmp_path / "node", pg_url)
    server.start()
    try:
        payload = random.Random(6).randbytes(16 * _MB)
        data = _message(_b64(payload))
        jmap, ident, blob = _get(server, "BigParts", data)
        before = _peak_rss(server)
        (got,) = jmap.call("Email/get", ids=[ident], properties=_PROPS, **_ARGS)["list"]
        grown = _peak_rss(server) - before
        assert got["attachments"][0]["size"] == len(payload)
        assert grown < len(data) // 4, f"peak RSS grew {grown / _MB:.1f} MiB for 22 MiB"
        del got["id"]
        assert got == _parsed(data, blob)
    finally:
        assert server.stop() == 0, server.log()[-3000:]
