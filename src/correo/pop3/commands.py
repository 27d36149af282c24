"""POP3 command lines parsed into frozen dataclasses (RFC 1939, RFC 2449, RFC 5034).

Parsing is split in two steps so the connection can check the keyword against
its state table *before* looking at arguments: a command that is illegal in
the current state is refused as such, whatever its arguments.  The parser
never raises on peer input; it returns :class:`BadCommand` carrying the text
of the ``-ERR`` reply.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "PARSERS",
    "ApopCommand",
    "AuthCommand",
    "BadCommand",
    "CapaCommand",
    "Command",
    "DeleCommand",
    "ListCommand",
    "NoopCommand",
    "PassCommand",
    "QuitCommand",
    "RetrCommand",
    "RsetCommand",
    "StatCommand",
    "StlsCommand",
    "TopCommand",
    "UidlCommand",
    "UserCommand",
    "decode_base64",
    "has_controls",
    "parse_command",
    "split_keyword",
]


@dataclass(frozen=True, slots=True)
class UserCommand:
    name: str


@dataclass(frozen=True, slots=True)
class PassCommand:
    password: str

    def __repr__(self) -> str:
        return "PassCommand(password=<hidden>)"


@dataclass(frozen=True, slots=True)
class ApopCommand:
    pass


@dataclass(frozen=True, slots=True)
class AuthCommand:
    mechanism: str | None  # None: list the mechanisms
    initial: bytes | None

    def __repr__(self) -> str:
        shown = None if self.initial is None else f"<{len(self.initial)} bytes>"
        return f"AuthCommand(mechanism={self.mechanism!r}, initial={shown})"


@dataclass(frozen=True, slots=True)
class StlsCommand:
    pass


@dataclass(frozen=True, slots=True)
class CapaCommand:
    pass


@dataclass(frozen=True, slots=True)
class StatCommand:
    pass


@dataclass(frozen=True, slots=True)
class ListCommand:
    number: int | None


@dataclass(frozen=True, slots=True)
class UidlCommand:
    number: int | None


@dataclass(frozen=True, slots=True)
class RetrCommand:
    number: int


@dataclass(frozen=True, slots=True)
class TopCommand:
    number: int
    lines: int


@dataclass(frozen=True, slots=True)
class DeleCommand:
    number: int


@dataclass(frozen=True, slots=True)
class RsetCommand:
    pass


@dataclass(frozen=True, slots=True)
class NoopCommand:
    pass


@dataclass(frozen=True, slots=True)
class QuitCommand:
    pass


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A line that cannot be a valid command; ``text`` goes after ``-ERR``."""

    text: str


Command = (
    UserCommand
    | PassCommand
    | ApopCommand
    | AuthCommand
    | StlsCommand
    | CapaCommand
    | StatCommand
    | ListCommand
    | UidlCommand
    | RetrCommand
    | TopCommand
    | DeleCommand
    | RsetCommand
    | NoopCommand
    | QuitCommand
)

_SYNTAX = BadCommand("Syntax error")
_BAD_NUMBER = BadCommand("Invalid message number")
_MAX_DIGITS = 10  # 2**32 fits; longer strings are hostile, not maildrops

# Every C0 control and DEL: RFC 1939 §3 keywords and arguments are printable,
# and a bare CR inside a line is a smuggling vector.
_CONTROLS = bytes(range(0x20)) + b"\x7f"

# RFC 4422 §3.1: mechanism names are 1-20 of upper-case letters, digits, "-" and "_".
_MECH_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def has_controls(line: bytes) -> bool:
    """True when ``line`` holds a control byte (translate runs in C)."""
    return len(line.translate(None, _CONTROLS)) != len(line)


def split_keyword(line: bytes) -> tuple[bytes, bytes | None]:
    """Split ``KEYWORD[ SP rest]``; the keyword comes back upper-cased (RFC 1939 §3)."""
    keyword, sep, rest = line.partition(b" ")
    return keyword.upper(), (rest if sep else None)


def decode_base64(text: bytes) -> bytes | None:
    """Strict base64 (RFC 4648 §4), None when malformed; ``=`` means empty (RFC 5034 §4)."""
    if text == b"=":
        return b""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _args(rest: bytes | None) -> list[bytes] | None:
    """Arguments split on single spaces (RFC 1939 §3); None if any is empty."""
    if rest is None:
        return []
    args = rest.split(b" ")
    return None if b"" in args else args


