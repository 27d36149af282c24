"""SEARCH programs: the key AST, its parser and a pure evaluator (RFC 9051 §6.4.4).

The evaluator knows nothing of storage: it asks a :class:`MessageView` for
flags, dates, sizes and header values, and delegates body/text matching to
the view, which can stream the message.  ``compile_program`` resolves
sequence sets once, so evaluating a large mailbox costs one closure call per
message.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal, Protocol

from correo.imap.errors import ParseError
from correo.imap.reader import MAX_NUMBER64, Reader
from correo.imap.sequence import SequenceSet

__all__ = [
    "AgeKey",
    "All",
    "And",
    "BodyKey",
    "DateKey",
    "FlagKey",
    "HeaderKey",
    "MessageView",
    "ModSeqKey",
    "Not",
    "ObjectIdKey",
    "Or",
    "SaveDateKey",
    "SearchKey",
    "SeqKey",
    "SizeKey",
    "TextKey",
    "compile_program",
    "evaluate",
    "parse_search_keys",
]


@dataclass(frozen=True, slots=True)
class All:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """ANSWERED/UNANSWERED… KEYWORD/UNKEYWORD, RECENT: flag present (or absent)."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """HEADER field value, and the FROM/TO/CC/BCC/SUBJECT shorthands."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class BodyKey:
    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE (internal date) and SENT* (Date: header), date only (RFC 9051 §6.4.4)."""

    relation: Literal["before", "on", "since"]
    date: dt.date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SizeKey:
    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SeqKey:
    """A bare sequence set (message numbers) or ``UID set``."""

    set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """MODSEQ [entry type] n (RFC 7162 §3.1.5): messages with modseq >= n."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class AgeKey:
    """OLDER/YOUNGER n (RFC 5032 §3): internal date more than / at most n seconds ago."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class SaveDateKey:
    """SAVEDBEFORE/SAVEDON/SAVEDSINCE (RFC 8514 §4.2): the day the message was saved."""

    relation: Literal["before", "on", "since"]
    date: dt.date


@dataclass(frozen=True, slots=True)
class ObjectIdKey:
    """EMAILID/THREADID objectid (RFC 8474 §6)."""

    kind: Literal["EMAILID", "THREADID"]
    value: str


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[SearchKey, ...]


SearchKey = (
    All
    | FlagKey
    | HeaderKey
    | BodyKey
    | TextKey
    | DateKey
    | SizeKey
    | SeqKey
    | ModSeqKey
    | AgeKey
    | ObjectIdKey
    | SaveDateKey
    | Not
    | Or
    | And
)

# ---- parser -----------------------------------------------------------------

_FLAG_KEYS: dict[str, SearchKey] = {
    "ALL": All(),
    "ANSWERED": FlagKey("\\Answered"),
    "DELETED": FlagKey("\\Deleted"),
    "DRAFT": FlagKey("\\Draft"),
    "FLAGGED": FlagKey("\\Flagged"),
    "SEEN": FlagKey("\\Seen"),
    "UNANSWERED": FlagKey("\\Answered", False),
    "UNDELETED": FlagKey("\\Deleted", False),
    "UNDRAFT": FlagKey("\\Draft", False),
    "UNFLAGGED": FlagKey("\\Flagged", False),
    "UNSEEN": FlagKey("\\Seen", False),
    # RFC 3501 §6.4.4 (removed in RFC 9051, still accepted from rev1 clients)
    "RECENT": FlagKey("\\Recent"),
    "OLD": FlagKey("\\Recent", False),
    "NEW": And((FlagKey("\\Recent"), FlagKey("\\Seen", False))),
}
_HEADER_SHORTHANDS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATES: dict[str, tuple[Literal["before", "on", "since"], bool]] = {
    "BEFORE": ("before", False),
    "ON": ("on", False),
    "SINCE": ("since", False),
    "SENTBEFORE": ("before", True),
    "SENTON": ("on", True),
    "SENTSINCE": ("since", True),
}


_OBJECTID = re.compile(rb"[A-Za-z0-9_-]+")

_SAVED: dict[str, Literal["before", "on", "since"]] = {
    "SAVEDBEFORE": "before",
    "SAVEDON": "on",
    "SAVEDSINCE": "since",
}
_FLAG_KEYS["SAVEDATESUPPORTED"] = All()  # RFC 8514 §4.2: every mailbox keeps save dates


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ParseError("too many search keys", "LIMIT")


def _text(r: Reader) -> str:
    raw = r.astring()
    try:
        return raw.decode("utf-8")  # US-ASCII and UTF-8 are the charsets we accept
    except UnicodeDecodeError as exc:
        raise ParseError("search string is not valid UTF-8") from exc


def _key(r: Reader, budget: _Budget) -> SearchKey:
    budget.spend()
    c = r.peek()
    if c == 0x28:  # "(" search-key *(SP search-key) ")"
        r.open_paren()
        keys = [_key(r, budget)]
        while r.take(b" "):
            keys.append(_key(r, budget))
        r.close_paren()
        return keys[0] if len(keys) == 1 else And(tuple(keys))
    if 0x30 <= c <= 0x39 or c in (0x2A, 0x24):  # digit, "*" or "$": sequence-set
        return SeqKey(r.sequence_set())
    name = r.keyword()
    fixed = _FLAG_KEYS.get(name)
    if fixed is not None:
        return fixed
    if name in _HEADER_SHORTHANDS:
        r.sp()
        return HeaderKey(_HEADER_SHORTHANDS[name], _text(r))
    if name in _DATES:
        relation, sent = _DATES[name]
        r.sp()
        return DateKey(relation, r.date(), sent)
    if name in _SAVED:  # RFC 8514 §4.2
        r.sp()
        return SaveDateKey(_SAVED[name], r.date())
    match name:
        case "BODY":
            r.sp()
            return BodyKey(_text(r))
        case "TEXT":
            r.sp()
            return TextKey(_text(r))
        case "HEADER":
            r.sp()
            field = _text(r)
            r.sp()
            return HeaderKey(field, _text(r))
        case "KEYWORD" | "UNKEYWORD":
            r.sp()
            flag = r.atom().decode("ascii")  # flag-keyword = atom (no backslash)
            return FlagKey(flag, name == "KEYWORD")
        case "LARGER" | "SMALLER":
            r.sp()
            return SizeKey(name == "LARGER", r.number(MAX_NUMBER64))  # RFC 9051: number64
        case "NOT":
            r.sp()
            r.enter()  # NOT/OR nest like parentheses: bound the recursion by max_depth
            inner = _key(r, budget)
            r.leave()
            return Not(inner)
        case "OR":
            r.sp()
            r.enter()
            left = _key(r, budget)
            r.sp()
            right = _key(r, budget)
            r.leave()
            return Or(left, right)
        case "UID":
            r.sp()
            return SeqKey(r.sequence_set(), uid=True)
        case "MODSEQ":
            return _modseq(r)
        case "OLDER" | "YOUNGER":
            r.sp()  # RFC 5032 §4: "OLDER" SP nz-number / "YOUNGER" SP nz-number
            return AgeKey(name == "OLDER", r.number(nonzero=True))
        case "EMAILID" | "THREADID":
            r.sp()  # RFC 8474 §6: "EMAILID" SP objectid (1*255 ALPHA / DIGIT / "_" / "-")
            value = r.atom()
            if len(value) > 255 or not _OBJECTID.fullmatch(value):
                raise ParseError("invalid objectid")
            kind: Literal["EMAILID", "THREADID"] = "EMAILID" if name == "EMAILID" else "THREADID"
            return ObjectIdKey(kind, value.decode("ascii"))
    raise ParseError(f"unknown search key {name}")


def _modseq(r: Reader) -> ModSeqKey:
    # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
    r.sp()
    if r.peek() == 0x22:
        entry = r.quoted().decode("ascii", "replace")
        r.sp()
        entry_type = r.keyword().lower()
        if entry_type not in ("priv", "shared", "all"):
            raise ParseError("invalid MODSEQ entry type")
        r.sp()
        return ModSeqKey(r.number(MAX_NUMBER64), entry, entry_type)
    return ModSeqKey(r.number(MAX_NUMBER64))


def parse_search_keys(r: Reader, *, max_keys: int = 1000) -> SearchKey:
    """``search-key *(SP search-key)`` up to the end of the command; several keys AND."""
    budget = _Budget(max_keys)
    keys = [_key(r, budget)]
    while r.take(b" "):
        keys.append(_key(r, budget))
    r.end()
    return keys[0] if len(keys) == 1 else And(tuple(keys))


# ---- evaluator ----------------------------------------------------------------


class MessageView(Protocol):
    """What the evaluator needs to know about one message."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> AbstractSet[str]: ...
    @property
    def internal_date(self) -> dt.datetime: ...
    @property
    def sent_date(self) -> dt.datetime | None: ...
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...

    def header(self, name: str) -> Sequence[str]:
        """Decoded values of every ``name`` field (RFC 2047 words decoded), in order."""
        ...

    def body_contains(self, needle: str) -> bool:
        """Case-insensitive substring in the decoded body (RFC 9051 §6.4.4 BODY)."""
        ...

    def text_contains(self, needle: str) -> bool:
        """Case-insensitive substring in header or body (RFC 9051 §6.4.4 TEXT)."""
        ...


