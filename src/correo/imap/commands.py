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
from dataclasses import dataclass
from typing import Literal

from correo.imap.errors import ParseError
from correo.imap.reader import MAX_NUMBER64, Reader
from correo.imap.returnopts import Returns, parse_returns
from correo.imap.search import SearchKey, parse_search_keys
from correo.imap.sequence import SequenceSet
from correo.imap.utf7 import decode_mutf7

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
    "Sort",
    "SortCriterion",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "UidExpunge",
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


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """Session facts and limits that change how a command is parsed."""

    utf8: bool = False  # IMAP4rev2 or UTF8=ACCEPT enabled: mailbox names are UTF-8
    max_ranges: int = 10_000
    max_search_keys: int = 1000
    max_depth: int = 32


# ---- the commands -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capability:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Authenticate:
    """``initial`` is the decoded SASL-IR (RFC 4959); b"" for "=", None if absent."""

    mechanism: str
    initial: bytes | None = None

    def __repr__(self) -> str:
        shown = None if self.initial is None else f"<{len(self.initial)} bytes>"
        return f"Authenticate(mechanism={self.mechanism!r}, initial={shown})"


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Login(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Qresync:
    """QRESYNC select parameter (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: str
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True, slots=True)
class Examine:
    mailbox: str
    condstore: bool = False
    qresync: Qresync | None = None


@dataclass(frozen=True, slots=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 §3 USE (...)


@dataclass(frozen=True, slots=True)
class Delete:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST, extended per RFC 5258; ``extended`` is True if any extended syntax was used."""

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    return_options: frozenset[str] = frozenset()  # CHILDREN SUBSCRIBED SPECIAL-USE STATUS
    status_items: tuple[str, ...] = ()  # RFC 5819 RETURN (STATUS (...))
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Append:
    """The head of one APPEND message; the octets stream as AppendChunk events."""

    mailbox: str
    flags: tuple[str, ...] = ()
    date: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Idle:
    pass


@dataclass(frozen=True, slots=True)
class Check:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Unselect:
    pass


@dataclass(frozen=True, slots=True)
class Expunge:
    pass


@dataclass(frozen=True, slots=True)
class UidExpunge:
    uids: SequenceSet


@dataclass(frozen=True, slots=True)
class Search:
    """``return_options`` None: plain SEARCH reply; a tuple: ESEARCH (empty = ALL)."""

    uid: bool
    criteria: SearchKey
    charset: str | None = None
    return_options: tuple[str, ...] | None = None
    partial: tuple[int, int] | None = None  # RFC 5267 §4.4 PARTIAL low:high
    update_fetch: tuple[FetchAtt, ...] = ()  # RFC 5465 §7 UPDATE (fetch-att ...)


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    uid: bool
    criteria: tuple[SortCriterion, ...]
    charset: str
    search: SearchKey
    return_options: tuple[str, ...] | None = None  # RFC 5267 ESORT
    partial: tuple[int, int] | None = None  # RFC 5267 §4.4 PARTIAL low:high
    update_fetch: tuple[FetchAtt, ...] = ()  # RFC 5465 §7 UPDATE (fetch-att ...)


@dataclass(frozen=True, slots=True)
class Thread:
    uid: bool
    algorithm: str  # ORDEREDSUBJECT / REFERENCES (RFC 5256 §3)
    charset: str
    search: SearchKey


@dataclass(frozen=True, slots=True)
class Section:
    """BODY[...] / BINARY[...] section (RFC 9051 §6.4.5)."""

    part: tuple[int, ...] = ()
    text: str | None = None  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()

    def spec(self) -> str:
        out = ".".join(map(str, self.part))
        if self.text is not None:
            out = f"{out}.{self.text}" if out else self.text
        if self.fields:
            out += " (" + " ".join(_astring_out(f) for f in self.fields) + ")"
        return out


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One FETCH item. ``name`` is the item without section/partial: BODY with a
    section is BODY[...]; BODY without one is the non-extensible BODYSTRUCTURE."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (origin, octet count)
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """RFC 9051 §6.4.5: BODY[] / BINARY[] / RFC822 / RFC822.TEXT set \\Seen."""
        if self.name in ("RFC822", "RFC822.TEXT"):
            return True
        return self.name in ("BODY", "BINARY") and self.section is not None and not self.peek

    def response_name(self) -> bytes:
        """The item name as it appears in the FETCH response (PEEK dropped, origin only)."""
        out = self.name
        if self.section is not None:
            out += f"[{self.section.spec()}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"  # RFC 9051 §7.5.2: only the origin is echoed
        return out.encode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Fetch:
    uid: bool
    sequence: SequenceSet
    items: tuple[FetchAtt, ...]
    changedsince: int | None = None  # RFC 7162 §3.1.4.1
    vanished: bool = False  # RFC 7162 §3.2.6


@dataclass(frozen=True, slots=True)
class Store:
    uid: bool
    sequence: SequenceSet
    mode: Literal["replace", "add", "remove"]
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None  # RFC 7162 §3.1.3


@dataclass(frozen=True, slots=True)
class Copy:
    uid: bool
    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Move:
    uid: bool
    sequence: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Id:
    """RFC 2971: None for ``ID NIL``."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Compress:
    mechanism: str  # only DEFLATE exists (RFC 4978 §3)


@dataclass(frozen=True, slots=True)
class GetQuota:
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    mailbox: str


Command = (
    Capability
    | Noop
    | Logout
    | StartTLS
    | Authenticate
    | Login
    | Enable
    | Select
    | Examine
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Idle
    | Check
    | Close
    | Unselect
    | Expunge
    | UidExpunge
    | Search
    | Sort
    | Thread
    | Fetch
    | Store
    | Copy
    | Move
    | Id
    | Compress
    | GetQuota
    | GetQuotaRoot
)

# ---- shared pieces --------------------------------------------------------------

_SAFE_ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~\[]+")


def _astring_out(s: str) -> str:
    if _SAFE_ATOM.fullmatch(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def _mailbox(r: Reader, o: ParseOptions) -> str:
    return decode_mailbox(r.astring(), o.utf8)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{what} is not valid UTF-8") from exc


def _paren_keywords(r: Reader, *, allow_empty: bool = False) -> list[str]:
    r.open_paren()
    out: list[str] = []
    if r.peek() != 0x29 or not allow_empty:
        out.append(r.keyword())
        while r.take(b" "):
            out.append(r.keyword())
    r.close_paren()
    return out


def _flag_list(r: Reader) -> tuple[str, ...]:
    # RFC 9051 §9 flag-list = "(" [flag *(SP flag)] ")"
    r.open_paren()
    flags: list[str] = []
    if r.peek() != 0x29:
        flags.append(_flag(r))
        while r.take(b" "):
            flags.append(_flag(r))
    r.close_paren()
    return tuple(flags)


def _flag(r: Reader) -> str:
    flag = r.flag()
    if flag.startswith("\\") and flag[1:].upper() == "RECENT":
        raise ParseError("\\Recent cannot be set by the client")  # RFC 3501 §2.3.2
    return flag


def _done(command: Command, r: Reader) -> Command:
    r.end()
    return command


def _nil(cls: Callable[[], Command]) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        return _done(cls(), r)

    return parse


# ---- per-command parsers -----------------------------------------------------


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
    return _done(Authenticate(mech, initial), r)


def _login(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    user = _utf8(r.astring(), "user name")
    r.sp()
    password = _utf8(r.astring(), "password")
    return _done(Login(user, password), r)


def _enable(r: Reader, o: ParseOptions) -> Command:
    caps: list[str] = []
    r.sp()
    caps.append(r.keyword())
    while r.take(b" "):
        caps.append(r.keyword())
    return _done(Enable(tuple(caps)), r)


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
        mailbox = _mailbox(r, o)
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
        return _done(cls(mailbox, condstore, qresync), r)

    return parse


def _create(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mailbox = _mailbox(r, o)
    uses: tuple[str, ...] = ()
    if r.take(b" "):  # RFC 4466 create-params; RFC 6154 §3 USE
        r.open_paren()
        if r.keyword() != "USE":
            raise ParseError("unknown CREATE parameter")
        r.sp()
        uses = _flag_list(r)
        if not uses or not all(u.startswith("\\") for u in uses):
            raise ParseError("USE needs special-use attributes")
        r.close_paren()
    return _done(Create(mailbox, uses), r)


def _one_mailbox(
    cls: type[Delete] | type[Subscribe] | type[Unsubscribe] | type[GetQuotaRoot],
) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        return _done(cls(_mailbox(r, o)), r)

    return parse


def _rename(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    old = _mailbox(r, o)
    r.sp()
    return _done(Rename(old, _mailbox(r, o)), r)


def _pattern(r: Reader, o: ParseOptions) -> str:
    raw = r.list_mailbox()
    try:
        return decode_mailbox(raw, o.utf8)
    except ParseError:
        # A pattern is not a name: one that is not valid mUTF-7 simply matches nothing
        # that was named with valid mUTF-7 (as Dovecot does), so take it literally.
        return raw.decode("utf-8", "replace")


_SELECTION = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
_RETURNS = frozenset({"CHILDREN", "SUBSCRIBED", "SPECIAL-USE", "STATUS"})
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
    }
)


def _status_items(r: Reader) -> tuple[str, ...]:
    items = _paren_keywords(r)
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
        selection = frozenset(_paren_keywords(r, allow_empty=True))
        if not selection <= _SELECTION:
            raise ParseError("unknown LIST selection option")
        if "RECURSIVEMATCH" in selection and selection <= {"RECURSIVEMATCH", "REMOTE"}:
            # RFC 5258 §3: RECURSIVEMATCH needs a selection option other than REMOTE
            raise ParseError("RECURSIVEMATCH needs another selection option")
        r.sp()
    reference = _mailbox(r, o)
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
            opts.append(opt)
        r.close_paren()
        returns = frozenset(opts)
    return _done(List(reference, tuple(patterns), selection, returns, status, extended), r)


def _lsub(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    reference = _mailbox(r, o)
    r.sp()
    return _done(Lsub(reference, _pattern(r, o)), r)


def _status(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mailbox = _mailbox(r, o)
    r.sp()
    return _done(Status(mailbox, _status_items(r)), r)


def _append(r: Reader, o: ParseOptions) -> Command:
    raise ParseError("APPEND needs a message literal")  # the connection streams real ones


def _uid_expunge(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    return _done(UidExpunge(r.sequence_set(max_ranges=o.max_ranges)), r)


def _return_opts(r: Reader) -> Returns:
    # RFC 9051 §6.4.4 / RFC 4731 §3 / RFC 5267 §5: "RETURN" SP "(" [opt *(SP opt)] ")"
    return parse_returns(r, fetch_att_list)


def fetch_att_list(r: Reader) -> tuple[FetchAtt, ...]:
    """``"(" fetch-att *(SP fetch-att) ")"`` (RFC 5465 §7 UPDATE, §8 MessageNew)."""
    r.open_paren()
    items = _fetch_att(r)
    while r.take(b" "):
        items += _fetch_att(r)
    r.close_paren()
    return tuple(dict.fromkeys(items))


def _charset(r: Reader) -> str:
    name = r.astring().decode("ascii", "replace").upper()
    if name not in ("UTF-8", "US-ASCII"):
        # RFC 9051 §6.4.4: unsupported charset is NO [BADCHARSET (...)]
        raise ParseError(f"unsupported charset {name}", "BADCHARSET (UTF-8 US-ASCII)", "NO")
    return name


def _search(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        returns: Returns | None = None
        if r.peek_keyword(b"RETURN"):
            r.keyword()
            returns = _return_opts(r)
            r.sp()
        charset: str | None = None
        if r.peek_keyword(b"CHARSET"):
            r.keyword()
            r.sp()
            charset = _charset(r)
            r.sp()
        criteria = parse_search_keys(r, max_keys=o.max_search_keys)
        if returns is None:
            return Search(uid, criteria, charset)
        return Search(
            uid, criteria, charset, returns.options, returns.partial, returns.update_fetch
        )

    return parse


_SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


def _sort(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        returns: Returns | None = None
        if r.peek_keyword(b"RETURN"):  # RFC 5267 §3 ESORT
            r.keyword()
            returns = _return_opts(r)
            r.sp()
        words = _paren_keywords(r)
        criteria: list[SortCriterion] = []
        reverse = False
        for word in words:  # RFC 5256 §3: ["REVERSE" SP] sort-key
            if word == "REVERSE" and not reverse:
                reverse = True
                continue
            if word not in _SORT_KEYS:
                raise ParseError(f"invalid sort criterion {word}")
            criteria.append(SortCriterion(word, reverse))
            reverse = False
        if reverse:
            raise ParseError("REVERSE without sort key")
        r.sp()
        charset = _charset(r)
        r.sp()
        program = parse_search_keys(r, max_keys=o.max_search_keys)
        if returns is None:
            return Sort(uid, tuple(criteria), charset, program)
        return Sort(
            uid,
            tuple(criteria),
            charset,
            program,
            returns.options,
            returns.partial,
            returns.update_fetch,
        )

    return parse


def _thread(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        algorithm = r.keyword()
        if algorithm not in ("ORDEREDSUBJECT", "REFERENCES"):
            raise ParseError(f"unsupported THREAD algorithm {algorithm}", "CANNOT", "NO")
        r.sp()
        charset = _charset(r)
        r.sp()
        program = parse_search_keys(r, max_keys=o.max_search_keys)
        return Thread(uid, algorithm, charset, program)

    return parse


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
        names = [_utf8(r.astring(), "header name")]
        while r.take(b" "):
            names.append(_utf8(r.astring(), "header name"))
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
    uid = m.group(2) is not None
    known = _FETCH_TAILS.get((uid, m.group(4)))
    if known is None:
        return None
    try:
        seq = SequenceSet.parse(m.group(3), max_ranges=options.max_ranges)
    except ParseError:
        return None
    return m.group(1).decode("ascii"), Fetch(uid, seq, *known)


def _fetch(uid: bool) -> Callable[[Reader, ParseOptions], Command]:
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
            flags = _flag_list(r)
        else:
            names = [_flag(r)]
            while r.take(b" "):
                names.append(_flag(r))
            flags = tuple(names)
        return _done(Store(uid, seq, mode, flags, item.endswith(".SILENT"), unchanged), r)

    return parse


def _copy_like(
    cls: type[Copy] | type[Move], uid: bool
) -> Callable[[Reader, ParseOptions], Command]:
    def parse(r: Reader, o: ParseOptions) -> Command:
        r.sp()
        seq = r.sequence_set(max_ranges=o.max_ranges)
        r.sp()
        return _done(cls(uid, seq, _mailbox(r, o)), r)

    return parse


def _id(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    if r.peek_keyword(b"NIL"):
        r.keyword()
        return _done(Id(None), r)
    r.open_paren()
    params: list[tuple[str, str | None]] = []
    while r.peek() != 0x29:
        if params:
            r.sp()
        key = _utf8(r.string(), "ID field")
        r.sp()
        raw = r.nstring()
        value = None if raw is None else _utf8(raw, "ID value")
        # RFC 2971 §3.3: fields <= 30 octets, values <= 1024, at most 30 pairs
        if len(key) > 30 or (value is not None and len(value) > 1024) or len(params) >= 30:
            raise ParseError("ID parameters too long or too many")
        params.append((key, value))
    r.close_paren()
    return _done(Id(tuple(params)), r)


def _compress(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    mech = r.keyword()
    if mech != "DEFLATE":
        raise ParseError(f"unknown compression {mech}")  # RFC 4978 §3
    return _done(Compress(mech), r)


def _getquota(r: Reader, o: ParseOptions) -> Command:
    r.sp()
    return _done(GetQuota(_utf8(r.astring(), "quota root")), r)


PARSERS: dict[str, Callable[[Reader, ParseOptions], Command]] = {
    "CAPABILITY": _nil(Capability),
    "NOOP": _nil(Noop),
    "LOGOUT": _nil(Logout),
    "STARTTLS": _nil(StartTLS),
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
    "NAMESPACE": _nil(Namespace),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _nil(Idle),
    "CHECK": _nil(Check),
    "CLOSE": _nil(Close),
    "UNSELECT": _nil(Unselect),
    "EXPUNGE": _nil(Expunge),
    "UID EXPUNGE": _uid_expunge,
    "SEARCH": _search(False),
    "UID SEARCH": _search(True),
    "SORT": _sort(False),
    "UID SORT": _sort(True),
    "THREAD": _thread(False),
    "UID THREAD": _thread(True),
    "FETCH": _fetch(False),
    "UID FETCH": _fetch(True),
    "STORE": _store(False),
    "UID STORE": _store(True),
    "COPY": _copy_like(Copy, False),
    "UID COPY": _copy_like(Copy, True),
    "MOVE": _copy_like(Move, False),
    "UID MOVE": _copy_like(Move, True),
    "ID": _id,
    "COMPRESS": _compress,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _one_mailbox(GetQuotaRoot),
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
        flags = _flag_list(r)
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
    mailbox = _mailbox(r, options)
    flags, date = parse_append_message(r)
    return Append(mailbox, flags, date)