def _number(token: bytes) -> int | None:
    """A decimal message number: digits only (no sign, no blank), at most 10 of them."""
    if not token.isdigit() or len(token) > _MAX_DIGITS:
        return None
    return int(token)


def _utf8(token: bytes) -> str | None:
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _no_args(make: Callable[[], Command]) -> Callable[[bytes | None], Command | BadCommand]:
    def parse(rest: bytes | None) -> Command | BadCommand:
        return make() if rest is None else BadCommand("No arguments allowed")

    return parse


def _one_number(make: Callable[[int], Command]) -> Callable[[bytes | None], Command | BadCommand]:
    def parse(rest: bytes | None) -> Command | BadCommand:
        args = _args(rest)
        if args is None or len(args) != 1:
            return _SYNTAX
        number = _number(args[0])
        return _BAD_NUMBER if number is None else make(number)

    return parse


def _optional_number(
    make: Callable[[int | None], Command],
) -> Callable[[bytes | None], Command | BadCommand]:
    def parse(rest: bytes | None) -> Command | BadCommand:
        args = _args(rest)
        if args is None or len(args) > 1:
            return _SYNTAX
        if not args:
            return make(None)
        number = _number(args[0])
        return _BAD_NUMBER if number is None else make(number)

    return parse


def _parse_user(rest: bytes | None) -> Command | BadCommand:
    args = _args(rest)
    if args is None or len(args) != 1:
        return _SYNTAX
    name = _utf8(args[0])
    return _SYNTAX if name is None else UserCommand(name)


def _parse_pass(rest: bytes | None) -> Command | BadCommand:
    # RFC 1939 §7: PASS has one argument, so spaces belong to the password.
    if not rest:
        return _SYNTAX
    password = _utf8(rest)
    return _SYNTAX if password is None else PassCommand(password)


def _parse_top(rest: bytes | None) -> Command | BadCommand:
    args = _args(rest)
    if args is None or len(args) != 2:  # RFC 1939 §7: TOP msg n, both required
        return _SYNTAX
    number, lines = _number(args[0]), _number(args[1])
    if number is None or lines is None:
        return _BAD_NUMBER
    return TopCommand(number, lines)


def _parse_auth(rest: bytes | None) -> Command | BadCommand:
    args = _args(rest)
    if args is None or len(args) > 2:
        return _SYNTAX
    if not args:
        return AuthCommand(None, None)
    mechanism = args[0].upper()  # RFC 4422 §3.1: names compare case-insensitively
    if len(mechanism) > 20 or mechanism.translate(None, _MECH_CHARS):
        return BadCommand("Invalid mechanism name")
    initial: bytes | None = None
    if len(args) == 2:
        initial = decode_base64(args[1])  # RFC 5034 §4: initial response in base64
        if initial is None:
            return BadCommand("Invalid base64 data")
    return AuthCommand(mechanism.decode("ascii"), initial)


def _parse_apop(rest: bytes | None) -> Command | BadCommand:
    return ApopCommand()  # refused whatever the arguments


PARSERS: dict[bytes, Callable[[bytes | None], Command | BadCommand]] = {
    b"USER": _parse_user,
    b"PASS": _parse_pass,
    b"APOP": _parse_apop,
    b"AUTH": _parse_auth,
    b"STLS": _no_args(StlsCommand),
    b"CAPA": _no_args(CapaCommand),
    b"STAT": _no_args(StatCommand),
    b"LIST": _optional_number(ListCommand),
    b"UIDL": _optional_number(UidlCommand),
    b"RETR": _one_number(RetrCommand),
    b"TOP": _parse_top,
    b"DELE": _one_number(DeleCommand),
    b"RSET": _no_args(RsetCommand),
    b"NOOP": _no_args(NoopCommand),
    b"QUIT": _no_args(QuitCommand),
}


def parse_command(line: bytes) -> Command | BadCommand:
    """Parse one command line without its CRLF, ignoring protocol state."""
    if has_controls(line):
        return _SYNTAX
    keyword, rest = split_keyword(line)
    parser = PARSERS.get(keyword)
    if parser is None:
        return BadCommand("Unknown command")
    return parser(rest)
