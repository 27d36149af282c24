"""Grammar pieces every IMAP command parser shares: mailbox names, flags, the end."""

from __future__ import annotations

from collections.abc import Callable

from correo.imap.cmdtypes import Command, ParseOptions
from correo.imap.errors import ParseError
from correo.imap.reader import Reader
from correo.imap.utf7 import decode_mutf7


def decode_mailbox(raw: bytes, utf8: bool) -> str:
    """Wire mailbox name → Unicode; INBOX is case-insensitive (RFC 9051 §5.1)."""
    if utf8:
        try:
            name = raw.decode("utf-8")  # RFC 9051 §5.1 / RFC 6855 §3
        except UnicodeDecodeError as exc:
            raise ParseError("mailbox name is not valid UTF-8") from exc
    else:
        try:
            name = decode_mutf7(raw)  # RFC 3501 §5.1.3
        except ValueError as exc:
            raise ParseError(f"invalid mailbox name: {exc}", "CANNOT", "NO") from exc
    if name.upper() == "INBOX":
        return "INBOX"
    return name


def read_mailbox(r: Reader, o: ParseOptions) -> str:
    return decode_mailbox(r.astring(), o.utf8)


def utf8_text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{what} is not valid UTF-8") from exc


def paren_keywords(r: Reader, *, allow_empty: bool = False) -> list[str]:
    r.open_paren()
    out: list[str] = []
    if r.peek() != 0x29 or not allow_empty:
        out.append(r.keyword())
        while r.take(b" "):
            out.append(r.keyword())
    r.close_paren()
    return out


def flag_list(r: Reader) -> tuple[str, ...]:
    # RFC 9051 §9 flag-list = "(" [flag *(SP flag)] ")"
    r.open_paren()
    flags: list[str] = []
    if r.peek() != 0x29:
        flags.append(read_flag(r))
        while r.take(b" "):
            flags.append(read_flag(r))
    r.close_paren()
    return tuple(flags)


def read_flag(r: Reader) -> str:
    flag = r.flag()
    if flag.startswith("\\") and flag[1:].upper() == "RECENT":
        raise ParseError("\\Recent cannot be set by the client")  # RFC 3501 §2.3.2
    return flag


def finish(command: Command, r: Reader) -> Command:
    r.end()
    return command


def nil_parser(cls: Callable[[], Command]) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        return finish(cls(), r)

    return parse


# ---- per-command parsers -----------------------------------------------------
