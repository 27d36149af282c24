"""Property tests for the Sieve parser and interpreter under hostile input."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correo.sieve import BytesMessageView, Envelope, Result, SieveError, check, parse, run
from correo.sieve.lexer import tokenize

NOW = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)

WORDS = [
    "require",
    "if",
    "elsif",
    "else",
    "keep",
    "discard",
    "stop",
    "fileinto",
    "redirect",
    "reject",
    "set",
    "setflag",
    "addflag",
    "hasflag",
    "vacation",
    "header",
    "address",
    "envelope",
    "exists",
    "size",
    "allof",
    "anyof",
    "not",
    "true",
    "false",
    "body",
    "date",
    "currentdate",
    "string",
    "spamtest",
    "mailboxexists",
    ":is",
    ":contains",
    ":matches",
    ":value",
    ":count",
    ":over",
    ":under",
    ":copy",
    ":flags",
    ":days",
    ":index",
    ":last",
    ":comparator",
    ":zone",
    ":raw",
    ":content",
    '"gt"',
    '"i;ascii-numeric"',
    '"*a?\\\\*"',
    '"Subject"',
    '"${1}"',
    '"${hex:41}"',
    '"a@b.c"',
    '"year"',
    '"+0100"',
    "1K",
    "0",
    "7",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "text:\n.x\n..\n.\n",
    "# c\n",
    "/* x */",
]
REQUIRE = (
    'require ["fileinto", "reject", "ereject", "envelope", "encoded-character", "imap4flags",'
    ' "variables", "vacation", "subaddress", "copy", "body", "relational",'
    ' "comparator-i;ascii-numeric", "date", "index", "mailbox", "spamtest", "spamtestplus"];\n'
)
scripts = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(WORDS), max_size=60).map(lambda ws: REQUIRE + " ".join(ws)),
)
messages = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                b"Subject: =?utf-8?b?////?= a*b\r\n",
                b"From: <a@b>, broken <<@\r\n",
                b"To: x+y@z\r\n",
                b"Date: Tue, 99 Foo 2024 99:99 +9999\r\n",
                b"Date: Tue, 05 Mar 2024 08:15:30 -0000\r\n",
                b"Received: x; garbage\r\n",
                b'Content-Type: multipart/mixed; boundary="b"\r\n',
                b"X-Spam-Score: nan\r\n",
                b"X-Spam-Score: -1e999\r\n",
                b"\r\n--b\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\nhi\r\n--b--\r\n",
                b" folded\r\n",
            ]
        ),
        max_size=10,
    ).map(b"".join),
)


@settings(max_examples=300, deadline=None)
@given(scripts)
def test_parser_raises_only_sieve_error(text: str) -> None:
    """Invariant: any text parses or raises SieveError (with a position);
    check() never raises and agrees with parse() about validity."""
    errors = check(text)
    try:
        parse(text)
    except SieveError as exc:
        assert errors and exc.line >= 1 and exc.column >= 1
    else:
        assert errors == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_tokenizer_is_prefix_stable(text: str) -> None:
    """Invariant: tokenizing either succeeds or raises SieveError, and line
    numbers never decrease along the token stream."""
    try:
        tokens = tokenize(text)
    except SieveError:
        return
    lines = [t.line for t in tokens]
    assert lines == sorted(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(scripts, messages, st.sampled_from(["", "a@b", "MAILER-DAEMON@x", "x+y@z"]))
def test_interpreter_never_raises(text: str, message: bytes, sender: str) -> None:
    """Invariant: for every valid script and any message, run() returns a
    Result; when it reports errors it keeps the message and performs nothing."""
    try:
        script = parse(text)
    except SieveError:
        return
    result = run(script, BytesMessageView(message), Envelope(sender, "u+d@example.com"), now=NOW)
    assert isinstance(result, Result)
    if result.errors:
        assert result.implicit_keep and result.actions == ()


TESTS = [
    "true",
    "false",
    'header :contains "Subject" "${1}"',
    'header :matches "Subject" "*a?*"',
    'address :domain :is ["From", "To"] "b"',
    'address :detail :matches "To" "*"',
    'envelope :user :is "to" "u"',
    'exists "Date"',
    "size :over 10",
    'body :text :contains "hi"',
    'body :content "text" :contains "hi"',
    'date :value "ge" "Date" "date" "2000-01-01"',
    'date :index 1 :last "Received" "year" "1"',
    'currentdate :zone "+0100" "julian" "1"',
    'hasflag :count "gt" :comparator "i;ascii-numeric" "0"',
    'spamtest :percent :value "gt" :comparator "i;ascii-numeric" "5"',
    'string :matches "${0}" "*"',
    'mailboxexists "INBOX"',
    'header :count "ne" :comparator "i;ascii-numeric" "To" "1"',
]
COMMANDS = [
    "keep;",
    "discard;",
    "stop;",
    'fileinto :copy :flags "a" "box${1}";',
    'redirect "a@b.c";',
    'redirect :copy "${0}";',
    'reject "no";',
    'ereject "no";',
    'setflag "\\\\Seen";',
    'addflag "v" "x ${1}";',
    'removeflag "x";',
    'set :upper :length "v" "${1}";',
    'vacation :days 2 :addresses "a@b" "away";',
    'fileinto :create "${v}";',
]


@st.composite
def valid_scripts(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        if depth < 3 and draw(st.booleans()):
            tests = draw(st.lists(st.sampled_from(TESTS), min_size=1, max_size=3))
            test = draw(st.sampled_from(["allof", "anyof"])) + " (" + ", ".join(tests) + ")"
            inner = draw(valid_scripts(depth + 1))
            other = draw(valid_scripts(depth + 1))
            parts.append(f"if not {test} {{ {inner} }} else {{ {other} }}")
        else:
            parts.append(draw(st.sampled_from(COMMANDS)))
    text = " ".join(parts)
    return REQUIRE + text if depth == 0 else text


@settings(max_examples=200, deadline=None)
@given(valid_scripts(), messages)
def test_valid_scripts_run(text: str, message: bytes) -> None:
    """Invariant: every generated script is valid; running it never raises, and
    the result either reports errors with an implicit keep or lists actions."""
    result = run(parse(text), BytesMessageView(message), Envelope("a@b", "u+d@x"), now=NOW)
    if result.errors:
        assert result.implicit_keep and result.actions == ()