Matcher = Callable[[MessageView], bool]


def _compare(relation: str, day: dt.date, target: dt.date) -> bool:
    if relation == "before":
        return day < target
    if relation == "on":
        return day == target
    return day >= target  # RFC 9051 §6.4.4 SINCE: "within or later than"


def _flag_matcher(flag: str, present: bool) -> Matcher:
    low = flag.lower()

    def match(v: MessageView) -> bool:
        # flags compare case-insensitively (RFC 9051 §2.3.2)
        has = flag in v.flags or any(f.lower() == low for f in v.flags)
        return has == present

    return match


def _header_matcher(field: str, value: str) -> Matcher:
    needle = value.casefold()

    def match(v: MessageView) -> bool:
        values = v.header(field)
        if not needle:
            return bool(values)  # RFC 9051 §6.4.4 HEADER with "" matches any such field
        return any(needle in h.casefold() for h in values)

    return match


def _date_matcher(key: DateKey) -> Matcher:
    rel, target = key.relation, key.date
    if key.sent:

        def sent(v: MessageView) -> bool:
            d = v.sent_date
            return d is not None and _compare(rel, d.date(), target)

        return sent
    return lambda v: _compare(rel, v.internal_date.date(), target)


def compile_program(
    key: SearchKey,
    *,
    max_seq: int,
    max_uid: int,
    saved: AbstractSet[int] | None = None,
    now: float | None = None,
    ids: Mapping[int, tuple[str, str]] | None = None,
    save_dates: Mapping[int, dt.date] | None = None,
) -> Matcher:
    """Turn the AST into one predicate; ``saved`` is the SEARCHRES result as UIDs (RFC 5182).

    ``now`` is the time OLDER/YOUNGER count back from (RFC 5032); ``ids`` maps a UID to
    its (EMAILID, THREADID) for the OBJECTID keys (RFC 8474 §6); ``save_dates`` its
    save day for SAVED* (RFC 8514), the INTERNALDATE's day standing in for a message
    saved before save dates were kept.
    """
    clock = time.time() if now is None else now
    known = ids if ids is not None else {}
    days = save_dates if save_dates is not None else {}

    def build(k: SearchKey) -> Matcher:
        match k:
            case All():
                return lambda v: True
            case FlagKey(flag, present):
                return _flag_matcher(flag, present)
            case HeaderKey(field, value):
                return _header_matcher(field, value)
            case BodyKey(value):
                return lambda v: v.body_contains(value)
            case TextKey(value):
                return lambda v: v.text_contains(value)
            case DateKey():
                return _date_matcher(k)
            case SizeKey(larger, size):
                if larger:
                    return lambda v: v.size > size
                return lambda v: v.size < size
            case SeqKey(seqset, uid):
                if seqset.saved:
                    uids = saved if saved is not None else frozenset()
                    return lambda v: v.uid in uids
                test = seqset.matcher(max_uid if uid else max_seq)
                if uid:
                    return lambda v: test(v.uid)
                return lambda v: test(v.seq)
            case ModSeqKey(modseq):
                return lambda v: v.modseq >= modseq
            case AgeKey(older, seconds):
                edge = clock - seconds
                if older:  # RFC 5032 §3: OLDER is "older than", YOUNGER "within"
                    return lambda v: v.internal_date.timestamp() < edge
                return lambda v: v.internal_date.timestamp() >= edge
            case SaveDateKey(relation, day):
                rel, target = relation, day

                def saved_on(v: MessageView) -> bool:
                    d = days.get(v.uid)
                    return _compare(rel, v.internal_date.date() if d is None else d, target)

                return saved_on
            case ObjectIdKey(kind, value):
                index = 0 if kind == "EMAILID" else 1
                return lambda v: v.uid in known and known[v.uid][index] == value
            case Not(inner):
                m = build(inner)
                return lambda v: not m(v)
            case Or(left, right):
                a, b = build(left), build(right)
                return lambda v: a(v) or b(v)
            case And(keys):
                # cheap keys first: body/text scans only when everything else matched
                ordered = sorted(keys, key=lambda x: isinstance(x, BodyKey | TextKey))
                parts = [build(x) for x in ordered]
                return lambda v: all(p(v) for p in parts)
        raise AssertionError(f"unknown key {k!r}")  # pragma: no cover

    return build(key)


def evaluate(
    key: SearchKey,
    view: MessageView,
    *,
    max_seq: int,
    max_uid: int,
    saved: AbstractSet[int] | None = None,
) -> bool:
    """Whether one message matches; use compile_program for many messages."""
    return compile_program(key, max_seq=max_seq, max_uid=max_uid, saved=saved)(view)
