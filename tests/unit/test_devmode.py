"""Development mode's pieces on their own: chaos draws, the catch-all directory, the
message API's parsing of hostile mail, and the test capture's refusal names."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from correo.server.devmode import DEV_ACCOUNT, CatchAllDirectory, Chaos, DevMode
from correo.store.api import MessageInfo
from correo.testing.capture import refusal_for
from correo.web.devapi import message_detail, message_summary

INFO = MessageInfo(uid=7, size=100, internal_date=1_700_000_000.0, flags=("\\Seen",))


@pytest.mark.parametrize(
    ("reject", "tempfail", "delay", "stages"),
    [
        (-0.1, 0, 0, {"rcpt"}),
        (0, 1.5, 0, {"rcpt"}),
        (0.6, 0.6, 0, {"rcpt"}),
        (0, 0, -1, {"rcpt"}),
        (0, 0, 0, set()),
        (0, 0, 0, {"mail"}),
    ],
)
def test_chaos_refuses_bad_settings(
    reject: float, tempfail: float, delay: float, stages: set[str]
) -> None:
    with pytest.raises(ValueError):
        Chaos(reject, tempfail, delay, frozenset(stages))


def test_chaos_verdicts() -> None:
    assert Chaos(reject_rate=1).verdict("rcpt").code == 550  # type: ignore[union-attr]
    assert Chaos(tempfail_rate=1).verdict("data").code == 451  # type: ignore[union-attr]
    assert Chaos().verdict("rcpt") is None
    assert Chaos(reject_rate=1, stages=frozenset({"data"})).verdict("rcpt") is None
    draws = [Chaos(0.3, 0.3, rng=random.Random(5)) for _ in range(2)]
    first = [getattr(draws[0].verdict("rcpt"), "code", 250) for _ in range(200)]
    second = [getattr(draws[1].verdict("rcpt"), "code", 250) for _ in range(200)]
    assert first == second  # a seed replays the same refusals
    assert 30 < first.count(550) < 90 and 30 < first.count(451) < 90


def test_chaos_delay_applies_to_its_stages_only() -> None:
    chaos = Chaos(delay=0.2, stages=frozenset({"data"}))
    # Outside its stages the coroutine ends without once yielding to the loop: no wait
    # at all, seen without a clock a loaded machine could stretch.
    with pytest.raises(StopIteration) as done:
        chaos.before("rcpt").send(None)
    assert done.value.value is None
    started = time.monotonic()
    asyncio.run(chaos.before("data"))
    assert time.monotonic() - started >= 0.2  # a lower bound: load only lengthens it


def test_catch_all_directory(tmp_path: Path) -> None:
    directory = CatchAllDirectory(tmp_path / "directory.db")
    try:
        for address in ("ann@customer.example", "x+tag@sub.example.org", "b@xn--bcher-kva.de"):
            found = directory.resolve(address)
            assert found is not None and found.account == DEV_ACCOUNT, address
        assert directory.resolve("no-at-sign") is None
        assert directory.resolve("a@bad..domain") is None
        assert directory.verify_password("anything", "whatever") == DEV_ACCOUNT
        assert directory.may_send_as(DEV_ACCOUNT, "someone@else.example")
        assert directory.users() == [DEV_ACCOUNT]
        assert directory.domains() == ["localhost"]
    finally:
        directory.close()


def test_envelope_field_is_folded() -> None:
    field = DevMode().envelope_field(["a@b.example", "c@d.example"])
    assert field == b"X-Envelope-To: a@b.example,\r\n\tc@d.example\r\n"
    assert DevMode().envelope_field([]) == b"X-Envelope-To: unknown\r\n"


def test_summary_of_a_plain_message() -> None:
    raw = (
        b"Return-Path: <app@shop.example>\r\nX-Envelope-To: a@b.example,\r\n\tc@d.example\r\n"
        b"From: Shop <app@shop.example>\r\nTo: a@b.example\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n"
        b"\r\nbody\r\n"
    )
    summary = message_summary(raw, INFO)
    assert summary["envelope_from"] == "app@shop.example"
    assert summary["envelope_to"] == ["a@b.example", "c@d.example"]
    assert summary["from"] == ["app@shop.example"]
    assert summary["subject"] == "Café"
    assert summary["received_at"].startswith("2023-11-14T22:13:20")
    assert summary["seen"] is True and summary["id"] == 7


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'From: <<<@@@>>>\r\nTo: ,,,;;;\r\nCc: "unterminated\r\n\r\n',
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n\xff\xfe body\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/html;"
        b" charset=idna\r\n\r\n<p>\r\n--x\r\nContent-Disposition: attachment; filename*=bad''%ZZ"
        b"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n",
        b"Subject: " + b"=?utf-8?b?" + b"A" * 5000 + b"?=\r\n\r\n",
        b"Content-Type: multipart/alternative\r\n\r\nno boundary at all\r\n",
    ],
)
def test_detail_of_hostile_mail_never_raises(raw: bytes) -> None:
    detail = message_detail(raw, INFO)
    assert detail["id"] == 7
    assert isinstance(detail["headers"], list)
    assert detail["text"] is None or isinstance(detail["text"], str)
    assert isinstance(detail["attachments"], list)


def test_capture_refusal_names() -> None:
    assert refusal_for("bounce").code == 550  # type: ignore[union-attr]
    assert refusal_for("Bounce+order-17").code == 550  # type: ignore[union-attr]
    assert refusal_for("defer").code == 451  # type: ignore[union-attr]
    assert refusal_for("bounces") is None
    assert refusal_for("ann") is None
