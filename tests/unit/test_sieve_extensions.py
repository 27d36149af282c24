"""Extensions: variables (RFC 5229), imap4flags (RFC 5232), vacation (RFC 5230),
matching (RFC 4790, RFC 5231), subaddress (RFC 5233) and vacation_allowed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from correo.sieve import (
    BytesMessageView,
    Envelope,
    FileInto,
    Keep,
    Result,
    Vacation,
    parse,
    run,
    vacation_allowed,
)
from correo.sieve.address import address_part, parse_addresses
from correo.sieve.match import Matcher, compile_glob, quote_wildcards
from correo.sieve.variables import VariableStore, apply_modifiers

NOW = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)
ENV = Envelope("alice@example.org", "bob@example.com")


def execute(
    script: str, message: bytes = b"Subject: hi\r\n\r\nbody\r\n", env: Envelope = ENV
) -> Result:
    return run(parse(script), BytesMessageView(message), env, now=NOW)


@pytest.mark.parametrize(
    ("pattern", "value", "captures"),
    [
        ("*<*@*", "Acme <list@acme.example>", ("Acme ", "list", "acme.example>")),
        (
            "[*] *",
            "[acme-users] [fwd] version 1.0 is out",
            ("acme-users", "[fwd] version 1.0 is out"),
        ),
        ("a?c", "abc", ("b",)),
        ("*", "", ("",)),
        ("", "", ()),
        ("\\*x", "*x", ()),
        ("a\\?", "a?", ()),
        ("*.?", "file.c", ("file", "c")),
        ("x*", "y", None),
        ("*b*b", "abab", ("a", "a")),
        ("??", "abc", None),
        ("a*", "a\nb", ("\nb",)),
    ],
)
def test_glob(pattern: str, value: str, captures: tuple[str, ...] | None) -> None:
    found = compile_glob(pattern).match(value, value)
    assert (None if found is None else found[1:]) == captures


@pytest.mark.parametrize(
    ("matcher", "values", "keys", "ok"),
    [
        (Matcher("i;ascii-casemap", "is"), ["HeLLo"], ["hello"], True),
        (Matcher("i;ascii-casemap", "is"), ["É"], ["é"], False),  # ASCII-only folding
        (Matcher("i;octet", "contains"), ["Hello"], ["ell"], True),
        (Matcher("i;octet", "contains"), ["Hello"], ["ELL"], False),
        (Matcher("i;ascii-casemap", "contains"), ["x"], [""], True),
        (Matcher("i;ascii-casemap", "matches"), ["FooBar"], ["foo*"], True),
        (Matcher("i;ascii-numeric", "is"), ["042abc"], ["42"], True),
        (Matcher("i;ascii-numeric", "is"), ["abc"], ["xyz"], True),  # both +infinity
        (Matcher("i;ascii-numeric", "value", "gt"), ["abc"], ["99999"], True),
        (Matcher("i;ascii-numeric", "value", "lt"), ["9"], ["10"], True),
        (Matcher("i;ascii-casemap", "value", "lt"), ["9"], ["10"], False),  # string order
        (Matcher("i;octet", "value", "ne"), ["a"], ["a", "b"], True),
        (Matcher("i;ascii-numeric", "count", "eq"), ["a", "b"], ["2"], True),
        (Matcher("i;ascii-numeric", "count", "gt"), [], ["0"], False),
        (Matcher("i;ascii-numeric", "value", "eq"), [], ["0"], False),
    ],
)
def test_matcher(matcher: Matcher, values: list[str], keys: list[str], ok: bool) -> None:
    assert (matcher.match(values, keys) is not None) is ok


def test_quote_wildcards_roundtrip() -> None:
    value = "a*b?c\\d"
    assert compile_glob(quote_wildcards(value)).match(value, value) is not None
    assert compile_glob(quote_wildcards(value)).match("aXb?c\\d", "aXb?c\\d") is None


@pytest.mark.parametrize(
    ("modifiers", "value", "expected"),
    [
        (["upper"], "Juliet", "JULIET"),
        (["lower"], "Juliet", "juliet"),
        (["upperfirst"], "juliet", "Juliet"),
        (["lowerfirst"], "JULIET", "jULIET"),
        (["quotewildcard"], "j*?\\", "j\\*\\?\\\\"),
        (["length"], "juMBlEd", "7"),
        (["upperfirst", "lower"], "juMBlEd lETters", "Jumbled letters"),  # RFC 5229 §4.1
        (["length", "quotewildcard"], "*?", "4"),
        ([], "", ""),
    ],
)
def test_set_modifiers(modifiers: list[str], value: str, expected: str) -> None:
    assert apply_modifiers(value, modifiers) == expected


def test_variable_expansion() -> None:
    store = VariableStore(max_length=8)
    store.set("Company", "ACME")
    store.set_matches(["all", "one"])
    assert store.expand("${company} ${COMPANY} ${1} ${01} ${9} ${ns.x} ${bad name} $ {x}") == (
        "ACME ACME one one   ${bad name} $ {x}"
    )
    store.set("big", "x" * 100)
    assert store.get("big") == "x" * 8
    assert len(store.expand("${big}" * 1000)) <= 8 * 4


def test_rfc5229_examples() -> None:
    script = (
        'require ["fileinto", "variables"];\n'
        'if header :matches "List-ID" "*<*@*" { fileinto "INBOX.lists.${2}"; stop; }\n'
        'if header :matches "Subject" "[*] *" { fileinto "INBOX.lists.${1}"; stop; }\n'
    )
    msg = b"List-ID: Acme <acme-users@lists.example>\r\n\r\n"
    assert execute(script, msg).actions == (FileInto("INBOX.lists.acme-users"),)
    msg = b"Subject: [acme-users] [fwd] version 1.0 is out\r\n\r\n"
    assert execute(script, msg).actions == (FileInto("INBOX.lists.acme-users"),)
    script = (
        'require ["variables", "fileinto"]; set "honorific" "Mr";'
        ' set "name" "${honorific} Smith"; set :length "len" "${name}";'
        ' if string :is "${name}" "Mr Smith" { fileinto "${len}"; }'
    )
    assert execute(script).actions == (FileInto("8"),)


def test_match_variables_only_change_on_success() -> None:
    script = (
        'require ["variables", "fileinto"];'
        'if header :matches "Subject" "h*" { } '
        'if header :matches "Subject" "zz*" { } '
        'fileinto "${1}";'
    )
    assert execute(script).actions == (FileInto("i"),)


def test_imap4flags() -> None:
    script = (
        'require ["imap4flags", "fileinto", "variables", "relational"];\n'
        'setflag "\\\\Seen \\\\Flagged";\n'
        'addflag ["$Work", "\\\\seen"];\n'
        'removeflag "\\\\Flagged";\n'
        'if hasflag :is "\\\\SEEN" { fileinto "a"; }\n'
        'fileinto :flags "Custom" "b";\n'
        'setflag "v" "x y"; addflag "v" "z"; removeflag "v" "x";\n'
        'if hasflag "v" "z" { fileinto :flags "${v}" "c"; }\n'
        'if hasflag :count "eq" ["x", "z"] "0" { keep; }\n'
    )
    result = run(parse(script), BytesMessageView(b"\r\n"), ENV, now=NOW)
    assert result.actions == (
        FileInto("a", ("\\Seen", "$Work")),
        FileInto("b", ("Custom",)),
        FileInto("c", ("y", "z")),
        Keep(("\\Seen", "$Work")),  # variables x and z hold no flags: count is 0
    )
    assert not result.implicit_keep
    keep = execute('require "imap4flags"; addflag "\\\\Answered";')
    assert keep.implicit_keep and keep.implicit_keep_flags == ("\\Answered",)
    explicit = execute('require "imap4flags"; addflag "a"; keep; keep :flags "b";')
    assert explicit.actions == (Keep(("a",)), Keep(("b",)))


def test_vacation_action() -> None:
    script = (
        'require "vacation";'
        ' vacation :days 30 :addresses ["bob@example.com"] :from "bob@example.com"'
        ' :handle "h1" :mime "I am away";'
    )
    result = execute(script)
    assert result.implicit_keep
    assert result.actions == (
        Vacation(
            "h1",
            30,
            "Auto: hi",
            "bob@example.com",
            ("bob@example.com",),
            True,
            "I am away",
            "alice@example.org",
        ),
    )
    default = execute('require "vacation"; vacation :days 0 :subject "Gone" "Away";').actions[0]
    assert isinstance(default, Vacation)
    assert default.days == 1 and default.subject == "Gone" and len(default.handle) == 32
    again = execute('require "vacation"; vacation :days 0 :subject "Gone" "Away";').actions[0]
    assert isinstance(again, Vacation) and again.handle == default.handle


@pytest.mark.parametrize(
    ("address", "part", "expected"),
    [
        ("ken+sieve@example.org", "user", "ken"),
        ("ken+sieve@example.org", "detail", "sieve"),
        ("ken+@example.org", "detail", ""),
        ("ken@example.org", "detail", None),
        ("ken@example.org", "user", "ken"),
        ("a+b+c@x", "detail", "b+c"),
        ("noat", "domain", ""),
        ("noat", "localpart", "noat"),
    ],
)
def test_subaddress(address: str, part: str, expected: str | None) -> None:
    assert address_part(address, part) == expected


def test_parse_addresses_groups_and_junk() -> None:
    assert parse_addresses("friends: a@x, b@y;, <c@z>") == ["a@x", "b@y", "c@z"]
    assert parse_addresses("undisclosed-recipients:;") == []
    assert parse_addresses('"\x00\\"<<<@@@') is not None


BASE = b"To: Bob <bob@example.com>\r\nSubject: hi\r\n"


@pytest.mark.parametrize(
    ("extra", "sender", "addresses", "allowed"),
    [
        (b"", "alice@example.org", (), True),
        (b"", "", (), False),
        (b"", "MAILER-DAEMON@example.org", (), False),
        (b"", "owner-list@example.org", (), False),
        (b"", "list-request@example.org", (), False),
        (b"Auto-Submitted: auto-replied\r\n", "alice@example.org", (), False),
        (b"Auto-Submitted: no\r\n", "alice@example.org", (), True),
        (b"List-Id: <x.example>\r\n", "alice@example.org", (), False),
        (b"Precedence: bulk\r\n", "alice@example.org", (), False),
        (b"Precedence: junk\r\n", "alice@example.org", (), False),
        (b"Precedence: first-class\r\n", "alice@example.org", (), True),
    ],
)
def test_vacation_allowed(
    extra: bytes, sender: str, addresses: tuple[str, ...], allowed: bool
) -> None:
    view = BytesMessageView(BASE + extra + b"\r\n")
    assert vacation_allowed(view, Envelope(sender, "bob@example.com"), addresses) is allowed


def test_vacation_allowed_requires_personal_address() -> None:
    view = BytesMessageView(b"To: other@example.net\r\nCc: b@x\r\n\r\n")
    env = Envelope("alice@example.org", "bob@example.com")
    assert not vacation_allowed(view, env, ())
    assert vacation_allowed(view, env, ["B@X"])
    resent = BytesMessageView(b"Resent-To: bob+tag@example.com\r\n\r\n")
    assert vacation_allowed(resent, env, ())
