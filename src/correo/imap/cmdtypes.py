"""The IMAP commands as frozen dataclasses (RFC 9051 §6), and the options that shape parsing.

Class names follow the IMAP command names (``Fetch`` for FETCH and UID FETCH, with
``uid=True``); :mod:`correo.imap.commands` parses them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from correo.imap.search import SearchKey
from correo.imap.sequence import SequenceSet


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
    metadata: tuple[str, ...] = ()  # RFC 9590 RETURN (METADATA (...)): entry names


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
    replace: SequenceSet | None = None  # REPLACE (RFC 8508): the message it replaces
    uid: bool = False  # UID REPLACE


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
            out += " (" + " ".join(astring_out(f) for f in self.fields) + ")"
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
class Unauthenticate:
    """UNAUTHENTICATE (RFC 8437 §3)."""


@dataclass(frozen=True, slots=True)
class GetQuota:
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    """SETQUOTA (RFC 9208 §4.3): resource names (upper case) with their limits."""

    root: str
    limits: tuple[tuple[str, int], ...]


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
    | Unauthenticate
    | GetQuota
    | GetQuotaRoot
    | SetQuota
)


_SAFE_ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~\[]+")


def astring_out(s: str) -> str:
    if _SAFE_ATOM.fullmatch(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
