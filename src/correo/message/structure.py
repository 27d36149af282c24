"""The stored shape of a message: MIME tree with absolute byte offsets, computed once.

IMAP FETCH must never reparse a message, so delivery runs :class:`StructureBuilder` over
the bytes as they stream past and stores the resulting :class:`Part` as JSON.  The
builder keeps only the header section of the part being read, the boundary stack and a
partial line; bodies are counted (bytes, LFs) and forgotten, so a 100 MB attachment
costs no memory.  Every input is accepted: problems become ``defects``, never exceptions.

Offsets: ``header_start`` is the first header byte, ``header_end`` the first body byte
(after the blank line), ``body_end`` the end of the body; the CRLF before a boundary
delimiter belongs to the delimiter (RFC 2046 §5.1.1), not to the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .mime import (
    Address,
    Params,
    parse_address_list,
    parse_content_type,
    parse_disposition,
    parse_language,
    split_header_fields,
    unfold,
)

__all__ = [
    "Envelope",
    "Limits",
    "Part",
    "StructureBuilder",
    "parse_structure",
    "shift_tree",
]

_TEXT_PLAIN: Params = (("charset", "us-ascii"),)
_IDENTITY_CTE = frozenset({"", "7bit", "8bit", "binary"})
_ENCAPSULATED = frozenset({"rfc822", "global"})  # RFC 9051 §7.5.2 media-message
_ENVELOPE_FIELDS = frozenset(
    {
        "date",
        "subject",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "in-reply-to",
        "message-id",
    }
)
_ADDRESS_FIELDS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc"})
_MIME_FIELDS = frozenset(
    {
        "content-type",
        "content-id",
        "content-description",
        "content-transfer-encoding",
        "content-disposition",
        "content-language",
        "content-location",
        "content-md5",
    }
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep hostile input cheap; each excess is recorded as a defect.

    ``max_depth`` 50 nested multiparts/messages is far beyond real mail (MUAs rarely go
    past 5); ``max_parts`` 1,000 caps the stored tree: every step that walks a tree
    (facts, the text index, loading it for FETCH or SEARCH) costs the event loop some
    10-30 µs a part, so 1,000 keeps each under 50 ms where 10,000 took 100-200 ms;
    ``max_header`` 256 KiB per part
    matches the SMTP header collector; ``max_boundary_line`` bounds the partial line held
    while deciding whether a line is a delimiter (boundaries are at most 70 chars,
    RFC 2046 §5.1.1, plus transport padding).
    """

    max_depth: int = 50
    max_parts: int = 1_000
    max_header: int = 256 * 1024
    max_boundary_line: int = 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """RFC 9051 §7.5.2 ENVELOPE fields: raw, unfolded values; None when absent."""

    date: str | None = None
    subject: str | None = None
    from_: tuple[Address, ...] | None = None
    sender: tuple[Address, ...] | None = None
    reply_to: tuple[Address, ...] | None = None
    to: tuple[Address, ...] | None = None
    cc: tuple[Address, ...] | None = None
    bcc: tuple[Address, ...] | None = None
    in_reply_to: str | None = None
    message_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = [[a.name, a.adl, a.mailbox, a.host] for a in value]
            out[name] = value
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Envelope:
        kw: dict[str, Any] = {}
        for name, value in obj.items():
            if isinstance(value, list):
                value = tuple(Address(*a) for a in value)
            kw[name] = value
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity.  ``type``/``subtype`` and parameters keep the case as sent."""

    header_start: int
    header_end: int
    body_end: int
    type: str = "text"
    subtype: str = "plain"
    params: Params = _TEXT_PLAIN
    id: str | None = None
    description: str | None = None
    encoding: str | None = None
    disposition: str | None = None
    disposition_params: Params = ()
    language: tuple[str, ...] | None = None
    location: str | None = None
    md5: str | None = None
    body_lines: int = 0
    children: tuple[Part, ...] = ()
    message: Part | None = None
    envelope: Envelope | None = None
    defects: tuple[str, ...] = ()

    @property
    def media_type(self) -> str:
        """``type/subtype`` lowercased, for comparisons."""
        return f"{self.type}/{self.subtype}".lower()

    @property
    def is_multipart(self) -> bool:
        return self.type.lower() == "multipart"

    @property
    def body_size(self) -> int:
        return self.body_end - self.header_end

    def param(self, name: str) -> str | None:
        """Raw parameter value (case-insensitive name)."""
        want = name.lower()
        return next((v for k, v in self.params if k.lower() == want), None)

    def walk(self) -> list[Part]:
        """This part and every descendant (including encapsulated messages), pre-order."""
        out: list[Part] = []
        stack: list[Part] = [self]
        while stack:
            p = stack.pop()
            out.append(p)
            if p.message is not None:
                stack.append(p.message)
            stack.extend(reversed(p.children))
        return out

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-serialisable dict; defaults are omitted."""
        out: dict[str, Any] = {"o": [self.header_start, self.header_end, self.body_end]}
        if (self.type, self.subtype) != ("text", "plain"):
            out["t"] = [self.type, self.subtype]
        if self.params != _TEXT_PLAIN:
            out["p"] = [list(kv) for kv in self.params]
        for key, val in (
            ("id", self.id),
            ("description", self.description),
            ("encoding", self.encoding),
            ("disposition", self.disposition),
            ("location", self.location),
            ("md5", self.md5),
        ):
            if val is not None:
                out[key] = val
        if self.disposition_params:
            out["dp"] = [list(kv) for kv in self.disposition_params]
        if self.language is not None:
            out["language"] = list(self.language)
        if self.body_lines:
            out["lines"] = self.body_lines
        if self.children:
            out["children"] = [c.to_json() for c in self.children]
        if self.message is not None:
            out["message"] = self.message.to_json()
        if self.envelope is not None:
            out["envelope"] = self.envelope.to_json()
        if self.defects:
            out["defects"] = list(self.defects)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Part:
        hs, he, be = obj["o"]
        typ, sub = obj.get("t", ("text", "plain"))
        return cls(
            header_start=hs,
            header_end=he,
            body_end=be,
            type=typ,
            subtype=sub,
            params=tuple((k, v) for k, v in obj["p"]) if "p" in obj else _TEXT_PLAIN,
            id=obj.get("id"),
            description=obj.get("description"),
            encoding=obj.get("encoding"),
            disposition=obj.get("disposition"),
            disposition_params=tuple((k, v) for k, v in obj.get("dp", ())),
            language=tuple(obj["language"]) if "language" in obj else None,
            location=obj.get("location"),
            md5=obj.get("md5"),
            body_lines=obj.get("lines", 0),
            children=tuple(cls.from_json(c) for c in obj.get("children", ())),
            message=cls.from_json(obj["message"]) if "message" in obj else None,
            envelope=Envelope.from_json(obj["envelope"]) if "envelope" in obj else None,
            defects=tuple(obj.get("defects", ())),
        )


