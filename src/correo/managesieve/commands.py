"""ManageSieve commands as frozen dataclasses, built from parsed arguments (RFC 5804 §2)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "COMMANDS",
    "ArgumentError",
    "Authenticate",
    "Capability",
    "CheckScript",
    "Command",
    "DeleteScript",
    "GetScript",
    "HaveSpace",
    "ListScripts",
    "Logout",
    "Noop",
    "PutScript",
    "RenameScript",
    "SaslCancel",
    "SaslResponse",
    "SetActive",
    "StartTls",
    "Unauthenticate",
    "build_command",
    "script_name_error",
]


class ArgumentError(ValueError):
    """The arguments do not fit the command; the text goes into a NO response."""


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str
    initial: bytes | None = None


@dataclass(frozen=True, slots=True)
class SaslResponse:
    data: bytes


@dataclass(frozen=True, slots=True)
class SaslCancel:
    pass


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Capability:
    pass


@dataclass(frozen=True, slots=True)
class HaveSpace:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class PutScript:
    name: str
    script: bytes


@dataclass(frozen=True, slots=True)
class ListScripts:
    pass


@dataclass(frozen=True, slots=True)
class SetActive:
    name: str  # "" deactivates every script (RFC 5804 §2.8)


@dataclass(frozen=True, slots=True)
class GetScript:
    name: str


@dataclass(frozen=True, slots=True)
class DeleteScript:
    name: str


@dataclass(frozen=True, slots=True)
class RenameScript:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class CheckScript:
    script: bytes


@dataclass(frozen=True, slots=True)
class Noop:
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Unauthenticate:
    pass


Command = (
    Authenticate
    | SaslResponse
    | SaslCancel
    | StartTls
    | Logout
    | Capability
    | HaveSpace
    | PutScript
    | ListScripts
    | SetActive
    | GetScript
    | DeleteScript
    | RenameScript
    | CheckScript
    | Noop
    | Unauthenticate
)

#: Arguments as parsed: ``bytes`` for strings (quoted or literal), ``int`` for numbers.
Arg = bytes | int


def script_name_error(text: str) -> str | None:
    """Why ``text`` is not a script name, or None when it is one (RFC 5804 §1.6):
    1 to 255 characters of Net-Unicode (NFC, RFC 5198), no controls or separators."""
    if not text:  # RFC 5804 §1.6: at least one octet ("" only for SETACTIVE, §2.8)
        return "empty script name"
    if len(text) > 255 or any(
        ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text
    ):  # RFC 5804 §1.6: no C0/C1 controls, DELETE, U+2028 or U+2029
        return "bad script name"
    if not unicodedata.is_normalized("NFC", text):  # RFC 5804 §1.6: Net-Unicode
        return "script name is not in Unicode NFC"
    return None


def _name(arg: Arg) -> str:
    if not isinstance(arg, bytes):
        raise ArgumentError("expected a string")
    try:
        text = arg.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentError("script name is not UTF-8") from None
    error = script_name_error(text)
    if error is not None:
        raise ArgumentError(error)
    return text


def _string(arg: Arg) -> bytes:
    if not isinstance(arg, bytes):
        raise ArgumentError("expected a string")
    return arg


def _arity(args: Sequence[Arg], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        raise ArgumentError("wrong number of arguments")


def _authenticate(a: Sequence[Arg]) -> Command:
    _arity(a, 1, 2)
    mechanism = _string(a[0]).decode("ascii", "replace").upper()
    return Authenticate(mechanism, _string(a[1]) if len(a) == 2 else None)


def _havespace(a: Sequence[Arg]) -> Command:
    _arity(a, 2)
    if not isinstance(a[1], int):
        raise ArgumentError("expected a number")
    return HaveSpace(_name(a[0]), a[1])


def _noop(a: Sequence[Arg]) -> Command:
    _arity(a, 0, 1)
    return Noop(_string(a[0]).decode("utf-8", "replace") if a else None)


def _none(cls: Callable[[], Command]) -> Callable[[Sequence[Arg]], Command]:
    def build(a: Sequence[Arg]) -> Command:
        _arity(a, 0)
        return cls()

    return build


def _one_name(cls: Callable[[str], Command]) -> Callable[[Sequence[Arg]], Command]:
    def build(a: Sequence[Arg]) -> Command:
        _arity(a, 1)
        return cls(_name(a[0]))

    return build


def _putscript(a: Sequence[Arg]) -> Command:
    _arity(a, 2)
    return PutScript(_name(a[0]), _string(a[1]))


def _checkscript(a: Sequence[Arg]) -> Command:
    _arity(a, 1)
    return CheckScript(_string(a[0]))


def _renamescript(a: Sequence[Arg]) -> Command:
    _arity(a, 2)
    return RenameScript(_name(a[0]), _name(a[1]))


def _setactive(a: Sequence[Arg]) -> Command:
    _arity(a, 1)
    return SetActive("" if a[0] == b"" else _name(a[0]))


#: RFC 5804 §2: command names are case-insensitive atoms.
COMMANDS: dict[str, Callable[[Sequence[Arg]], Command]] = {
    "AUTHENTICATE": _authenticate,
    "STARTTLS": _none(StartTls),
    "LOGOUT": _none(Logout),
    "CAPABILITY": _none(Capability),
    "HAVESPACE": _havespace,
    "PUTSCRIPT": _putscript,
    "LISTSCRIPTS": _none(ListScripts),
    "SETACTIVE": _setactive,
    "GETSCRIPT": _one_name(GetScript),
    "DELETESCRIPT": _one_name(DeleteScript),
    "RENAMESCRIPT": _renamescript,
    "CHECKSCRIPT": _checkscript,
    "NOOP": _noop,
    "UNAUTHENTICATE": _none(Unauthenticate),
}


def build_command(name: str, args: Sequence[Arg]) -> Command:
    """The command for a parsed line; ArgumentError (or KeyError for unknown names)."""
    return COMMANDS[name.upper()](args)
