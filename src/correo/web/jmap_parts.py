"""Email/get of a big message from its stored part tree, read in pieces (RFC 8621 §4.1.4).

Parsing a 40 MB message to list its parts holds all 40 MB (and parses all of it). The
store keeps each message's part tree (the offsets IMAP's BODY[section] uses); from it
and each part's header section this module builds the bodyStructure, textBody,
htmlBody, attachments, hasAttachment, preview and bodyValues that parsing the whole
message gives (:func:`correo.jmap.mail.parse_email`, the stdlib's parser), the same
to the octet: a part's size is its decoded size (RFC 8621 §4.1.4), counted as its
octets stream past; text is decoded in pieces and held only as far as it is returned;
a part whose size and text are not asked for (a list's preview) is not read at all.

Where the tree might not say what the stdlib's parser says (a defect, a header the
parser reads otherwise, a bare CR or LF around a delimiter, nesting near its bounds, a
message/* other than rfc822, a digest, base64 the parser would repair, uuencode),
:class:`Irregular` sends the caller to the whole-message path. Three cases lie past
what the octets read show: a preview is read from at most the first 256 KiB of a part
not returned, and of an html part's text even when returned (an encoding problem after
them, or markup hiding the text in them, could change it); a bare CR inside a body
that the parser would take for the end of a delimiter line; and parse_message's guard
against deep nesting (which counts "boundary" in bodies too), judged from the header
sections alone.
"""

from __future__ import annotations

import asyncio
import email.policy
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from typing import Any, Final

from correo.delivery.facts import load_tree
from correo.jmap.mail import (
    BODY_PROPS,
    PREVIEW,
    _is_inline_text,
    _Part,
    add_to_body_lists,
    parse_email,
)
from correo.message.structure import Part
from correo.store.api import MessageFacts
from correo.web.jmap_mail import MailView, Row
from correo.web.jmap_partdecode import Base64, Irregular, QuotedPrintable, Text, TextSink

__all__ = ["PARTS_MIN", "Irregular", "email_from_tree", "email_of_tree"]

#: Messages at least this big are read from their part tree; smaller ones are parsed.
PARTS_MIN: Final = 1 << 20
_TEXT_CAP: Final = 256 * 1024  # decoded octets of a part read for a preview only
_HEADS_MAX: Final = 1 << 20  # octets of header sections read for one message
_LINE: Final = 1024  # octets of a preamble's tail read with its first delimiter
_GAP: Final = 256 * 1024  # octets between two ranges read rather than a read more
_DEPTH: Final = 16  # parse_message reads a message nested deeper as one opaque body
_LEAVES: Final = 1000  # parse_email's _leaves stops counting there
_HINTS: Final = 32  # parse_message looks at nesting past this many boundary/message hints
_HINT = re.compile(rb"(?i)boundary|message/")
_CHUNK: Final = 1 << 20  # a read is a worker-thread hop: 41 of them for 41 MB
_INLINE: Final = 16 * 1024  # characters of plain text made a preview on the event loop
_INLINE_HEADS: Final = 16 * 1024  # octets of header sections parsed on the event loop,
_INLINE_PARTS: Final = 32  # in at most this many parts (jmap_email's _PARSE_INLINE)
_TREE_INLINE: Final = 8 * 1024  # octets of a stored tree's JSON loaded on the event loop
_READS: Final = 512  # store reads for one message: past them, it is parsed whole
_CODED: Final = ("base64", "quoted-printable")  # read for their decoded size
_UU: Final = frozenset(("x-uuencode", "uuencode", "uue", "x-uue"))
_PARSER: Final = BytesParser(policy=email.policy.compat32)

Reader = Callable[[int, int], AsyncIterator[bytes]]


@dataclass(slots=True)
class _Node:
    head: Message  # the part's header fields, as the stdlib reads them
    tree: Part
    parts: list[_Node] | None = None  # a multipart's or a message/rfc822's; None: a leaf
    leaf: _Part | None = None
    cte: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # a leaf's JSON, made off the loop

    @property
    def part_id(self) -> str:
        assert self.leaf is not None  # only leaves are listed
        return self.leaf.part_id

    def json(self) -> dict[str, Any]:
        assert self.leaf is not None
        return {**self.info, "size": self.leaf.size}


