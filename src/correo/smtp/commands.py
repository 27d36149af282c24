"""SMTP/LMTP command lines -> command dataclasses (RFC 5321 §4.1, RFC 2033 §4.1).

``parse_command`` takes one line without its CRLF and returns either a
command (which is also the event the shell sees) or the error ``Reply``. It
knows nothing of session state: sequencing is the state table's job in
``server.py``.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from correo.smtp.address import Path, parse_path
from correo.smtp.errors import RemoteProtocolError
from correo.smtp.replies import (
    BAD_BASE64,
    BAD_PARAMS,
    BAD_RECIPIENT_SYNTAX,
    BAD_SENDER_SYNTAX,
    BDAT_SYNTAX_CLOSE,
    EMPTY_COMMAND,
    UNRECOGNIZED,
    Reply,
    syntax_error,
)

__all__ = [
    "MAX_BDAT_SIZE_DIGITS",
    "Auth",
    "Bdat",
    "Command",
    "Data",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "MailFrom",
    "Noop",
    "Quit",
    "RcptTo",
    "Rset",
    "StartTls",
    "Vrfy",
    "command_verb",
    "decode_base64",
    "parse_command",
    "parse_params",
]

MAX_BDAT_SIZE_DIGITS = 18  # fits an int64; anything longer is an attack, not a message


class Event:
    """Base of everything ``ServerConnection.next_event()`` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Helo(Event):
    """HELO (``extended=False``), EHLO or LHLO (``extended=True``)."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class StartTls(Event):
    """STARTTLS (RFC 3207 §4)."""


@dataclass(frozen=True, slots=True)
class Auth(Event):
    """AUTH (RFC 4954 §4); ``initial`` is the decoded initial response, if any."""

    mechanism: str
    initial: bytes | None = None


@dataclass(frozen=True, slots=True)
class MailFrom(Event):
    """MAIL FROM:<reverse-path> [params] (RFC 5321 §4.1.1.2)."""

    path: Path
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RcptTo(Event):
    """RCPT TO:<forward-path> [params] (RFC 5321 §4.1.1.3)."""

    path: Path
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Data(Event):
    """DATA (RFC 5321 §4.1.1.4); answer 354 to receive the message."""


@dataclass(frozen=True, slots=True)
class Bdat(Event):
    """BDAT size [LAST] (RFC 3030 §2); consumed by the core, never emitted."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset(Event):
    """RSET (RFC 5321 §4.1.1.5)."""


@dataclass(frozen=True, slots=True)
class Noop(Event):
    """NOOP [string] (RFC 5321 §4.1.1.9); the argument is ignored."""


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """QUIT (RFC 5321 §4.1.1.10)."""


@dataclass(frozen=True, slots=True)
class Vrfy(Event):
    """VRFY string (RFC 5321 §4.1.1.6)."""

    arg: str


@dataclass(frozen=True, slots=True)
class Expn(Event):
    """EXPN string (RFC 5321 §4.1.1.7)."""

    arg: str


@dataclass(frozen=True, slots=True)
class Help(Event):
    """HELP [string] (RFC 5321 §4.1.1.8)."""

    arg: str | None = None


Command = (
    Helo
    | StartTls
    | Auth
    | MailFrom
    | RcptTo
    | Data
    | Bdat
    | Rset
    | Noop
    | Quit
    | Vrfy
    | Expn
    | Help
)

# RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
# esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii (RFC 6531 §3.3).
_PARAM_RE = re.compile(rb"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e\x80-\xff]+))?")
# RFC 4422 §3.1: sasl-mech = 1*20mech-char
_MECH_RE = re.compile(rb"[A-Za-z0-9_-]{1,20}")
_DIGITS_RE = re.compile(rb"[0-9]+")


def parse_params(data: bytes) -> dict[str, str | None]:
    """Parse space-separated ESMTP parameters; raise RemoteProtocolError(501 5.5.4)."""
    params: dict[str, str | None] = {}
    for token in data.split():
        m = _PARAM_RE.fullmatch(token)
        if m is None:
            raise RemoteProtocolError(BAD_PARAMS)
        key = m.group(1).decode("ascii").upper()  # RFC 5321 §2.4: keywords are case-blind
        if key in params:
            raise RemoteProtocolError(BAD_PARAMS)
        value = m.group(2)
        try:
            params[key] = None if value is None else value.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(BAD_PARAMS) from None
    return params


def decode_base64(data: bytes) -> bytes | None:
    """Strict base64 (RFC 4954 §4); ``None`` when invalid."""
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        return None


def _text(arg: bytes, usage: str) -> str:
    try:
        return arg.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(syntax_error(usage)) from None


def _no_arg(cls: Callable[[], Command], usage: str) -> Callable[[bytes], Command]:
    def parse(arg: bytes) -> Command:
        if arg:
            raise RemoteProtocolError(syntax_error(usage))
        return cls()

    return parse


def _helo(extended: bool, usage: str) -> Callable[[bytes], Command]:
    def parse(arg: bytes) -> Command:
        # RFC 5321 §4.1.1.1: "EHLO" SP ( Domain / address-literal ); the name's
        # validity is policy, but it must be one non-empty word.
        if not arg or b" " in arg:
            raise RemoteProtocolError(syntax_error(usage))
        return Helo(_text(arg, usage), extended)

    return parse


