"""Tokenizer for Sieve scripts (RFC 5228 §8.1).

The lexer works on ``str`` with compiled regular expressions, so long strings
and comments are consumed by the regex engine rather than a per-character
Python loop. Every token carries its 1-based line and column so that
ManageSieve CHECKSCRIPT can point at the offending place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["SieveError", "Token", "TokenKind", "tokenize"]

# Numbers wider than this are rejected before int() sees them (int() refuses
# very long digit strings and big values are meaningless in Sieve anyway).
_MAX_NUMBER_DIGITS = 18


class SieveError(Exception):
    """A script error: carries the message and the 1-based line and column."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message, line, column)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line:
            return f"line {self.line}:{self.column}: {self.message}"
        return self.message


class TokenKind(Enum):
    """The token classes of RFC 5228 §8.1."""

    IDENTIFIER = "identifier"
    TAG = "tag"
    NUMBER = "number"
    STRING = "string"
    LBRACKET = "["
    RBRACKET = "]"
    LPAREN = "("
    RPAREN = ")"
    LBRACE = "{"
    RBRACE = "}"
    COMMA = ","
    SEMICOLON = ";"
    EOF = "end of script"


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; ``value`` is decoded text (strings) or the name."""

    kind: TokenKind
    value: str
    line: int
    column: int
    number: int = 0


_PUNCT = {
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "{": TokenKind.LBRACE,
    "}": TokenKind.RBRACE,
    ",": TokenKind.COMMA,
    ";": TokenKind.SEMICOLON,
}

# RFC 5228 §8.1: white-space = 1*(SP / CRLF / HTAB) / comment. Bare LF is
# accepted too, scripts uploaded from Unix editors use it.
_SKIP = re.compile(r"(?:[ \t\r\n]+|#[^\n]*)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"([0-9]+)([KkMmGg]?)")
# RFC 5228 §8.1: quoted-string; any character may follow a backslash.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
# RFC 5228 §8.1: "text:" *(SP / HTAB) (hash-comment / CRLF)
_MULTI_HEAD = re.compile(r"text:[ \t]*(?:#[^\n]*)?\r?\n", re.IGNORECASE)
_MULTI_END = re.compile(r"^\.\r?(?:\n|\Z)", re.MULTILINE)
_DOT_STUFF = re.compile(r"^\.(?=\.)", re.MULTILINE)
_QUANTIFIER = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an EOF token.

    Raises SieveError on unterminated strings/comments and stray characters.
    """
    tokens: list[Token] = []
    pos = 0
    end = len(text)
    line = 1
    line_start = 0

    def advance(to: int) -> None:
        nonlocal pos, line, line_start
        newlines = text.count("\n", pos, to)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", pos, to) + 1
        pos = to

    while True:
        while pos < end:
            m = _SKIP.match(text, pos)
            if m is not None:
                advance(m.end())
                continue
            if text.startswith("/*", pos):  # RFC 5228 §2.3 bracket comment
                close = text.find("*/", pos + 2)
                if close < 0:
                    raise SieveError("unterminated comment", line, pos - line_start + 1)
                advance(close + 2)
                continue
            break
        col = pos - line_start + 1
        if pos >= end:
            tokens.append(Token(TokenKind.EOF, "", line, col))
            return tokens
        ch = text[pos]
        kind = _PUNCT.get(ch)
        if kind is not None:
            tokens.append(Token(kind, ch, line, col))
            advance(pos + 1)
        elif ch == '"':
            m = _QUOTED.match(text, pos)
            if m is None:
                raise SieveError("unterminated string", line, col)
            tokens.append(Token(TokenKind.STRING, _UNESCAPE.sub(r"\1", m.group(1)), line, col))
            advance(m.end())
        elif ch == ":":
            m = _IDENT.match(text, pos + 1)
            if m is None:
                raise SieveError("expected a tag name after ':'", line, col)
            tokens.append(Token(TokenKind.TAG, m.group().lower(), line, col))
            advance(m.end())
        elif ch.isascii() and ch.isdigit():
            m = _NUMBER.match(text, pos)
            assert m is not None
            digits = m.group(1)
            if len(digits) > _MAX_NUMBER_DIGITS:
                raise SieveError("number too large", line, col)
            value = int(digits) * _QUANTIFIER[m.group(2).lower()]  # RFC 5228 §2.4.1
            tokens.append(Token(TokenKind.NUMBER, m.group(), line, col, value))
            advance(m.end())
        elif text[pos : pos + 5].lower() == "text:":
            head = _MULTI_HEAD.match(text, pos)
            if head is None:
                raise SieveError("text: must be followed by a line break", line, col)
            body_start = head.end()
            tail = _MULTI_END.search(text, body_start)
            if tail is None:
                raise SieveError("unterminated multi-line string", line, col)
            body = _DOT_STUFF.sub("", text[body_start : tail.start()])  # RFC 5228 §2.4.2
            tokens.append(Token(TokenKind.STRING, body, line, col))
            advance(tail.end())
        else:
            m = _IDENT.match(text, pos)
            if m is None:
                raise SieveError(f"unexpected character {ch!r}", line, col)
            tokens.append(Token(TokenKind.IDENTIFIER, m.group().lower(), line, col))
            advance(m.end())