@dataclass(slots=True)
class _Shape:
    """What one worker-thread hop makes of the header sections."""

    root: _Node
    leaves: list[_Node]  # in partId order
    lists: tuple[list[_Node], list[_Node], list[_Node]]  # textBody, htmlBody, attachments
    attached: bool  # hasAttachment
    heads: dict[str, Any]  # the header properties asked for
    section: int  # the message's header section's octets


def _parse_head(section: bytes) -> Message:
    """A header section as the stdlib reads it; Irregular where it would read otherwise."""
    head = _PARSER.parsebytes(section, headersonly=True)
    if head.defects or head.get_payload():
        raise Irregular("a header section the stdlib reads otherwise")
    return head


def _clean(data: bytes) -> bool:
    """Whether every line end in ``data`` is CRLF: the stdlib ends a line at a bare CR
    or LF too, where the tree may not have."""
    ends = data.count(b"\r\n")
    return data.count(b"\r") == ends == data.count(b"\n")


@dataclass(frozen=True, slots=True)
class _Line:
    """A delimiter's range: its line, after the preamble's tail for a ``first`` (all of
    it: ``whole``), or followed by the epilogue for a ``closing`` one that may end with
    the multipart (``ends``)."""

    delim: bytes  # b"--" + the boundary, as the tree matches it
    first: bool = False
    whole: bool = False
    closing: bool = False
    ends: bool = False


def _lines_between(tree: Part) -> list[tuple[int, int, _Line]]:
    """The octets around each multipart's delimiters: the tail of its preamble with the
    first, each one between two parts, and the close delimiter's line (RFC 2046 §5.1.1)."""
    out: list[tuple[int, int, _Line]] = []
    for part in tree.walk():
        if not part.children:
            continue
        try:
            delim = b"--" + (part.param("boundary") or "").encode("utf-8", "surrogateescape")
        except UnicodeError:
            raise Irregular("a boundary the tree cannot have matched") from None
        first, last = part.children[0], part.children[-1]
        start = max(part.header_end, first.header_start - _LINE)
        whole = start == part.header_end
        out.append((start, first.header_start, _Line(delim, first=True, whole=whole)))
        out.extend(
            (before.body_end, after.header_start, _Line(delim))
            for before, after in zip(part.children, part.children[1:], strict=False)
        )
        end = min(part.body_end, last.body_end + _LINE)
        out.append((last.body_end, end, _Line(delim, closing=True, ends=end == part.body_end)))
    return out


def _check_delimiter(data: bytes, line: _Line) -> None:
    """Irregular unless the delimiter line in ``data`` is one to the stdlib's parser too:
    the tree takes any line that starts with the delimiter (RFC 2046 §5.1.1 allows it),
    the parser only ``--boundary(--)?[ \\t]*`` and the line's end. Checked by slicing:
    no regex on the octets."""
    if line.first:  # the preamble's last line, unless the data is cut inside it
        at = data.rfind(b"\n", 0, len(data) - 1) + 1
        if not at and not line.whole:
            raise Irregular("a delimiter line longer than read")
        data = data[at:]
    elif data.startswith(b"\r\n"):  # the CRLF before a delimiter is the delimiter's
        data = data[2:]
    rest = data[len(line.delim) :] if data.startswith(line.delim) else b"-"
    if line.closing:
        rest = rest[2:] if rest.startswith(b"--") else b"-"
    if rest.endswith(b"\r\n"):
        rest = rest[:-2]
    elif not (line.closing and line.ends and b"\n" not in rest):  # the parse's last line
        raise Irregular("a delimiter line without its line end")
    if rest.strip(b" \t"):
        raise Irregular("a line the tree takes for a delimiter and the parse does not")