def _mail_or_rcpt(arg: bytes, *, rcpt: bool, smtputf8: bool) -> Command:
    prefix = b"TO:" if rcpt else b"FROM:"
    if arg[: len(prefix)].upper() != prefix:
        raise RemoteProtocolError(
            syntax_error("Syntax: RCPT TO:<address>" if rcpt else "Syntax: MAIL FROM:<address>")
        )
    pos = len(prefix)
    if arg.startswith(b" ", pos):  # not in RFC 5321 §4.1.1.2, but common: tolerate one space
        pos += 1
    kind: Literal["mail", "rcpt"] = "rcpt" if rcpt else "mail"
    # MAIL's own SMTPUTF8 keyword (after the path) decides whether 8-bit is
    # allowed, so parse permissively and check once the parameters are known.
    path, end = parse_path(arg, pos, kind=kind, smtputf8=smtputf8 or not rcpt)
    rest = arg[end:]
    if rest and not rest.startswith(b" "):  # RFC 5321 §4.1.1.2: SP between path and params
        raise RemoteProtocolError(BAD_RECIPIENT_SYNTAX if rcpt else BAD_SENDER_SYNTAX)
    params = parse_params(rest)
    if not rcpt and "SMTPUTF8" not in params and not path.raw.isascii():  # RFC 6531 §3.4
        raise RemoteProtocolError(BAD_SENDER_SYNTAX)
    return RcptTo(path, params) if rcpt else MailFrom(path, params)


def _auth(arg: bytes) -> Command:
    usage = "Syntax: AUTH mechanism [initial-response]"
    parts = arg.split(b" ")
    if not 1 <= len(parts) <= 2 or not _MECH_RE.fullmatch(parts[0]):
        raise RemoteProtocolError(syntax_error(usage))
    mechanism = parts[0].decode("ascii").upper()
    if len(parts) == 1:
        return Auth(mechanism, None)
    if parts[1] == b"=":  # RFC 4954 §4: "=" is a zero-length initial response
        return Auth(mechanism, b"")
    initial = decode_base64(parts[1]) if parts[1] else None
    if initial is None:
        raise RemoteProtocolError(BAD_BASE64)
    return Auth(mechanism, initial)


def _bdat(arg: bytes) -> Command:
    # RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF
    parts = arg.split(b" ")
    if (
        not 1 <= len(parts) <= 2
        or not _DIGITS_RE.fullmatch(parts[0])
        or len(parts[0]) > MAX_BDAT_SIZE_DIGITS
        or (len(parts) == 2 and parts[1].upper() != b"LAST")
    ):
        raise RemoteProtocolError(BDAT_SYNTAX_CLOSE)
    return Bdat(int(parts[0]), len(parts) == 2)


def _arg_required(cls: Callable[[str], Command], usage: str) -> Callable[[bytes], Command]:
    def parse(arg: bytes) -> Command:
        if not arg:
            raise RemoteProtocolError(syntax_error(usage))
        return cls(_text(arg, usage))

    return parse


def _help(arg: bytes) -> Command:
    return Help(_text(arg, "Syntax: HELP [topic]") if arg else None)


def _noop(arg: bytes) -> Command:
    return Noop()  # RFC 5321 §4.1.1.9: the parameter, if any, is ignored


_COMMON: dict[bytes, Callable[[bytes], Command]] = {
    b"DATA": _no_arg(Data, "Syntax: DATA"),
    b"BDAT": _bdat,
    b"RSET": _no_arg(Rset, "Syntax: RSET"),
    b"NOOP": _noop,
    b"QUIT": _no_arg(Quit, "Syntax: QUIT"),
    b"VRFY": _arg_required(Vrfy, "Syntax: VRFY address"),
    b"EXPN": _arg_required(Expn, "Syntax: EXPN list"),
    b"HELP": _help,
    b"STARTTLS": _no_arg(StartTls, "Syntax: STARTTLS"),
    b"AUTH": _auth,
}
_SMTP_ONLY = {
    b"EHLO": _helo(True, "Syntax: EHLO hostname"),
    b"HELO": _helo(False, "Syntax: HELO hostname"),
}
_LMTP_ONLY = {b"LHLO": _helo(True, "Syntax: LHLO hostname")}  # RFC 2033 §4.1
_TABLES = {False: {**_COMMON, **_SMTP_ONLY}, True: {**_COMMON, **_LMTP_ONLY}}


def command_verb(line: bytes) -> bytes:
    """The uppercased verb of a command line (bytes before the first space)."""
    return line.split(b" ", 1)[0].upper()


def parse_command(line: bytes, *, lmtp: bool = False, smtputf8: bool = False) -> Command | Reply:
    """Parse one command line (without CRLF).

    ``smtputf8`` says whether the current transaction's MAIL carried SMTPUTF8,
    which admits UTF-8 in RCPT paths (RFC 6531 §3.4).
    """
    line = line.rstrip(b" ")  # trailing blanks are harmless; many clients send them
    if not line:
        return EMPTY_COMMAND
    verb, _, arg = line.partition(b" ")
    verb = verb.upper()  # RFC 5321 §2.4: verbs are case-insensitive
    try:
        if verb == b"MAIL":
            return _mail_or_rcpt(arg, rcpt=False, smtputf8=False)
        if verb == b"RCPT":
            return _mail_or_rcpt(arg, rcpt=True, smtputf8=smtputf8)
        parse = _TABLES[lmtp].get(verb)
        if parse is None:
            return UNRECOGNIZED
        return parse(arg)
    except RemoteProtocolError as exc:
        return exc.reply
