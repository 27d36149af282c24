"""IMAP commands as frozen dataclasses, and one parser per command (RFC 9051 §6).

Class names follow the IMAP command names (``Fetch`` for FETCH and UID FETCH,
with ``uid=True``).  ``PARSERS`` maps the upper-cased command name (``"UID
FETCH"``) to its parser; every parser reads from a :class:`Reader` positioned
after the name and raises :class:`ParseError` on any grammar violation.
Mailbox names arrive as Unicode: decoded from modified UTF-7 in IMAP4rev1
sessions, from UTF-8 once IMAP4rev2 or UTF8=ACCEPT is enabled (RFC 9051 §5.1).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Literal

from correo.imap.cmdparse import (
    decode_mailbox,
    finish,
    flag_list,
    nil_parser,
    paren_keywords,
    read_flag,
    read_mailbox,
    utf8_text,
)
from correo.imap.cmdtypes import (
    Append,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAtt,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    ParseOptions,
    Qresync,
    Rename,
    Search,
    Section,
    Select,
    SetQuota,
    Sort,
    SortCriterion,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    UidExpunge,
    Unauthenticate,
    Unselect,
    Unsubscribe,
)
from correo.imap.errors import ParseError
from correo.imap.fetchparse import fetch_att_list, fetch_parser, quick_fetch
from correo.imap.metadata import parse_entry_list
from correo.imap.reader import MAX_NUMBER64, Reader
from correo.imap.searchparse import search_parser, sort_parser, thread_parser
from correo.imap.sequence import SequenceSet

__all__ = [
    "COMMAND_NAMES",
    "PARSERS",
    "Append",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Compress",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAtt",
    "GetQuota",
    "GetQuotaRoot",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "ParseOptions",
    "Qresync",
    "Rename",
    "Search",
    "Section",
    "Select",
    "SetQuota",
    "Sort",
    "SortCriterion",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "UidExpunge",
    "Unauthenticate",
    "Unselect",
    "Unsubscribe",
    "command_name",
    "decode_mailbox",
    "fetch_att_list",
    "parse_append_head",
    "parse_append_message",
    "parse_command",
    "quick_fetch",
]


def _authenticate(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mech = r.keyword()
    initial: bytes | None = None
    if r.take(b" "):  # RFC 4959 §3: SASL-IR
        if r.take(b"="):
            initial = b""
        else:
            token = r.atom()
            try:
                initial = base64.b64decode(token, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ParseError("invalid base64 initial response") from exc
    return finish(Authenticate(mech, initial), r)


def _login(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    user = utf8_text(r.astring(), "user name")
    r.sp()
    password = utf8_text(r.astring(), "password")
    return finish(Login(user, password), r)


def _enable(r: Reader, o: ParseOptions) -> Command:
    caps: list[str] = []
    r.sp()
    caps.append(r.keyword())
    while r.take(b" "):
        caps.append(r.keyword())
    return finish(Enable(tuple(caps)), r)


def _qresync(r: Reader, o: ParseOptions) -> Qresync:
    # RFC 7162 §3.2.5: "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"
    r.open_paren()
    uidvalidity = r.number(nonzero=True)
    r.sp()
    modseq = r.number(MAX_NUMBER64, nonzero=True)
    known: SequenceSet | None = None
    match: tuple[SequenceSet, SequenceSet] | None = None
    if r.take(b" "):
        if r.peek() != 0x28:
            known = r.sequence_set(max_ranges=o.max_ranges)
            if not r.take(b" "):
                r.close_paren()
                return Qresync(uidvalidity, modseq, known, None)
        r.open_paren()
        seqs = r.sequence_set(max_ranges=o.max_ranges)
        r.sp()
        uids = r.sequence_set(max_ranges=o.max_ranges)
        r.close_paren()
        match = (seqs, uids)
    r.close_paren()
    return Qresync(uidvalidity, modseq, known, match)


def _select_like(cls: type[Select] | type[Examine]) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        mailbox = read_mailbox(r, o)
        condstore = False
        qresync: Qresync | None = None
        if r.take(b" "):
            r.open_paren()
            while True:
                name = r.keyword()
                if name == "CONDSTORE":
                    condstore = True  # RFC 7162 §3.1.8
                elif name == "QRESYNC" and qresync is None:
                    r.sp()
                    qresync = _qresync(r, o)
                else:
                    raise ParseError(f"unknown select parameter {name}")
                if not r.take(b" "):
                    break
            r.close_paren()
        return finish(cls(mailbox, condstore, qresync), r)

    return parse


def _create(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mailbox = read_mailbox(r, o)
    uses: tuple[str, ...] = ()
    if r.take(b" "):  # RFC 4466 create-params; RFC 6154 §3 USE
        r.open_paren()
        if r.keyword() != "USE":
            raise ParseError("unknown CREATE parameter")
        r.sp()
        uses = flag_list(r)
        if not uses or not all(u.startswith("\\") for u in uses):
            raise ParseError("USE needs special-use attributes")
        r.close_paren()
    return finish(Create(mailbox, uses), r)


def _one_mailbox(
    cls: type[Delete] | type[Subscribe] | type[Unsubscribe] | type[GetQuotaRoot],
) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        return finish(cls(read_mailbox(r, o)), r)

    return parse


def _rename(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    old = read_mailbox(r, o)
    r.sp()
    return finish(Rename(old, read_mailbox(r, o)), r)


def _pattern(r: Reader, o: ParseOptions) -> str:
    raw = r.list_mailbox()
    try:
        return decode_mailbox(raw, o.utf8)
    except ParseError:
        # A pattern is not a name: one that is not valid mUTF-7 simply matches nothing
        # that was named with valid mUTF-7 (as Dovecot does), so take it literally.
        return raw.decode("utf-8", "replace")


_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_RETURNS = frozenset({"CHILDREN", "SUBSCRIBED", "SPECIAL-USE", "STATUS", "METADATA"})
STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "RECENT",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
        "MAILBOXID",  # RFC 8474 §4.2
        "DELETED-STORAGE",  # RFC 9208 §4.2
    }
)


def _status_items(r: Reader) -> tuple[str, ...]:
    items = paren_keywords(r)
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"unknown STATUS item {item}")
    return tuple(items)


def _list(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    extended = False
    selection: frozenset[str] = frozenset()
    if r.peek() == 0x28:  # RFC 5258 §3 list-select-opts
        extended = True
        selection = frozenset(paren_keywords(r, allow_empty=True))
        if not selection <= _SELECTION:
            raise ParseError("unknown LIST selection option")
        if "RECURSIVEMATCH" in selection and selection <= {"RECURSIVEMATCH", "REMOTE"}:
            # RFC 5258 §3: RECURSIVEMATCH needs a selection option other than REMOTE
            raise ParseError("RECURSIVEMATCH needs another selection option")
        r.sp()
    reference = read_mailbox(r, o)
    r.sp()
    if r.peek() == 0x28:  # RFC 5258 §3: several patterns
        extended = True
        r.open_paren()
        patterns = [_pattern(r, o)]
        while r.take(b" "):
            patterns.append(_pattern(r, o))
        r.close_paren()
    else:
        patterns = [_pattern(r, o)]
    returns: frozenset[str] = frozenset()
    status: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    if r.take(b" "):
        extended = True
        if r.keyword() != "RETURN":
            raise ParseError("expected RETURN")
        r.sp()
        r.open_paren()
        opts: list[str] = []
        while r.peek() != 0x29:
            if opts:
                r.sp()
            opt = r.keyword()
            if opt not in _RETURNS or opt in opts:
                raise ParseError(f"invalid LIST return option {opt}")
            if opt == "STATUS":  # RFC 5819 §2
                r.sp()
                status = _status_items(r)
            elif opt == "METADATA":  # RFC 9590 §3
                r.sp()
                metadata = parse_entry_list(r)
            opts.append(opt)
        r.close_paren()
        returns = frozenset(opts)
    return finish(
        List(reference, tuple(patterns), selection, returns, status, extended, metadata), r
    )


def _lsub(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    reference = read_mailbox(r, o)
    r.sp()
    return finish(Lsub(reference, _pattern(r, o)), r)


def _status(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mailbox = read_mailbox(r, o)
    r.sp()
    return finish(Status(mailbox, _status_items(r)), r)


def _append(r: Reader, o: ParseOptions) -> Command:
    raise ParseError("APPEND needs a message literal")  # the connection streams real ones


def _uid_expunge(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    return finish(UidExpunge(r.sequence_set(max_ranges=o.max_ranges)), r)


def _store(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        seq = r.sequence_set(max_ranges=o.max_ranges)
        r.sp()
        unchanged: int | None = None
        if r.peek() == 0x28:  # RFC 7162 §3.1.3 store-modifier
            r.open_paren()
            if r.keyword() != "UNCHANGEDSINCE":
                raise ParseError("unknown STORE modifier")
            r.sp()
            unchanged = r.number(MAX_NUMBER64)
            r.close_paren()
            r.sp()
        mode: Literal["replace", "add", "remove"] = "replace"
        if r.take(b"+"):
            mode = "add"
        elif r.take(b"-"):
            mode = "remove"
        item = r.keyword()
        if item not in ("FLAGS", "FLAGS.SILENT"):
            raise ParseError("expected FLAGS or FLAGS.SILENT")
        r.sp()
        if r.peek() == 0x28:
            flags = flag_list(r)
        else:
            names = [read_flag(r)]
            while r.take(b" "):
                names.append(read_flag(r))
            flags = tuple(names)
        return finish(Store(uid, seq, mode, flags, item.endswith(".SILENT"), unchanged), r)

    return parse


def _copy_like(
    cls: type[Copy] | type[Move], uid: bool
) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        seq = r.sequence_set(max_ranges=o.max_ranges)
        r.sp()
        return finish(cls(uid, seq, read_mailbox(r, o)), r)

    return parse


def _id(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    if r.peek_keyword(b"NIL"):
        r.keyword()
        return finish(Id(None), r)
    r.open_paren()
    params: list[tuple[str, str | None]] = []
    while r.peek() != 0x29:
        if params:
            r.sp()
        key = utf8_text(r.string(), "ID field")
        r.sp()
        raw = r.nstring()
        value = None if raw is None else utf8_text(raw, "ID value")
        # RFC 2971 §3.3: fields <= 30 octets, values <= 1024, at most 30 pairs
        if len(key) > 30 or (value is not None and len(value) > 1024) or len(params) >= 30:
            raise ParseError("ID parameters too long or too many")
        params.append((key, value))
    r.close_paren()
    return finish(Id(tuple(params)), r)


def _compress(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mech = r.keyword()
    if mech != "DEFLATE":
        raise ParseError(f"unknown compression {mech}")  # RFC 4978 §3
    return finish(Compress(mech), r)


def _getquota(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    return finish(GetQuota(utf8_text(r.astring(), "quota root")), r)


def _setquota(r: Reader, o: ParseOptions) -> Command:
    """RFC 9208 §4.3: ``SETQUOTA root (resource limit ...)``, at most a few resources."""
    r.sp()
    root = utf8_text(r.astring(), "quota root")
    r.sp()
    r.expect(b"(")
    limits: list[tuple[str, int]] = []
    while not r.peek_is(b")"):
        if limits:
            r.sp()
        name = r.keyword()
        r.sp()
        limits.append((name, r.number(MAX_NUMBER64)))
        if len(limits) > 16:
            raise ParseError("too many quota resources")
    r.expect(b")")
    return finish(SetQuota(root, tuple(limits)), r)


PARSERS: dict[str, Callable[[Reader, ParseOptions], Command]] = {
    "CAPABILITY": nil_parser(Capability),
    "NOOP": nil_parser(Noop),
    "LOGOUT": nil_parser(Logout),
    "STARTTLS": nil_parser(StartTLS),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select_like(Select),
    "EXAMINE": _select_like(Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": nil_parser(Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "REPLACE": _append,  # RFC 8508: streamed like APPEND
    "UID REPLACE": _append,
    "IDLE": nil_parser(Idle),
    "CHECK": nil_parser(Check),
    "CLOSE": nil_parser(Close),
    "UNSELECT": nil_parser(Unselect),
    "EXPUNGE": nil_parser(Expunge),
    "UID EXPUNGE": _uid_expunge,
    "SEARCH": search_parser(False),
    "UID SEARCH": search_parser(True),
    "SORT": sort_parser(False),
    "UID SORT": sort_parser(True),
    "THREAD": thread_parser(False),
    "UID THREAD": thread_parser(True),
    "FETCH": fetch_parser(False),
    "UID FETCH": fetch_parser(True),
    "STORE": _store(False),
    "UID STORE": _store(True),
    "COPY": _copy_like(Copy, False),
    "UID COPY": _copy_like(Copy, True),
    "MOVE": _copy_like(Move, False),
    "UID MOVE": _copy_like(Move, True),
    "ID": _id,
    "COMPRESS": _compress,
    "UNAUTHENTICATE": nil_parser(Unauthenticate),
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(GetQuotaRoot),
    "SETQUOTA": _setquota,
}
COMMAND_NAMES = frozenset(PARSERS)

_HEAD = re.compile(rb'([^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+) ([A-Za-z]+)(?: ([A-Za-z]+))?')


def command_name(line: bytes) -> tuple[str, str] | None:
    """(tag, NAME) from the first line, NAME like ``"UID FETCH"``; None if no valid tag.

    NAME is "" when the tag is valid but no command name follows it.
    """
    m = _HEAD.match(line)
    if m is None:
        tag_end = line.find(b" ")
        head = line if tag_end < 0 else line[:tag_end]
        if head and re.fullmatch(rb'[^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+', head):
            return head.decode("ascii"), ""
        return None
    tag = m.group(1).decode("ascii")
    name = m.group(2).upper().decode("ascii")
    if name == "UID":
        sub = m.group(3)
        return tag, ("UID " + sub.upper().decode("ascii")) if sub else "UID"
    return tag, name


def _head(r: Reader) -> str:
    r.tag()
    r.sp()
    name = r.keyword()
    if name == "UID":
        r.sp()
        name = "UID " + r.keyword()
    return name


def parse_command(
    lines: Sequence[bytes],
    literals: Sequence[bytes],
    *,
    binary: Sequence[bool] = (),
    options: ParseOptions | None = None,
) -> Command:
    """Parse one complete command (tag and name included); ParseError on any defect."""
    o = options if options is not None else ParseOptions()
    r = Reader(lines, literals, binary=binary, max_depth=o.max_depth)
    name = _head(r)
    parser = PARSERS.get(name)
    if parser is None:
        raise ParseError(f"unknown command {name}", "CLIENTBUG")
    return parser(r, o)


def parse_append_message(r: Reader) -> tuple[tuple[str, ...], dt.datetime | None]:
    """``[SP flag-list] [SP date-time] SP`` up to a pending message literal (RFC 9051 §6.3.12).

    The reader is positioned right after the mailbox (or the previous message).
    """
    r.sp()
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None
    if r.peek() == 0x28:
        flags = flag_list(r)
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    if not r.literal_pending():
        raise ParseError("expected message literal")
    return flags, date


def parse_append_head(
    lines: Sequence[bytes], literals: Sequence[bytes], options: ParseOptions
) -> Append | None:
    """The APPEND head if the pending literal is the first message; None if it is the mailbox."""
    r = Reader(lines, literals, max_depth=options.max_depth)
    _head(r)
    r.sp()
    if r.literal_pending():
        return None
    mailbox = read_mailbox(r, options)
    flags, date = parse_append_message(r)
    return Append(mailbox, flags, date)