async def _sections(tree: Part, read: Reader) -> dict[int, bytes]:
    """Every part's header section by the part's id(), read in as few reads as the gaps
    between them allow (a part's header often follows the last one closely), once the
    delimiter lines are seen to end as the tree says they do."""
    parts = tree.walk()
    if len(parts) > 2 * _LEAVES:
        raise Irregular("more parts than parse_email counts")
    ranges: list[tuple[int, int, Part | _Line]] = [(p.header_start, p.header_end, p) for p in parts]
    ranges += _lines_between(tree)
    ranges.sort(key=lambda r: r[0])
    out: dict[int, bytes] = {}
    budget = _HEADS_MAX
    at = 0
    while at < len(ranges):
        start, end, upto = ranges[at][0], ranges[at][1], at + 1
        while (
            upto < len(ranges)
            and ranges[upto][0] - end <= _GAP
            and max(end, ranges[upto][1]) - start <= _CHUNK
        ):
            end = max(end, ranges[upto][1])
            upto += 1
        budget -= sum(stop - first for first, stop, _ in ranges[at:upto])
        if budget < 0:
            raise Irregular("header sections past the budget")
        span = b"".join([chunk async for chunk in read(start, end)])
        for first, stop, part in ranges[at:upto]:
            data = span[first - start : stop - start]
            if isinstance(part, Part):
                if first == stop:
                    raise Irregular("a part without even its blank line")
                out[id(part)] = data
            else:  # a delimiter line, after a preamble's tail or before an epilogue
                if part.closing:  # up to its line's end: the epilogue is not checked
                    data = data[: data.find(b"\n", data.find(b"--")) + 1 or len(data)]
                _check_delimiter(data, part)
            if not _clean(data):
                raise Irregular("a bare CR or LF around a delimiter or in a header")
        at = upto
    return out


async def _shape(tree: Part, read: Reader, heads: Sequence[str], blob: str) -> _Shape:
    """The node tree mirroring the stdlib's parse, its leaves' JSON and lists, and
    parse_email's ``heads`` properties of the message's header section: the header
    sections parsed in one worker-thread hop unless they are few and short."""
    sections = await _sections(tree, read)

    def work() -> _Shape:
        root, leaves = _build(tree, sections)
        for node in leaves:
            assert node.leaf is not None
            node.info = node.leaf.json(blob)
        lists = _lists(root)
        attached = any(
            n.head.get_content_disposition() == "attachment" or not _is_inline_text(n.head)
            for n in lists[2]
        )
        section = _head_section(tree, sections[id(tree)])
        props = parse_email(section, heads, blob=blob) if heads else {}
        return _Shape(root, leaves, lists, attached, props, len(section))

    if len(sections) <= _INLINE_PARTS and sum(map(len, sections.values())) <= _INLINE_HEADS:
        return work()
    return await asyncio.to_thread(work)


def _build(tree: Part, sections: Mapping[int, bytes]) -> tuple[_Node, list[_Node]]:
    """The nodes of ``tree`` from its parts' header sections, as the stdlib reads them."""
    leaves: list[_Node] = []
    hints = 0

    def node(part: Part, depth: int, digest: bool) -> _Node:
        nonlocal hints
        if part.defects or depth > _DEPTH or digest:
            raise Irregular("a defect, deep nesting or a digest's default type")
        section = sections[id(part)]
        hints += len(_HINT.findall(section))
        head = _parse_head(section)
        main = head.get_content_maintype()
        out = _Node(head, part)
        if part.is_multipart:
            if main != "multipart" or head.get_boundary() != part.param("boundary"):
                raise Irregular("a multipart the stdlib splits otherwise")
            if not part.children:
                raise Irregular("a multipart without parts")
            inner = head.get_content_subtype() == "digest"
            out.parts = [node(child, depth + 1, inner) for child in part.children]
            return out
        if part.type.lower() == "message" or main in ("message", "multipart"):
            if head.get_content_type() != "message/rfc822" or part.message is None:
                raise Irregular("a message/* the stdlib reads otherwise")
            out.parts = [node(part.message, depth + 1, False)]
            return out
        out.cte = str(head.get("content-transfer-encoding", "")).lower()
        if out.cte in _UU:
            raise Irregular("uuencode")
        if len(leaves) >= _LEAVES:
            raise Irregular("more leaves than parse_email counts")
        out.leaf = _Part(str(len(leaves) + 1), head, part.body_size)
        leaves.append(out)
        return out

    root = node(tree, 0, False)
    if hints > _HINTS:
        raise Irregular("parse_message would look at the nesting")
    return root, leaves