@dataclass(slots=True)
class _Node:
    """Mutable part under construction."""

    header_start: int
    is_message: bool  # top level or encapsulated: carries an envelope
    default_type: tuple[str, str] = ("text", "plain")
    depth: int = 0
    header: bytearray = field(default_factory=bytearray)
    header_end: int = -1
    body_end: int = -1
    lines_at_body: int = 0
    body_lines: int = 0
    fields: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    ctype: tuple[str, str, Params] | None = None
    delimiter: bytes | None = None  # b"--" + boundary while the multipart is open
    closed: bool = False  # close-delimiter seen
    children: list[_Node] = field(default_factory=list)
    message: _Node | None = None
    defects: list[str] = field(default_factory=list)


_HEADER, _BODY = 0, 1


class StructureBuilder:
    """Incremental MIME structure parser: ``feed()`` chunks, then ``finish()``.

    Memory held: the current part's header (bounded by ``Limits.max_header``), one
    partial line (bounded by ``Limits.max_boundary_line`` when it could be a delimiter),
    and the small per-part records.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        self._p = 0  # processing point within _buf
        self._scanned = 0  # absolute offset up to which the header line at _p has no LF
        self._nl = 0  # LFs in the message before _nl_pos
        self._nl_pos = 0
        self._root = _Node(0, True)
        self._stack: list[_Node] = [self._root]
        self._mode = _HEADER
        self._delims: list[tuple[bytes, _Node]] = []
        self._parts = 1
        self.header_octets = 0  # header lines kept, all parts: what finish() parses
        self._header_overflow = False
        self._first_line = True
        self._done: Part | None = None

    # --- public ----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Consume the next chunk of the message."""
        if self._done is not None or not data:
            return
        self._buf += data
        self._run(final=False)
        keep = max(0, self._p - 2)  # two bytes back: the CRLF before a delimiter
        if keep:
            self._count_to(self._base + keep)
            del self._buf[:keep]
            self._base += keep
            self._p -= keep

    def finish(self) -> Part:
        """End of message: close every open part at the end and return the tree."""
        if self._done is None:
            self._run(final=True)
            end = self._base + len(self._buf)
            for node in reversed(self._stack):
                if node.delimiter is not None and not node.closed:
                    node.defects.append("unclosed-multipart")
                self._close(node, end, end)
            self._stack.clear()
            self._done = self._freeze(self._root)
            self._buf = bytearray()
        return self._done

    @property
    def parts(self) -> int:
        """Parts found so far (the message itself is the first)."""
        return self._parts

    # --- scanning ----------------------------------------------------------------------

    def _count_to(self, pos: int) -> int:
        """LFs in the message before absolute ``pos`` (queries are non-decreasing)."""
        if pos > self._nl_pos:
            b = self._base
            self._nl += self._buf.count(b"\n", self._nl_pos - b, pos - b)
            self._nl_pos = pos
        return self._nl

    def _run(self, final: bool) -> None:
        while True:
            progressed = self._header(final) if self._mode == _HEADER else self._body(final)
            if not progressed:
                return

    def _header(self, final: bool) -> bool:
        """Read header lines of the top node; True when the mode changed."""
        buf = self._buf
        node = self._stack[-1]
        while True:
            p = self._p
            # a line arriving in small pieces is searched once, not from its start each time
            e = buf.find(b"\n", max(p, self._scanned - self._base))
            if e < 0:
                self._scanned = self._base + len(buf)
                if final and p < len(buf):
                    e = len(buf) - 1  # RFC 5322 §2.1 allows a message of headers only
                elif len(buf) - p > self.limits.max_header:
                    self._header_overflow = True
                    self._p = len(buf)  # a never-ending line: count it, keep nothing
                    return False
                else:
                    return False
            line = bytes(buf[p : e + 1])
            if self._header_overflow:  # tail of an overlong line
                self._header_overflow = False
                self._p = e + 1
                continue
            if line in (b"\r\n", b"\n"):
                self._end_header(node, self._base + e + 1)
                self._p = e + 1
                return True
            if line.startswith(b"--") and self._delimiter(p, e + 1, line):
                return True
            if line[:1] in (b" ", b"\t") or self._is_field(line):
                if len(node.header) + len(line) <= self.limits.max_header:
                    node.header += line
                    self.header_octets += len(line)
                elif "header-too-long" not in node.defects:
                    node.defects.append("header-too-long")
            elif self._first_line and line.startswith(b"From "):
                pass  # an mbox separator line: junk, not the body
            else:  # a line without a colon: still header up to the blank line, as Dovecot
                if "header-line-without-colon" not in node.defects:  # reads it (no field)
                    node.defects.append("header-line-without-colon")
                if len(node.header) + len(line) <= self.limits.max_header:
                    node.header += line
                    self.header_octets += len(line)
            self._first_line = False
            self._p = e + 1

    @staticmethod
    def _is_field(line: bytes) -> bool:
        colon = line.find(b":")
        # RFC 5322 §2.2: field-name is printable US-ASCII except colon, no spaces
        return colon > 0 and line[:colon].rstrip(b" \t").find(b" ") < 0

    def _body(self, final: bool) -> bool:
        """Scan body bytes for delimiter lines; True when the mode changed."""
        buf = self._buf
        n = len(buf)
        if not self._delims:
            self._p = n
            return False
        limit = self.limits.max_boundary_line
        while True:
            p = self._p
            if (p == 0 and self._base == 0) or (p > 0 and buf[p - 1] == 10):
                s = p if buf.startswith(b"--", p) else -1
                if s < 0 and p + 2 > n and not final:
                    return False  # need two bytes to know
            else:
                s = -1
            if s < 0:
                j = buf.find(b"\n--", p)
                if j < 0:
                    self._p = max(p, n - 2) if not final else n
                    return False
                s = j + 1
            e = buf.find(b"\n", s)
            if e < 0:
                if final:
                    e = n
                elif n - s > limit:
                    self._p = n  # too long to be a delimiter
                    return False
                else:
                    self._p = s
                    return False
            elif e - s > limit:
                self._p = e
                continue
            if self._delimiter(s, e + 1, bytes(buf[s:e])):
                return True
            self._p = e

    def _delimiter(self, s: int, after: int, line: bytes) -> bool:
        """If ``line`` (at buffer index ``s``) delimits an open multipart, act on it."""
        # RFC 2046 §5.1.1: "an exact match of the entire candidate line is not required; it
        # is sufficient that the boundary appear in its entirety following the CRLF" (so
        # `--b-- trailing` closes, as in Dovecot); the innermost multipart is tried first,
        # so a nested boundary that extends its parent's is the child's.
        for delim, mp in self._delims:
            if not line.startswith(delim):
                continue
            closing = line.startswith(b"--", len(delim))
            self._on_delimiter(mp, s, min(after, len(self._buf)), closing)
            return True
        return False

    def _on_delimiter(self, mp: _Node, s: int, after: int, closing: bool) -> None:
        buf = self._buf
        start = self._base + s
        end = start
        if s >= 1 and buf[s - 1] == 10:
            end -= 2 if s >= 2 and buf[s - 2] == 13 else 1
        popped = False
        while self._stack[-1] is not mp:
            node = self._stack.pop()
            if node.delimiter is not None and not node.closed:
                node.defects.append("unclosed-multipart")
            self._close(node, end, end)  # the CRLF before a delimiter is its own (RFC 2046 §5.1.1)
            popped = True
        if popped:  # a multipart left behind no longer delimits (none may match it later)
            self._refresh_delims()
        self._p = after
        self._first_line = False
        if closing:
            mp.closed = True
            self._refresh_delims()
            self._mode = _BODY  # the epilogue belongs to the multipart's body
            return
        if self._parts >= self.limits.max_parts:
            if "part-limit" not in mp.defects:
                mp.defects.append("part-limit")
            self._mode = _BODY
            return
        self._parts += 1
        digest = mp.ctype is not None and mp.ctype[1].lower() == "digest"
        child = _Node(
            self._base + after,
            False,
            default_type=("message", "rfc822") if digest else ("text", "plain"),  # RFC 2046 §5.1.5
            depth=mp.depth + 1,
        )
        mp.children.append(child)
        self._stack.append(child)
        self._mode = _HEADER
        self._header_overflow = False

    def _close(self, node: _Node, end: int, header_limit: int) -> None:
        """Set the end of ``node``; a part still in its header ends at ``header_limit``."""
        if node.header_end < 0:
            self._end_header(node, max(node.header_start, header_limit), open_body=False)
        node.body_end = max(end, node.header_end)
        node.body_lines = self._count_to(node.body_end) - node.lines_at_body
        if node.message is not None and node.message.body_end < 0:
            self._close(node.message, node.body_end, node.body_end)

    def _end_header(self, node: _Node, pos: int, open_body: bool = True) -> None:
        node.header_end = pos
        node.lines_at_body = self._count_to(pos)
        for name, raw in split_header_fields(bytes(node.header)):
            if name in _MIME_FIELDS:
                if name not in node.fields:  # the first occurrence wins, as in Dovecot
                    node.fields[name] = unfold(_field_value(raw))
            elif node.is_message and name in _ENVELOPE_FIELDS:
                if name in _ADDRESS_FIELDS:  # repeated address fields accumulate (Dovecot)
                    node.addresses.setdefault(name, []).append(unfold(_field_value(raw)))
                else:  # folding kept: IMAP shows the raw value; the last one wins (Dovecot)
                    node.fields[name] = _field_value(raw)
        node.header = bytearray()
        ct = node.fields.get("content-type")
        parsed = parse_content_type(ct) if ct is not None else None
        if ct is not None and parsed is None:
            node.defects.append("invalid-content-type")  # RFC 2045 §5.2 default applies
            parsed = ("text", "plain", _TEXT_PLAIN)
        node.ctype = parsed
        self._mode = _BODY
        if not open_body:
            return
        typ, sub = (parsed[0], parsed[1]) if parsed else node.default_type
        typ_l, sub_l = typ.lower(), sub.lower()
        deep = node.depth + 1 >= self.limits.max_depth
        if typ_l == "multipart":
            boundary = (
                next((v for k, v in parsed[2] if k.lower() == "boundary"), None) if parsed else None
            )
            if not boundary:
                node.defects.append("multipart-without-boundary")
            elif deep:
                node.defects.append("depth-limit")
            else:
                node.delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
                self._refresh_delims()
        elif typ_l == "message" and sub_l in _ENCAPSULATED:
            cte = (_cte(node.fields.get("content-transfer-encoding")) or "").lower()
            if cte not in _IDENTITY_CTE:
                node.defects.append("encoded-message")  # RFC 2046 §5.2.1: must be 7bit/8bit/binary
            elif deep:
                node.defects.append("depth-limit")
            elif self._parts >= self.limits.max_parts:
                node.defects.append("part-limit")
            else:
                self._parts += 1
                inner = _Node(pos, True, depth=node.depth + 1)
                node.message = inner
                self._stack.append(inner)
                self._mode = _HEADER
                self._first_line = True

    def _refresh_delims(self) -> None:
        self._delims = [
            (n.delimiter, n)
            for n in reversed(self._stack)
            if n.delimiter is not None and not n.closed
        ]

    # --- result --------------------------------------------------------------------------

    def _freeze(self, node: _Node) -> Part:
        f = node.fields
        if node.ctype is not None:
            typ, sub, params = node.ctype
        else:
            typ, sub = node.default_type
            params = _TEXT_PLAIN if typ == "text" else ()
        disp = parse_disposition(f["content-disposition"]) if "content-disposition" in f else None
        if typ.lower() == "text" and not any(k.lower() == "charset" for k, _ in params):
            params = (*params, ("charset", "us-ascii"))  # RFC 2045 §5.2 default, as Dovecot shows
        env = None
        if node.is_message:
            a = node.addresses
            env = Envelope(
                date=f.get("date") or None,
                subject=f.get("subject"),
                from_=_addrs(a.get("from")),
                sender=_addrs(a.get("sender")),
                reply_to=_addrs(a.get("reply-to")),
                to=_addrs(a.get("to")),
                cc=_addrs(a.get("cc")),
                bcc=_addrs(a.get("bcc")),
                in_reply_to=f.get("in-reply-to") or None,
                message_id=f.get("message-id") or None,
            )
        return Part(
            header_start=node.header_start,
            header_end=node.header_end,
            body_end=node.body_end,
            type=typ,
            subtype=sub,
            params=params,
            id=f.get("content-id"),
            description=f.get("content-description"),
            encoding=_cte(f.get("content-transfer-encoding")),
            disposition=disp[0] if disp else None,
            disposition_params=disp[1] if disp else (),
            language=parse_language(f["content-language"]) if "content-language" in f else None,
            location=f.get("content-location"),
            md5=f.get("content-md5"),
            body_lines=node.body_lines,
            children=tuple(self._freeze(c) for c in node.children),
            message=self._freeze(node.message) if node.message is not None else None,
            envelope=env,
            defects=tuple(node.defects),
        )


