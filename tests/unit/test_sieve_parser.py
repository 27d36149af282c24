"""Lexer, parser and validator of correo.sieve (RFC 5228 §2, §3, §8)."""

from __future__ import annotations

import pytest

from correo.sieve import ParseLimits, SieveError, check, parse
from correo.sieve.lexer import TokenKind, tokenize
from correo.sieve.parser import Number, StringList, Tag, parse_syntax

ALL = (
    'require ["fileinto", "reject", "ereject", "envelope", "encoded-character", "imap4flags",'
    ' "variables", "vacation", "subaddress", "copy", "body", "relational",'
    ' "comparator-i;ascii-numeric", "date", "index", "mailbox", "spamtest", "spamtestplus"];\n'
)


def test_tokens_and_positions() -> None:
    toks = tokenize('if header :is "a" 10K [ "x" , "y" ] ;\n  # c\n /* x\n */ stop;')
    kinds = [t.kind for t in toks]
    assert kinds[:5] == [
        TokenKind.IDENTIFIER,
        TokenKind.IDENTIFIER,
        TokenKind.TAG,
        TokenKind.STRING,
        TokenKind.NUMBER,
    ]
    assert toks[4].number == 10 * 1024
    stop = next(t for t in toks if t.value == "stop")
    assert (stop.line, stop.column) == (4, 5)
    assert toks[-1].kind is TokenKind.EOF


@pytest.mark.parametrize(
    ("source", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r'"a\\b"', "a\\b"),
        (r'"a\qb"', "aqb"),  # RFC 5228 §2.4.2: undefined escapes drop the backslash
        ('"multi\r\nline"', "multi\r\nline"),
        ("text:\r\nhello\r\n..dot\r\n.\r\n", "hello\r\n.dot\r\n"),
        ("text: # comment\nline\n.\n", "line\n"),
        ("TEXT:\n.\n", ""),
    ],
)
def test_strings(source: str, value: str) -> None:
    toks = tokenize(source)
    assert toks[0].kind is TokenKind.STRING
    assert toks[0].value == value


@pytest.mark.parametrize(
    ("number", "value"), [("1", 1), ("2k", 2048), ("3M", 3 << 20), ("1G", 1 << 30)]
)
def test_number_quantifiers(number: str, value: int) -> None:
    assert tokenize(number)[0].number == value


@pytest.mark.parametrize(
    ("script", "line", "column"),
    [
        ('keep;\n"unterminated', 2, 1),
        ("keep;\n  /* open", 2, 3),
        ("keep;\nfoo @", 2, 5),
        ("text:\nno end", 1, 1),
        ("text: x\n.\n", 1, 1),
        ("keep", 1, 5),
        ("if true { keep;", 1, 16),
        ("if true keep;", 1, 4),  # grammar: test "true" given test "keep"
        ('require ["a" "b"];', 1, 14),
        ("if anyof (true; false) {}", 1, 15),
        ("keep :", 1, 6),
        ("x 99999999999999999999999;", 1, 3),
        ("}", 1, 1),
    ],
)
def test_syntax_errors_carry_position(script: str, line: int, column: int) -> None:
    with pytest.raises(SieveError) as info:
        parse(script)
    assert (info.value.line, info.value.column) == (line, column), info.value
    assert check(script)[0].line == line
    assert str(info.value).startswith(f"line {line}:{column}:")


def test_ast_shape() -> None:
    script = parse_syntax('if header :contains ["a","b"] "x" { fileinto "f"; } else { stop; }')
    cmd = script.commands[0]
    assert cmd.name == "if" and cmd.block is not None
    test = cmd.tests[0]
    assert test.args[0] == Tag("contains", 1, 11)
    assert isinstance(test.args[1], StringList) and test.args[1].values == ("a", "b")
    assert script.commands[1].name == "else"
    assert isinstance(parse_syntax("x 5;").commands[0].args[0], Number)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ('fileinto "x";', "requires the 'fileinto'"),
        ('require "nosuch";', "unsupported extension"),
        ('keep; require "fileinto";', "require must come before"),
        ('if true { require "fileinto"; }', "require must come before"),
        ("elsif true { keep; }", "elsif without a preceding if"),
        ("keep; else { keep; }", "else without a preceding if"),
        ("if true;", "needs a block"),
        ("keep { }", "takes no block"),
        ("if { keep; }", "exactly one test"),
        ("if allof true { keep; }", "needs a test list"),
        ('if header :is :contains "a" "b" { }', "conflicts"),
        ('if header :is :is "a" "b" { }', "duplicate tag"),
        ('if header :over "a" "b" { }', "unknown tag"),
        ('if header "a" { }', "wrong number"),
        ('if header :comparator "i;nope" "a" "b" { }', "unknown comparator"),
        ('if header :comparator "i;ascii-numeric" "a" "b" { }', "must be required"),
        ("if size 10 { }", "needs :over or :under"),
        ('if size :over "a" { }', "needs a number"),
        ('if header :value "gt" "a" "b" { }', "requires the 'relational'"),
        ('require "relational"; if header :value "xx" "a" "b" { }', "invalid relational"),
        ('require "variables"; set "1bad" "x";', "invalid variable name"),
        ('require "variables"; set :lower :upper "a" "x";', "equal precedence"),
        ('require "date"; if date "date" "century" "x" { }', "unknown date-part"),
        ('require "date"; if currentdate :zone "nope" "year" "x" { }', "invalid :zone"),
        ('require "index"; if header :last "a" "b" { }', ":last requires :index"),
        ('require "index"; if header :index 0 "a" "b" { }', ":index must be"),
        ('require "spamtest"; if spamtest :percent "1" { }', "'spamtestplus'"),
        ('require "imap4flags"; setflag "v" "x";', "requires 'variables'"),
        ('redirect :copy "a@b";', "'copy'"),
        ('require "fileinto"; fileinto :create "x";', "'mailbox'"),
        ("frobnicate;", "unknown command"),
        ("if frob { }", "unknown test"),
        ('keep "x";', "wrong number"),
        ('redirect ["a@b", "c@d"];', "expected a string"),
        (
            'require ["comparator-i;ascii-numeric"];'
            ' if header :contains :comparator "i;ascii-numeric" "a" "1" {}',
            "i;ascii-numeric cannot",
        ),
        ('if header "a" :is "b" {}', "after positional"),
    ],
)
def test_validation_errors(script: str, message: str) -> None:
    errors = check(script)
    assert errors, script
    assert any(message in e.message for e in errors), errors
    assert all(e.line >= 1 and e.column >= 1 for e in errors)
    with pytest.raises(SieveError):
        parse(script)


