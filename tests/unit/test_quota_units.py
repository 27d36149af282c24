"""The pure parts of quotas: sizes, the refusal and 90 % rules, the IMAP and POP3
texts, the warning message and the SETQUOTA grammar."""

from __future__ import annotations

import pytest

from correo.cli.quota_cmds import describe, format_size
from correo.config_rules import parse_size
from correo.delivery.quotawarn import usage_text, warning_message
from correo.imap.commands import SetQuota, parse_command
from correo.imap.errors import ParseError
from correo.server.imap.quota import quota_line
from correo.store.api import Quota


@pytest.mark.parametrize(
    ("text", "octets"),
    [("500M", 500 << 20), ("2G", 2 << 30), ("2g", 2 << 30), ("10K", 10240), ("123", 123),
     ("1MB", 1 << 20), ("3GiB", 3 << 30), (" 7M ", 7 << 20)],
)  # fmt: skip
def test_sizes(text: str, octets: int) -> None:
    assert parse_size(text) == octets


@pytest.mark.parametrize("text", ["", "lots", "1.5G", "-1M", "5X", "1" * 16, "M"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="500M or 2G"):
        parse_size(text)


def test_refusal_is_permanent_only_past_the_limit_itself() -> None:
    q = Quota(1000, 3, 900, 2, False, False)
    assert q.refusal(100) is None
    assert q.refusal(101) is False  # does not fit now
    assert q.refusal(1001) is True  # never fits
    assert Quota(None, 3, 900, 3).refusal(1) is False  # the MESSAGE resource
    assert Quota(None, None, 10**12, 10**9).refusal(10**9) is None


def test_crossing_ninety_percent_only_from_below() -> None:
    assert Quota(1000, None, 899, 0).crossed(1, 1)
    assert not Quota(1000, None, 898, 0).crossed(1, 1)
    assert not Quota(1000, None, 900, 0).crossed(50, 1)  # already past it
    assert Quota(None, 10, 8, 8).crossed(10, 1)  # the MESSAGE resource: 9 of 10
    assert not Quota(None, None, 0, 0).crossed(10**9, 10**6)


def test_texts() -> None:
    q = Quota(500 << 20, None, 1536 + (1 << 20), 4, False, True)
    assert format_size(500 << 20) == "500M" and format_size(1536) == "1.5K"
    assert describe(q) == "storage 1.0M of 500M (0%), messages 4 (no limit, default)"
    assert usage_text(q) == "storage 1.0 MB of 500.0 MB (0%)"
    assert quota_line(q) == b'* QUOTA "" (STORAGE 1026 512000)\r\n'  # usage rounded up
    assert quota_line(Quota(None, 9, 0, 2)) == b'* QUOTA "" (MESSAGE 2 9)\r\n'
    assert quota_line(Quota(None, None, 5, 5)) == b'* QUOTA "" ()\r\n'


def test_warning_message_is_an_auto_submitted_notice() -> None:
    data = warning_message("a@x.test", Quota(1000, None, 950, 3), "mail.x.test")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"\r\nAuto-Submitted: auto-generated\r\n" in head + b"\r\n"
    assert b"To: <a@x.test>" in head and b"almost full" in head
    assert b"950 bytes of 1000 bytes (95%)" in body
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_setquota_grammar() -> None:
    cmd = parse_command([b'a SETQUOTA "" (STORAGE 512 MESSAGE 1000)'], [])
    assert cmd == SetQuota("", (("STORAGE", 512), ("MESSAGE", 1000)))
    assert parse_command([b"a SETQUOTA x ()"], []) == SetQuota("x", ())
    for bad in (
        b'a SETQUOTA ""',
        b'a SETQUOTA "" (STORAGE)',
        b'a SETQUOTA "" (STORAGE 1',
        b'a SETQUOTA "" (STORAGE -1)',
        b'a SETQUOTA "" (' + b"S 1 " * 20 + b"S 1)",
    ):
        with pytest.raises(ParseError):
            parse_command([bad], [])  # fmt: skip