def _addrs(values: list[str] | None) -> tuple[Address, ...] | None:
    if not values:
        return None
    return tuple(a for v in values for a in parse_address_list(v)) or None


_COMMENT = re.compile(r"\([^()]*\)")  # stops at the next parenthesis: linear


def _cte(value: str | None) -> str | None:
    """The mechanism token of a Content-Transfer-Encoding (RFC 2045 §6.1), comments and
    anything after the token dropped (``base64 (comment)`` is base64, as in Dovecot)."""
    if not value:
        return None
    words = _COMMENT.sub(" ", value).split()
    return words[0] if words else None


def _field_value(raw: bytes) -> str:
    """Text after the colon, leading blanks and the final line end removed, folds kept."""
    first, nl, rest = raw.partition(b"\n")
    lines = rest.splitlines(keepends=True)
    if any(ln[:1] not in (b" ", b"\t") for ln in lines):
        # junk lines without a colon were kept for byte ranges: not part of the value
        raw = first + nl + b"".join(ln for ln in lines if ln[:1] in (b" ", b"\t"))
    value = raw[raw.index(b":") + 1 :].decode("utf-8", "surrogateescape")
    return value.lstrip(" \t").rstrip(" \t\r\n")


def shift_tree(obj: dict[str, Any], at: int, delta: int) -> dict[str, Any]:
    """A :meth:`Part.to_json` tree after ``delta`` header bytes were inserted at ``at``.

    The offsets at or after ``at`` move; everything else is kept as stored.  Delivery
    inserts its header fields into every message, and moving three numbers per part
    costs far less than building the tree of Parts and serialising it again.
    """
    out = dict(obj)
    out["o"] = [x + delta if x >= at else x for x in obj["o"]]
    if "children" in obj:
        out["children"] = [shift_tree(c, at, delta) for c in obj["children"]]
    if "message" in obj:
        out["message"] = shift_tree(obj["message"], at, delta)
    return out


def parse_structure(data: bytes, limits: Limits | None = None) -> Part:
    """The structure of a whole message held in memory."""
    b = StructureBuilder(limits)
    b.feed(data)
    return b.finish()
