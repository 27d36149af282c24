"""The dev-mode JSON API (src/correo/web/devapi.py) under hostile messages, over real
sockets: a message whose parts nest thousands deep, or whose To: opens thousands of
comments, made the stdlib parser raise RecursionError and the request answer 500; now
it answers its JSON, the nested body read as one opaque part."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from tests.server.test_dev_mode import Dev, start_dev


@pytest.fixture(scope="module")
def dev() -> Iterator[Dev]:
    server = start_dev()
    yield server
    assert server.stop() == 0, "".join(server.stderr)[-3000:]
    log = "".join(server.stderr)
    assert "loop.blocked" not in log and "Traceback" not in log, log[-3000:]


def _nested(depth: int, kind: str) -> bytes:
    if kind == "multipart":
        levels = "".join(
            f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth)
        )
    else:
        levels = "Content-Type: message/rfc822\r\n\r\n" * depth
    head = "From: app@shop.example\r\nTo: ann@customer.example\r\nSubject: deep\r\n"
    return (head + levels + "\r\nburied\r\n").encode()


@pytest.mark.parametrize(
    "raw",
    [
        _nested(3000, "multipart"),
        _nested(3000, "message"),
        b"From: app@shop.example\r\nSubject: parens\r\nTo: "
        + b"(" * 5000
        + b"\r\nCc: "
        + b"(" * 3000
        + b"x@y.example\r\n\r\nhi\r\n",
    ],
    ids=["multipart", "message-rfc822", "comments"],
)
def test_a_deep_message_gets_its_json(dev: Dev, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("app@shop.example", ["ann@customer.example"], raw)
    listing = dev.json("GET", "/api/v1/messages?limit=1")
    entry = listing["messages"][0]
    assert entry["subject"] in ("deep", "parens")
    detail = dev.json("GET", f"/api/v1/messages/{entry['id']}")
    assert detail["subject"] == entry["subject"]
    assert ["Subject", entry["subject"]] in detail["headers"]
    assert detail["attachments"] == []


def test_utf8_names_and_a_shallow_message_read_in_full(dev: Dev) -> None:
    """The bound leaves ordinary mail alone: parts a few levels deep are read. Raw UTF-8
    fields (RFC 6532) used to make the answer a 500 (surrogates JSON cannot encode)."""
    raw = (
        "From: Jörg Müller <j@shop.example>\r\nTo: ann@customer.example\r\n"
        "Subject: Grüße\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
        "Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo Jörg\r\n--i--\r\n--o\r\n"
        "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
        "\r\n%PDF\r\n--o--\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo()
        smtp.sendmail("app@shop.example", ["ann@customer.example"], raw, ["SMTPUTF8"])
    entry = dev.json("GET", "/api/v1/messages?limit=1")["messages"][0]
    detail = dev.json("GET", f"/api/v1/messages/{entry['id']}")
    assert detail["subject"] == "Grüße"
    assert detail["text"] == "Hallo Jörg"
    assert ["From", "Jörg Müller <j@shop.example>"] in detail["headers"]
    assert [a["filename"] for a in detail["attachments"]] == ["a.pdf"]