# -- reading the leaves in pieces (decoded by correo.web.jmap_partdecode) ---------------


async def _scan(
    node: _Node, read: Reader, keep: int | None, whole: bool = True
) -> tuple[int, Text | None]:
    """A leaf read in pieces: its decoded size (when read ``whole``) and, when ``keep``
    is given, its text held up to ``keep`` UTF-8 octets."""
    part, cte = node.tree, node.cte
    whole = whole or part.body_size <= _TEXT_CAP
    if keep is None and cte not in _CODED:
        return part.body_size, None  # the stdlib's payload is the octets themselves
    charset = node.head.get_content_charset() or "us-ascii"
    size, sink = await _pass(node, read, TextSink(charset, keep or 0), keep is not None, whole)
    if sink.again:  # a problem past the first octets of a charset other than UTF-8
        size, sink = await _pass(node, read, TextSink(charset, keep or 0, True), True, whole)
    return size, sink.text() if keep is not None else None


async def _pass(
    node: _Node, read: Reader, sink: TextSink, decode: bool, whole: bool
) -> tuple[int, TextSink]:
    """One read of a leaf, its decoded octets counted and, if ``decode``, fed to ``sink``."""
    part, cte = node.tree, node.cte
    end = part.body_end if whole else min(part.body_end, part.header_end + _TEXT_CAP)
    size = 0
    b64 = Base64() if cte == "base64" else None
    qp = QuotedPrintable() if cte == "quoted-printable" else None
    async for chunk in read(part.header_end, end):
        piece = b64.feed(chunk, decode) if b64 else qp.feed(chunk) if qp else chunk
        size += len(piece)
        if decode and piece:
            sink.feed(piece)
    if not whole:  # the first octets of a preview: an escape or quantum cut is dropped
        last = b""
    elif b64 is not None:
        last, size = b64.finish(decode)
    else:
        last = qp.finish() if qp else b""
        size += len(last)
    if decode:
        sink.feed(last, final=whole)
    return size, sink