def test_check_collects_all_errors() -> None:
    errors = check("foo;\nbar;\nif baz { qux; }")
    assert [(e.line, e.column) for e in errors] == [(1, 1), (2, 1), (3, 4), (3, 10)]


def test_every_extension_and_command_validates() -> None:
    script = ALL + (
        'if allof (address :all :comparator "i;octet" :is "from" "a@b",'
        ' address :localpart :contains "to" "x", address :domain :matches "cc" "*",'
        ' address :user "to" "u", address :detail "to" "d", address :index 1 :last "to" "x",'
        ' header :value "gt" :comparator "i;ascii-numeric" "x-n" "3", header :count "ge" "to" "2",'
        ' envelope :domain "from" "x", exists ["a", "b"], size :over 1K, size :under 1M,'
        ' not true, anyof (false, true), body :raw :contains "x", body :content "text" :is "x",'
        ' body :text "x", date :zone "+0100" "date" "year" "2020",'
        ' date :originalzone :index 1 "received" "hour" "1", currentdate "weekday" "0",'
        ' hasflag "\\\\Seen", hasflag ["v"] "x", mailboxexists "INBOX", spamtest "5",'
        ' spamtest :percent :value "gt" :comparator "i;ascii-numeric" "50", string "${a}" "b")\n'
        '{ keep :flags "\\\\Seen"; discard; stop; }\n'
        'elsif true { redirect :copy "a@b.c"; } else { reject "no"; }\n'
        'fileinto :copy :create :flags ["a", "b"] "box"; ereject "x";\n'
        'setflag "\\\\Seen"; addflag "v" "x"; removeflag ["y"];\n'
        'set :lower :upperfirst :quotewildcard :length "a" "b";\n'
        'vacation :days 3 :subject "s" :from "f@x" :addresses ["a@x"] :mime :handle "h" "r";\n'
    )
    assert check(script) == []


def test_encoded_character() -> None:
    script = parse(
        'require ["encoded-character", "fileinto"];'
        ' fileinto "${hex: 4A 6f}${unicode:263a}${hex:zz}";'
    )
    arg = script.commands[1].positional[0]
    assert isinstance(arg, StringList)
    assert arg.values == ("Jo\u263a${hex:zz}",)
    # Without the require the text is literal.
    plain = parse('require "fileinto"; fileinto "${hex:41}";').commands[1].positional[0]
    assert isinstance(plain, StringList) and plain.values == ("${hex:41}",)
    with pytest.raises(SieveError):
        parse('require "encoded-character"; keep :x "${unicode:D800}";')


def test_nesting_and_size_limits() -> None:
    deep = "if true {" * 70 + "}" * 70
    with pytest.raises(SieveError, match="nested"):
        parse(deep)
    deep_not = "if " + "not " * 100 + "true {}"
    with pytest.raises(SieveError, match="nested"):
        parse(deep_not)
    deep_list = "if " + "allof(" * 100 + "true" + ")" * 100 + " {}"
    with pytest.raises(SieveError, match="nested"):
        parse(deep_list)
    with pytest.raises(SieveError, match="too large"):
        parse("keep;" * 10, limits=ParseLimits(max_script_size=20))
    assert parse("if true {" * 10 + "}" * 10)


def test_case_insensitive_identifiers() -> None:
    script = parse('REQUIRE "FileInto"; IF Header :CONTAINS "a" "b" { FileInto "x"; }')
    assert script.commands[1].tests[0].name == "header"
    assert "fileinto" in script.requires


def test_sieve_is_pure() -> None:
    """correo.sieve belongs to the wire-format band: no I/O or service imports."""
    import ast
    from pathlib import Path

    import correo.sieve

    forbidden = {
        "asyncio",
        "socket",
        "ssl",
        "sqlite3",
        "threading",
        "selectors",
        "subprocess",
        "os",
    }
    for path in Path(correo.sieve.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path}: {name}"
                # Only the pure message library (MIME structure for the body test).
                assert not name.startswith("correo.") or name.startswith("correo.message."), (
                    f"{path}: {name}"
                )
