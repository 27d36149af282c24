"""FETCH: its items, sections and modifiers (RFC 9051 §6.4.5, RFC 7162 §3.1.4), and a
fast lane for the item lists clients repeat.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from correo.imap.cmdparse import utf8_text
from correo.imap.cmdtypes import Command, Fetch, FetchAtt, ParseOptions, Section
from correo.imap.errors import ParseError
from correo.imap.reader import MAX_NUMBER64, Reader
from correo.imap.sequence import SequenceSet


def fetch_att_list(r: Reader) -> tuple[FetchAtt, ...]:
    """``"(" fetch-att *(SP fetch-att) ")"`` (RFC 5465 §7 UPDATE, §8 MessageNew)."""
    r.open_paren()
    items = _fetch_att(r)
    while r.take(b" "):
        items += _fetch_att(r)
    r.close_paren()
    return tuple(dict.fromkeys(items))


_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SIMPLE_ITEMS = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "EMAILID",  # RFC 8474 §5
        "THREADID",
        "SAVEDATE",  # RFC 8514 §4.3
    }
)
_MACROS = {  # RFC 9051 §6.4.5
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SECTION = re.compile(rb"[A-Za-z0-9.]*")
_PART = re.compile(rb"[1-9][0-9]{0,9}")
_MSGTEXT = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"}


def _section(r: Reader, binary: bool) -> Section:
    r.expect(b"[")
    m = r.atom_like(_SECTION)
    spec = m.upper().decode("ascii")
    part: list[int] = []
    words = spec.split(".") if spec else []
    while words and _PART.fullmatch(words[0].encode()):
        value = int(words.pop(0))
        if value > 0xFFFFFFFF:
            raise ParseError("section part out of range")
        part.append(value)
    text = ".".join(words) if words else None
    if text is not None:
        allowed = _MSGTEXT | ({"MIME"} if part else set())
        if binary or text not in allowed:
            raise ParseError(f"invalid section {spec}")
    elif spec and not part:
        raise ParseError("invalid section")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        r.sp()  # RFC 9051 §9 header-list = "(" header-fld-name *(SP header-fld-name) ")"
        r.open_paren()
        names = [utf8_text(r.astring(), "header name")]
        while r.take(b" "):
            names.append(utf8_text(r.astring(), "header name"))
        r.close_paren()
        fields = tuple(names)
    r.expect(b"]")
    return Section(tuple(part), text, fields)


def _partial(r: Reader) -> tuple[int, int] | None:
    if not r.take(b"<"):
        return None
    origin = r.number()
    r.expect(b".")
    count = r.number(nonzero=True)
    r.expect(b">")
    return origin, count


def _fetch_att(r: Reader) -> list[FetchAtt]:
    name = r.atom_like(_FETCH_NAME).upper().decode("ascii")
    if name in _MACROS:
        return [FetchAtt(n) for n in _MACROS[name]]
    if name in ("BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE") and r.peek_is(b"["):
        binary = name.startswith("BINARY")
        section = _section(r, binary)
        partial = None if name == "BINARY.SIZE" else _partial(r)
        base = name.removesuffix(".PEEK")
        return [FetchAtt(base, section, partial, name.endswith(".PEEK"))]
    if name in _SIMPLE_ITEMS:
        return [FetchAtt(name)]
    if name == "PREVIEW":
        if r.peek_is(b" ("):  # RFC 8970 §7: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"]
            r.sp()
            r.open_paren()
            while True:
                if r.keyword() != "LAZY":
                    raise ParseError("unknown PREVIEW modifier")
                if not r.take(b" "):
                    break
            r.close_paren()
        return [FetchAtt(name)]
    raise ParseError(f"unknown FETCH item {name}")


# Clients repeat a few FETCH item lists thousands of times ("(BODY.PEEK[])", "(UID
# FLAGS)"): what follows the sequence set is parsed once and remembered, bounded.
_FETCH_TAILS: dict[tuple[bool, bytes], tuple[tuple[FetchAtt, ...], int | None, bool]] = {}
_FETCH_TAILS_KEPT = 256


# "tag [UID ]FETCH set items" on one line: the shape of nearly every command a syncing
# client sends once a mailbox is open.
_QUICK_FETCH = re.compile(
    rb'([^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+) ((?i:UID) )?(?i:FETCH) ([0-9:*,]+) ([^{}]+)'
)


def quick_fetch(line: bytes, options: ParseOptions) -> tuple[str, Fetch] | None:
    """(tag, command) for a one-line FETCH whose item list was parsed before, else None.

    A fast lane, not a second grammar: the item list must be one :func:`parse_command`
    already accepted, and anything unusual (a bad set, a literal) takes the full parser,
    which gives the error.
    """
    m = _QUICK_FETCH.fullmatch(line)
    if m is None:
        return None
    tag, uid_word, sequence, tail = m.groups()
    uid = uid_word is not None
    known = _FETCH_TAILS.get((uid, tail))
    if known is None:
        return None
    try:
        seq = SequenceSet.parse(sequence, max_ranges=options.max_ranges)
    except ParseError:
        return None
    return tag.decode("ascii"), Fetch(uid, seq, *known)


def fetch_parser(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        seq = r.sequence_set(max_ranges=o.max_ranges)
        r.sp()
        tail = r.plain_rest()
        if tail is not None and len(tail) <= 512:
            known = _FETCH_TAILS.get((uid, tail))
            if known is not None:
                r.skip_rest()
                return Fetch(uid, seq, *known)
        else:
            tail = None
        command = _fetch_rest(r, uid, seq)
        if tail is not None:
            if len(_FETCH_TAILS) >= _FETCH_TAILS_KEPT:
                _FETCH_TAILS.clear()
            _FETCH_TAILS[(uid, tail)] = (command.items, command.changedsince, command.vanished)
        return command

    return parse


def _fetch_rest(r: Reader, uid: bool, seq: SequenceSet) -> Fetch:
    """FETCH after its sequence set: the items and modifiers (RFC 9051 §6.4.5, RFC 7162)."""
    items: list[FetchAtt] = []
    if r.peek() == 0x28:
        r.open_paren()
        items += _fetch_att(r)
        while r.take(b" "):
            items += _fetch_att(r)
        r.close_paren()
    else:
        items = _fetch_att(r)
    changedsince: int | None = None
    vanished = False
    if r.take(b" "):  # RFC 4466 fetch-modifiers
        r.open_paren()
        while True:
            mod = r.keyword()
            if mod == "CHANGEDSINCE" and changedsince is None:
                r.sp()
                changedsince = r.number(MAX_NUMBER64)  # RFC 7162 §3.1.4.1
            elif mod == "VANISHED" and uid and not vanished:
                vanished = True  # RFC 7162 §3.2.6: UID FETCH only
            else:
                raise ParseError(f"invalid FETCH modifier {mod}")
            if not r.take(b" "):
                break
        r.close_paren()
        if vanished and changedsince is None:
            raise ParseError("VANISHED needs CHANGEDSINCE")  # RFC 7162 §3.2.6
    if uid and not any(i.name == "UID" for i in items):
        items.append(FetchAtt("UID"))  # RFC 9051 §6.4.9: UID FETCH always returns UID
    if changedsince is not None and not any(i.name == "MODSEQ" for i in items):
        items.append(FetchAtt("MODSEQ"))  # RFC 7162 §3.1.4.1
    r.end()
    return Fetch(uid, seq, tuple(dict.fromkeys(items)), changedsince, vanished)