class _Reads:
    """One message's store reads, counted (each is a worker-thread hop and a statement:
    past ``_READS`` the message is parsed whole), the leaves planned to be read next to
    each other read together in spans of at most ``_CHUNK``, one span held at a time."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._spans: dict[tuple[int, int], tuple[int, int]] = {}  # a leaf's body: its span
        self._span, self._data = (0, 0), b""
        self.count = 0

    def plan(self, parts: Sequence[Part]) -> None:
        """Group the bodies of ``parts`` (in the message's order) into shared spans."""
        at = 0
        while at < len(parts):
            start, end, upto = parts[at].header_end, parts[at].body_end, at + 1
            while (
                upto < len(parts)
                and 0 <= parts[upto].header_end - end <= _GAP
                and parts[upto].body_end - start <= _CHUNK
            ):
                end, upto = parts[upto].body_end, upto + 1
            if upto - at > 1:
                self._spans.update(
                    ((p.header_end, p.body_end), (start, end)) for p in parts[at:upto]
                )
            at = upto

    def _counted(self, start: int, end: int) -> AsyncIterator[bytes]:
        self.count += 1
        if self.count > _READS:
            raise Irregular("more store reads than one message is given")
        return self._read(start, end)

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        span = self._spans.get((start, end))
        if span is None:
            async for chunk in self._counted(start, end):
                yield chunk
            return
        if span != self._span:
            self._span, self._data = (0, 0), b""
            self._data = b"".join([chunk async for chunk in self._counted(*span)])
            self._span = span
        yield self._data[start - span[0] : end - span[0]]


# -- the properties ---------------------------------------------------------------------


def _lists(root: _Node) -> tuple[list[_Node], list[_Node], list[_Node]]:
    """textBody, htmlBody and attachments as parse_email's _body_lists makes them."""
    text: list[_Node] = []
    html: list[_Node] = []
    attachments: list[_Node] = []

    def walk(node: _Node, alternative: str | None) -> None:
        if node.parts is not None:
            sub = node.head.get_content_subtype()
            for child in node.parts:
                walk(child, sub if sub == "alternative" else alternative)
            return
        add_to_body_lists((text, html, attachments), node, node.head, alternative)

    walk(root, None)
    return text, html, attachments


def _structure(node: _Node) -> dict[str, Any]:
    if node.leaf is not None:
        return node.json()
    return {
        "partId": None,
        "blobId": None,
        "type": node.head.get_content_type(),
        "subParts": [_structure(child) for child in node.parts or ()],
    }


def _preview_of(html: bool, value: str) -> str:
    """parse_email's preview of a text: of html, from its first ``_TEXT_CAP`` octets
    (html_to_text of more is seconds of CPU, and a part not returned is read no
    further); of plain text, the same as of the whole, from as little as gives it."""
    if html:
        from correo.message.html import html_to_text

        if len(value) > _TEXT_CAP // 4:  # past where _TEXT_CAP octets may end
            head = value[:_TEXT_CAP].encode("utf-8", "surrogatepass")[:_TEXT_CAP]
            value = head.decode("utf-8", "ignore")
            if value.rfind("<") > value.rfind(">"):  # a tag cut short is no text
                value = value[: value.rfind("<")]
        return " ".join(html_to_text(value).split())[:PREVIEW]
    size = 4096
    while True:  # the words of a prefix are a prefix of the words: enough once PREVIEW
        out = " ".join(value[:size].split())
        if len(out) >= PREVIEW or size >= len(value):
            return out[:PREVIEW]
        size *= 4


async def _preview(node: _Node, text: Text) -> str:
    """The preview, worked out in a thread where it could hold the loop."""
    html = node.head.get_content_subtype() == "html"
    if html or len(text.value) > _INLINE:
        return await asyncio.to_thread(_preview_of, html, text.value)
    return _preview_of(html, text.value)


def _body_value(text: Text, most: int) -> dict[str, Any]:
    value, truncated = text.value, False
    if most and len(value.encode()) > most:
        value = value.encode()[:most].decode("utf-8", "ignore")
        truncated = True
    return {"value": value, "isEncodingProblem": text.problem, "isTruncated": truncated}


async def _email(
    tree: Part,
    read: Reader,
    properties: Sequence[str],
    blob: str,
    flags: Mapping[str, bool],
    most: int,
) -> tuple[dict[str, Any], int]:
    """The properties parse_email gives, from the tree and ``read``'s octets, and the
    octets held for them. Irregular where the tree may disagree with the parse."""
    wants = set(properties)
    heads = [p for p in properties if p not in BODY_PROPS]
    reads = _Reads(read)
    read = reads.read
    shape = await _shape(tree, read, heads, blob)
    root, leaves, out, held = shape.root, shape.leaves, shape.heads, shape.section
    text, html, attachments = shape.lists
    chosen: dict[str, _Node] = {}
    if "bodyValues" in wants:
        if flags.get("text") or flags.get("all"):
            chosen.update((n.part_id, n) for n in text)
        if flags.get("html") or flags.get("all"):
            chosen.update((n.part_id, n) for n in html)
        if flags.get("all"):
            chosen.update((n.part_id, n) for n in attachments if _is_inline_text(n.head))
    previews = {id(n) for n in text} if "preview" in wants else set()
    unbounded = most or 1 << 62  # the client asked for all of it
    texts: dict[int, Text] = {}
    sized = not wants.isdisjoint(("bodyStructure", "textBody", "htmlBody", "attachments"))
    plan: list[tuple[_Node, int | None]] = []
    for node in leaves:
        keep: int | None = None
        if node.part_id in chosen:
            keep = max(unbounded, _TEXT_CAP) if id(node) in previews else unbounded
            keep += 4  # a character past the most: whether the value is truncated
        elif sized and id(node) in previews and node.cte in _CODED:
            keep = _TEXT_CAP  # read whole for its size anyway
        elif not sized:
            continue  # neither its size nor its text is asked for: not read
        plan.append((node, keep))
    reads.plan([n.tree for n, keep in plan if keep is not None or n.cte in _CODED])
    for node, keep in plan:
        size, got = await _scan(node, read, keep)
        assert node.leaf is not None
        node.leaf.size = size
        if got is not None:
            texts[id(node)] = got
            held += len(got.value)
    if "textBody" in wants:
        out["textBody"] = [n.json() for n in text]
    if "htmlBody" in wants:
        out["htmlBody"] = [n.json() for n in html]
    if "attachments" in wants:
        out["attachments"] = [n.json() for n in attachments]
    if "hasAttachment" in wants:
        out["hasAttachment"] = shape.attached
    if "preview" in wants:
        out["preview"] = ""
        for node in text:
            got = texts.get(id(node))
            if got is None:  # a part read for its preview only: its first octets
                got = (await _scan(node, read, _TEXT_CAP, whole=False))[1]
                assert got is not None
                held += len(got.value)
            value = await _preview(node, got)
            if value:
                out["preview"] = value
                break
    if "bodyStructure" in wants:
        out["bodyStructure"] = _structure(root)
    if "bodyValues" in wants:
        out["bodyValues"] = {
            part_id: _body_value(texts[id(node)], most) for part_id, node in chosen.items()
        }
    return out, held


async def email_from_tree(
    view: MailView,
    row: Row,
    properties: Sequence[str],
    *,
    blob: str,
    body_values: Mapping[str, bool] | None = None,
    max_body_value_bytes: int = 0,
) -> tuple[dict[str, Any], int] | None:
    """parse_email's properties of a stored message from its part tree, and the octets
    held for them; None where the message must be parsed whole (no tree, or Irregular).
    StoreError when the message is gone."""
    box, uid = row.box.name, row.info.uid
    facts = (await view.store.fetch_facts(view.account, box, [uid])).get(uid)
    if facts is None or not facts.tree:
        return None
    try:
        tree = await _load(facts)
    except Irregular:
        return None

    def read(start: int, end: int) -> AsyncIterator[bytes]:
        return view.store.read_message(view.account, box, uid, _CHUNK, start, end)

    return await email_of_tree(
        tree,
        read,
        properties,
        blob=blob,
        body_values=body_values,
        max_body_value_bytes=max_body_value_bytes,
    )


async def email_of_tree(
    tree: Part,
    read: Reader,
    properties: Sequence[str],
    *,
    blob: str,
    body_values: Mapping[str, bool] | None = None,
    max_body_value_bytes: int = 0,
) -> tuple[dict[str, Any], int] | None:
    """parse_email's properties from ``tree`` and ``read``; None: parse it whole."""
    try:
        return await _email(tree, read, properties, blob, body_values or {}, max_body_value_bytes)
    except Irregular:
        return None


async def _load(facts: MessageFacts) -> Part:
    """The stored part tree, counted before it is loaded (each part's JSON object opens
    with its offsets, and no JSON string holds that unescaped), loaded off the event
    loop when long: 10,000 parts take 155 ms to load."""
    if facts.tree.count(b'{"o":') > 2 * _LEAVES:
        raise Irregular("more parts than parse_email counts")
    if len(facts.tree) <= _TREE_INLINE:
        return load_tree(facts)
    return await asyncio.to_thread(load_tree, facts)


def _head_section(tree: Part, section: bytes) -> bytes:
    """The message's header section, when the parse of the whole message reads the
    same fields from it (its line ends were seen to be CRLF): it ends in the blank line."""
    if tree.header_start != 0 or not section.endswith(b"\r\n\r\n"):
        raise Irregular("a header section not at the start, or not ending in CRLF")
    return section
