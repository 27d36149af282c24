"""Sieve grammar (RFC 5228 §8.2) to an AST of frozen dataclasses.

This is the syntax layer only: it knows nothing about which commands exist.
``correo.sieve.validate`` checks names, tags and extensions and fills in
``tags``/``positional`` on each node. Nesting and script size are bounded
here, while reading, so hostile scripts cannot exhaust the stack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .lexer import SieveError, Token, TokenKind, tokenize

__all__ = [
    "Argument",
    "Command",
    "Number",
    "ParseLimits",
    "Script",
    "StringList",
    "Tag",
    "Test",
    "decode_encoded_characters",
    "parse_syntax",
]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds applied while parsing; defaults suit per-user delivery scripts."""

    max_script_size: int = 1 << 20  # characters; ManageSieve quotas are smaller
    max_nesting: int = 64  # blocks plus test nesting
    max_list_items: int = 10_000  # strings in one list / tests in one test-list


@dataclass(frozen=True, slots=True)
class StringList:
    """A string or a bracketed string list (RFC 5228 §2.4.2.1)."""

    values: tuple[str, ...]
    line: int
    column: int
    bracketed: bool = False


@dataclass(frozen=True, slots=True)
class Number:
    """A number with its quantifier already applied (RFC 5228 §2.4.1)."""

    value: int
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Tag:
    """A tagged argument such as ``:contains`` (name lower-cased, no colon)."""

    name: str
    line: int
    column: int


Argument = StringList | Number | Tag


