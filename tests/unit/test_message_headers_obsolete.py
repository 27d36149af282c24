"""One header parser: the sender check, DMARC and IMAP ENVELOPE read the same From.

RFC 5322 §4.5 obsolete syntax (blanks before the colon), folding, groups, comments and
encoded words are read one way by every consumer; ambiguous address lists are flagged.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.mailauth.inbound import from_domain_of
from correo.message import parse_structure
from correo.message.headers import addresses_in, originators, parse_fields
from correo.message.mime import parse_address_list


@pytest.mark.parametrize(
    "line",
    [b"From: b@y.test", b"From : b@y.test", b"From\t: b@y.test", b"FROM \t :b@y.test"],
)
def test_obsolete_blanks_before_colon_name_the_field(line: bytes) -> None:
    assert parse_fields(line + b"\r\nTo: c@z.test\r\n") == [
        ("from", "b@y.test"),
        ("to", "c@z.test"),
    ]


def test_folded_value_and_junk_line_fold_into_the_field() -> None:
    header = b"From:\r\n Bob\r\n\t<b@y.test>\r\nno colon here\r\nSubject: s\r\n"
    assert parse_fields(header) == [("from", "Bob\t<b@y.test>no colon here"), ("subject", "s")]


def test_fields_after_a_junk_line_still_count() -> None:
    """ENVELOPE stops at a line that is no field; a lenient client may read on, so the
    sender check reads up to the blank line and sees the second From."""
    header = b"From: a@x.test\r\nno colon\r\nFrom: b@y.test\r\n"
    assert originators(parse_fields(header)).from_fields == 2


def _envelope_addresses(header: bytes) -> list[str]:
    env = parse_structure(header + b"\r\nbody\r\n").envelope
    assert env is not None
    found = [*(env.from_ or ()), *(env.sender or ())]
    out = [f"{a.mailbox}@{a.host}" for a in found if a.host is not None]
    # ENVELOPE shows Dovecot's placeholders where the policy keeps the part it has
    return sorted(a.replace("MISSING_MAILBOX", "").replace("@MISSING_DOMAIN", "") for a in out)


def _policy_addresses(header: bytes) -> list[str]:
    return sorted(originators(parse_fields(header)).addresses)


HEADERS = [
    b"From : Bob <b@y.test>\r\nSender: a@x.test\r\n",
    b"From:\r\n (a@x.test) b@y.test\r\n",
    b'From: "a@x.test" <b@y.test>\r\n',
    b"From: team: a@x.test, b@y.test;\r\n",
    b"From: =?utf-8?q?a=40x.test?= <b@y.test>\r\n",
    b"From: a@x.test\r\nFrom : b@y.test\r\n",
    b"Sender: a@x.test\r\nfrom\t:\tb@y.test\r\n",
]


@pytest.mark.parametrize("header", HEADERS)
def test_policy_sees_what_imap_envelope_shows(header: bytes) -> None:
    assert _policy_addresses(header) == _envelope_addresses(header)


def test_dmarc_reads_the_obsolete_from() -> None:
    assert from_domain_of(b"From : b@y.test\r\nSender: a@x.test\r\n") == ("y.test", "")
    assert from_domain_of(b"From: a@x.test\r\nFrom : b@y.test\r\n")[0] == ""


@pytest.mark.parametrize(
    "value",
    [
        "<a@x.test> b@y.test",
        "<a@x.test",
        "a@x.test b@y.test",
        "a@x.test@y.test",
        "=?utf-8?q?b=40y.test?=",
        "bob",
        "g: a@x.test",
        "a@x.test;",
        "g: h: a@x.test;;",
    ],
)
def test_ambiguous_address_lists_are_flagged(value: str) -> None:
    problems: list[str] = []
    parse_address_list(value, problems)
    assert problems


@pytest.mark.parametrize(
    "value",
    [
        "Bob <b@y.test>",
        '"Bob, Jr." <b@y.test> (home), c@z.test',
        "b@y.test (Bob)",
        "g: a@x.test, b@y.test;, c@z.test",
        "undisclosed-recipients:;",
        "<@route.test:b@y.test>",
        '"b y"@y.test',
        "=?utf-8?q?B=C3=B6b?= <b@y.test>",
        "b . c@y.test",
    ],
)
def test_plain_address_lists_are_not_flagged(value: str) -> None:
    problems: list[str] = []
    parse_address_list(value, problems)
    assert problems == []


def test_addresses_in_keeps_an_unqualified_name() -> None:
    assert addresses_in("bob, Carol <c@z.test>, g: d@w.test;") == ["bob", "c@z.test", "d@w.test"]


_NAMES = st.sampled_from(["From", "from", "FROM", "Sender", "To", "Subject", " From"])
_BLANKS = st.sampled_from(["", " ", "\t", " \t "])
_PIECES = (" ", "\t", "\r\n ", "a@x.test", "b@y.test", "g", "<", ">", ",", ";", ":", "(", ")")
_VALUE = st.lists(
    st.sampled_from([*_PIECES, '"', "\\", "@", ".", "=?utf-8?q?a=40x?=", "[1.2.3.4]"]),
    max_size=12,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_NAMES, _BLANKS, _VALUE), max_size=5))
def test_policy_and_envelope_agree_on_any_header(fields: list[tuple[str, str, list[str]]]) -> None:
    header = "".join(f"{n}{b}:{''.join(v)}\r\n" for n, b, v in fields).encode()
    header = header.replace(b"\r\n\r\n", b"\r\n")  # one header section
    assert _policy_addresses(header) == _envelope_addresses(header)


def test_escapes_in_a_quoted_string_cost_linear_time() -> None:
    value = '"' + "\\a" * 100_000 + '" <b@y.test>'
    t0 = time.thread_time()  # CPU time: a loaded machine's waits do not count
    assert addresses_in(value) == ["b@y.test"]
    assert time.thread_time() - t0 < 0.5


def test_many_folds_cost_linear_time() -> None:
    header = b"From: b@y.test" + b"\r\n x" * 60_000 + b"\r\n"
    t0 = time.thread_time()  # CPU time: a loaded machine's waits do not count
    assert parse_fields(header)[0][0] == "from"
    assert time.thread_time() - t0 < 0.5