@dataclass(frozen=True, slots=True)
class Test:
    """A test; ``tags``/``positional`` are filled by validation."""

    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    line: int
    column: int
    test_list: bool = False
    tags: Mapping[str, Argument | None] = field(default_factory=dict, compare=False)
    positional: tuple[Argument, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A command with its optional test(s) and block."""

    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    block: tuple[Command, ...] | None
    line: int
    column: int
    test_list: bool = False
    tags: Mapping[str, Argument | None] = field(default_factory=dict, compare=False)
    positional: tuple[Argument, ...] = ()


@dataclass(frozen=True, slots=True)
class Script:
    """A parsed script and the capabilities it requires."""

    commands: tuple[Command, ...]
    requires: frozenset[str] = frozenset()


# RFC 5228 §2.4.2.4: ${hex:...} and ${unicode:...}; malformed ones stay literal.  The
# unicode form is written as its grammar (hex runs split by blanks) so that no two
# repetitions can share a digit: "(?:[0-9A-F]+[ ]*)+" backtracked exponentially, 26
# digits without the closing brace took 25 s with the GIL held.
_ENCODED = re.compile(
    r"\$\{(?:(hex):([ \t\r\n]*(?:[0-9A-Fa-f]{2}[ \t\r\n]*)+)"
    r"|(unicode):([ \t\r\n]*[0-9A-Fa-f]+(?:[ \t\r\n]+[0-9A-Fa-f]+)*[ \t\r\n]*))\}",
    re.IGNORECASE,
)


def decode_encoded_characters(value: str, line: int = 0, column: int = 0) -> str:
    """Expand ``${hex:..}``/``${unicode:..}`` sequences (RFC 5228 §2.4.2.4)."""
    if "${" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            octets = bytes.fromhex("".join(m.group(2).split()))
            return octets.decode("utf-8", "replace")
        out = []
        for item in m.group(4).split():
            if len(item) > 8:
                raise SieveError("unicode character out of range", line, column)
            code = int(item, 16)
            # RFC 5228 §2.4.2.4: surrogates and values above U+10FFFF are errors
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise SieveError(f"invalid unicode character {item}", line, column)
            out.append(chr(code))
        return "".join(out)

    return _ENCODED.sub(repl, value)


class _Parser:
    """Recursive descent over the token list with an explicit depth bound."""

    def __init__(self, tokens: list[Token], limits: ParseLimits) -> None:
        self.tokens = tokens
        self.pos = 0
        self.limits = limits
        self.encoded = False
        self.requires: set[str] = set()

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind is not TokenKind.EOF:
            self.pos += 1
        return tok

    def expect(self, kind: TokenKind) -> Token:
        tok = self.take()
        if tok.kind is not kind:
            raise SieveError(
                f"expected {kind.value!r}, found {_describe(tok)}", tok.line, tok.column
            )
        return tok

    def commands(self, depth: int, top: bool) -> tuple[Command, ...]:
        out: list[Command] = []
        while True:
            tok = self.peek()
            if tok.kind is TokenKind.EOF:
                if not top:
                    raise SieveError("missing '}'", tok.line, tok.column)
                return tuple(out)
            if tok.kind is TokenKind.RBRACE and not top:
                return tuple(out)
            out.append(self.command(depth))

    def command(self, depth: int) -> Command:
        tok = self.take()
        if tok.kind is not TokenKind.IDENTIFIER:
            raise SieveError(f"expected a command, found {_describe(tok)}", tok.line, tok.column)
        args = self.arguments()
        tests, test_list = self.test_part(depth)
        nxt = self.take()
        block: tuple[Command, ...] | None = None
        if nxt.kind is TokenKind.LBRACE:
            if depth + 1 > self.limits.max_nesting:
                raise SieveError("blocks nested too deeply", nxt.line, nxt.column)
            block = self.commands(depth + 1, top=False)
            self.expect(TokenKind.RBRACE)
        elif nxt.kind is not TokenKind.SEMICOLON:
            raise SieveError(f"expected ';' or '{{', found {_describe(nxt)}", nxt.line, nxt.column)
        if tok.value == "require" and depth == 0:
            for arg in args:
                if isinstance(arg, StringList):
                    self.requires.update(v.lower() for v in arg.values)
            self.encoded = "encoded-character" in self.requires
        return Command(tok.value, args, tests, block, tok.line, tok.column, test_list)

    def arguments(self) -> tuple[Argument, ...]:
        args: list[Argument] = []
        while True:
            tok = self.peek()
            if tok.kind is TokenKind.TAG:
                self.take()
                args.append(Tag(tok.value, tok.line, tok.column))
            elif tok.kind is TokenKind.NUMBER:
                self.take()
                args.append(Number(tok.number, tok.line, tok.column))
            elif tok.kind is TokenKind.STRING:
                self.take()
                args.append(StringList((self.string(tok),), tok.line, tok.column))
            elif tok.kind is TokenKind.LBRACKET:
                args.append(self.string_list())
            else:
                return tuple(args)
            if len(args) > self.limits.max_list_items:
                raise SieveError("too many arguments", tok.line, tok.column)

    def string(self, tok: Token) -> str:
        if self.encoded:
            return decode_encoded_characters(tok.value, tok.line, tok.column)
        return tok.value

    def string_list(self) -> StringList:
        start = self.expect(TokenKind.LBRACKET)
        values: list[str] = []
        while True:
            tok = self.take()
            if tok.kind is not TokenKind.STRING:
                raise SieveError(f"expected a string, found {_describe(tok)}", tok.line, tok.column)
            values.append(self.string(tok))
            if len(values) > self.limits.max_list_items:
                raise SieveError("string list too long", tok.line, tok.column)
            sep = self.take()
            if sep.kind is TokenKind.RBRACKET:
                return StringList(tuple(values), start.line, start.column, bracketed=True)
            if sep.kind is not TokenKind.COMMA:
                raise SieveError(
                    f"expected ',' or ']', found {_describe(sep)}", sep.line, sep.column
                )

    def test_part(self, depth: int) -> tuple[tuple[Test, ...], bool]:
        tok = self.peek()
        if tok.kind is TokenKind.IDENTIFIER:
            return (self.test(depth + 1),), False
        if tok.kind is TokenKind.LPAREN:
            return self.test_list(depth + 1), True
        return (), False

    def test(self, depth: int) -> Test:
        tok = self.take()
        if depth > self.limits.max_nesting:
            raise SieveError("tests nested too deeply", tok.line, tok.column)
        if tok.kind is not TokenKind.IDENTIFIER:
            raise SieveError(f"expected a test, found {_describe(tok)}", tok.line, tok.column)
        args = self.arguments()
        tests, test_list = self.test_part(depth)
        return Test(tok.value, args, tests, tok.line, tok.column, test_list)

    def test_list(self, depth: int) -> tuple[Test, ...]:
        start = self.expect(TokenKind.LPAREN)
        if depth > self.limits.max_nesting:
            raise SieveError("tests nested too deeply", start.line, start.column)
        tests: list[Test] = []
        while True:
            tests.append(self.test(depth))
            if len(tests) > self.limits.max_list_items:
                raise SieveError("test list too long", start.line, start.column)
            sep = self.take()
            if sep.kind is TokenKind.RPAREN:
                return tuple(tests)
            if sep.kind is not TokenKind.COMMA:
                raise SieveError(
                    f"expected ',' or ')', found {_describe(sep)}", sep.line, sep.column
                )


def _describe(tok: Token) -> str:
    if tok.kind is TokenKind.EOF:
        return "end of script"
    if tok.kind is TokenKind.STRING:
        return "a string"
    if tok.kind is TokenKind.TAG:
        return f"':{tok.value}'"
    return repr(tok.value)


def parse_syntax(text: str, limits: ParseLimits = ParseLimits()) -> Script:
    """Parse ``text`` into an unvalidated Script; raises SieveError."""
    if len(text) > limits.max_script_size:
        raise SieveError("script too large", 1, 1)
    parser = _Parser(tokenize(text), limits)
    commands = parser.commands(0, top=True)
    return Script(commands, frozenset(parser.requires))
