"""The JMAP mail model (RFC 8621) over an IMAP-shaped store, as pure functions.

Ids: a mailbox is named by its UIDVALIDITY, which the store never reuses and keeps
across a rename (``M…`` ids); a message by the SHA-256 of its stored octets, so a copy
or a move keeps the id and one Email may sit in several mailboxes (``E…``; its blob is
``B…``, its thread ``T…``: every Email is a thread of its own for now).

States: the state of an account is the (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, name) of
each of its mailboxes, so a state follows MODSEQ (RFC 7162) and a change made over IMAP
changes it as one made over JMAP does.  The token carries all of it (compressed), so
``/changes`` works from the token alone.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import itertools
import json
import re
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any, TypeVar

from correo.message.encoded import decode_header, raw_utf8, text_codec
from correo.message.mime import parse_address_list
from correo.message.structure import parse_structure

__all__ = [
    "MailboxMark",
    "add_to_body_lists",
    "blob_id",
    "charset_codec",
    "digest_of",
    "email_id",
    "flags_to_keywords",
    "header_property",
    "keyword_to_flag",
    "mailbox_id",
    "parse_email",
    "parse_message",
    "read_state",
    "role_of",
    "thread_id",
    "write_state",
]

_L = TypeVar("_L")  # a leaf, as one of the body lists holds it

_ID_HEX = 24  # hex digits of the SHA-256 in an id: 96 bits
_HEX = frozenset("0123456789abcdef")
_STATES_KEPT = 256  # state tokens kept by their marks (compressing one costs ~50 µs)

# RFC 8621 §4.1.1: the IMAP system flags and their keywords
_SYSTEM = {"\\seen": "$seen", "\\flagged": "$flagged", "\\answered": "$answered",
           "\\draft": "$draft"}  # fmt: skip
_TO_FLAG = {v: k.title().replace("\\", "\\") for k, v in _SYSTEM.items()}
_ROLES = {"\\inbox": "inbox", "\\archive": "archive", "\\drafts": "drafts",
          "\\flagged": "flagged", "\\junk": "junk", "\\sent": "sent", "\\trash": "trash",
          "\\all": "all", "\\important": "important"}  # fmt: skip


def email_id(digest: str) -> str:
    return "E" + digest[:_ID_HEX]


def blob_id(digest: str) -> str:
    return "B" + digest[:_ID_HEX]


def thread_id(digest: str) -> str:
    return "T" + digest[:_ID_HEX]


def digest_of(ident: str) -> str | None:
    """The digest prefix an ``E…``/``B…``/``T…`` id names, or None if it names none."""
    if len(ident) != _ID_HEX + 1 or ident[0] not in "EBT":
        return None
    hexpart = ident[1:]
    return hexpart if _HEX.issuperset(hexpart) else None


def mailbox_id(uidvalidity: int) -> str:
    return f"M{uidvalidity}"


def keyword_to_flag(keyword: str) -> str:
    """RFC 8621 §4.1.1: ``$seen`` is ``\\Seen``; other keywords are IMAP keywords."""
    flag = _TO_FLAG.get(keyword.lower())
    if flag is not None:
        return "\\" + flag[1:].capitalize()
    return keyword


def flags_to_keywords(flags: Iterable[str]) -> dict[str, bool]:
    """The keywords of a message from its IMAP flags (lower case, RFC 8621 §4.1.1);
    ``\\Deleted`` and ``\\Recent`` have none."""
    out: dict[str, bool] = {}
    for flag in flags:
        low = flag.lower()
        if low in _SYSTEM:
            out[_SYSTEM[low]] = True
        elif not low.startswith("\\"):
            out[low] = True
    return out


def valid_keyword(keyword: str) -> bool:
    """RFC 8621 §4.1.1: 1-255 printable ASCII, none of ``( ) { ] % * " \\``."""
    return (
        0 < len(keyword) <= 255
        and all(0x21 <= ord(c) <= 0x7E for c in keyword)
        and not any(c in '(){]%*"\\' for c in keyword)
    )


def role_of(special_use: str | None, name: str) -> str | None:
    """A mailbox's role (RFC 8621 §2, the IANA registry from RFC 6154's attributes)."""
    if name.upper() == "INBOX":
        return "inbox"
    if special_use:
        return _ROLES.get(special_use.lower())
    return None


# -- states -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxMark:
    """What a state records of one mailbox."""

    uidvalidity: int
    uidnext: int
    modseq: int
    name: str


def write_state(marks: Iterable[MailboxMark]) -> str:
    """A state token: every mailbox's mark, compressed, URL-safe.  The token is a
    function of the marks, and every request asks for it twice or more: kept."""
    key = tuple(marks)
    token = _states.get(key)
    if token is None:
        rows = sorted([m.uidvalidity, m.uidnext, m.modseq, m.name] for m in key)
        packed = zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 9)
        token = "s" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
        _states[key] = token
        if len(_states) > _STATES_KEPT:
            del _states[next(iter(_states))]
    return token


_states: dict[tuple[MailboxMark, ...], str] = {}


def read_state(token: str, most: int = 100_000) -> dict[int, MailboxMark] | None:
    """The marks in a token from :func:`write_state`; None when it is not one."""
    if not token.startswith("s") or len(token) > 4_000_000:
        return None
    text = token[1:]
    try:
        packed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, 64 * 1024 * 1024)  # bounded: a token is ours
        rows = json.loads(raw)
        marks = {}
        for uv, nxt, modseq, name in rows[:most]:
            if not all(isinstance(n, int) for n in (uv, nxt, modseq)) or not isinstance(name, str):
                return None
            marks[uv] = MailboxMark(uv, nxt, modseq, name)
        return marks
    except (ValueError, TypeError, binascii.Error, zlib.error):
        return None


# -- messages ---------------------------------------------------------------------------

_HEADER_PROPS = ("messageId", "inReplyTo", "references", "sender", "from", "to", "cc",
                 "bcc", "replyTo", "subject", "sentAt")  # fmt: skip
BODY_PROPS = ("bodyStructure", "textBody", "htmlBody", "attachments", "hasAttachment",
              "preview", "bodyValues")  # fmt: skip
PREVIEW = 256  # RFC 8621 §4.1.4: at most 256 characters


def _text(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):
        return None
    return None if value is None else " ".join(str(value).split())


def _stored(message: Message, name: str) -> list[str]:
    """Every value of field ``name`` as stored: ``get()`` makes raw UTF-8 (RFC 6532)
    into U+FFFD or a Header object whose text is mojibake."""
    lowered = name.lower()
    return [str(v) for k, v in message.raw_items() if k.lower() == lowered]


def _addresses(message: Message, name: str) -> list[dict[str, Any]] | None:
    """RFC 8621 §4.1.2.3 EmailAddress objects. The list is parsed first and each name
    decoded after (RFC 2047 §5: a decoded word may hold "," or "<"), raw UTF-8 as UTF-8."""
    texts = _stored(message, name)
    if not texts:
        return None
    try:
        pairs = getaddresses(texts)
    except (ValueError, TypeError, IndexError):
        return None
    except RecursionError:  # comments or groups nested a thousand deep: the stdlib recurses
        pairs = [
            (a.name or "", f"{a.mailbox}@{a.host}")
            for text in texts
            for a in parse_address_list(text)  # correo's own reader: linear, no recursion
            if a.mailbox is not None and a.host is not None
        ]
    out = []
    for n, a in pairs:
        if a or n:
            label = " ".join(decode_header(n).split()) if n else ""  # linear decoder
            out.append({"name": label or None, "email": raw_utf8(a)})
    return out


def _ids(message: Message, name: str) -> list[str] | None:
    value = _text(message, name)
    if not value:
        return None
    out = [part.strip("<>") for part in value.replace(",", " ").split() if "@" in part]
    return out or None


def _date(message: Message) -> str | None:
    value = _text(message, "Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):  # "1 Jan 99999999999 …"
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.isoformat()


def utc_date(seconds: float) -> str:
    """A JMAP UTCDate (RFC 8620 §1.4): one per Email listed, so formatted from the
    broken-down time (a fifth of a datetime's cost); a year past four digits as before."""
    when = time.gmtime(int(seconds))
    if not 1 <= when.tm_year <= 9999:
        return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    y, mo, d, h, mi, sec = when[:6]
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{sec:02d}Z"


@dataclass(slots=True)
class _Part:
    part_id: str
    message: Message
    size: int

    def json(self, blob: str) -> dict[str, Any]:
        m = self.message
        disposition = m.get_content_disposition()
        try:
            name = m.get_filename()
        except (ValueError, TypeError, IndexError):
            name = None
        cid = _text(m, "Content-ID")
        return {
            "partId": self.part_id,
            "blobId": f"{blob}p{self.part_id}",
            "size": self.size,
            "type": m.get_content_type(),
            "charset": m.get_content_charset() if m.get_content_maintype() == "text" else None,
            "disposition": disposition,
            "cid": cid.strip("<>") if cid else None,
            "name": name,
            "language": None,
            "location": None,
        }


def _leaves(message: Message) -> list[_Part]:
    """Every part in depth-first order, numbered as RFC 8621 partIds (leaves only)."""
    out: list[_Part] = []
    counter = 0
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack and len(out) < 1000:  # bounded however the message nests
        part, depth = stack.pop()
        if part.is_multipart() and depth < 20:
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
            continue
        counter += 1
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        out.append(_Part(str(counter), part, size))
    return out


def _is_inline_text(part: Message) -> bool:
    return part.get_content_maintype() == "text" and part.get_content_disposition() != (
        "attachment"
    )


def _body_lists(message: Message) -> tuple[list[_Part], list[_Part], list[_Part]]:
    """textBody, htmlBody and attachments, after RFC 8621 §4.1.4's algorithm, simplified:
    alternatives give their plain part to textBody and their HTML part to htmlBody."""
    leaves = _leaves(message)
    by_message = {id(p.message): p for p in leaves}
    text: list[_Part] = []
    html: list[_Part] = []
    attachments: list[_Part] = []

    def walk(part: Message, alternative: str | None, depth: int) -> None:
        if depth > 20:
            return
        if part.is_multipart():
            sub = part.get_content_subtype()
            children = part.get_payload()
            if not isinstance(children, list):
                return
            for child in children:
                if isinstance(child, Message):
                    walk(child, sub if sub == "alternative" else alternative, depth + 1)
            return
        leaf = by_message.get(id(part))
        if leaf is not None:
            add_to_body_lists((text, html, attachments), leaf, part, alternative)

    walk(message, None, 0)
    return text, html, attachments


def add_to_body_lists(
    lists: tuple[list[_L], list[_L], list[_L]], leaf: _L, head: Message, alternative: str | None
) -> None:
    """Add ``leaf`` (whose header fields are ``head``, inside a multipart/alternative
    when ``alternative`` is set) to textBody, htmlBody or attachments, as both
    parse_email and the part-tree path of correo.web.jmap_parts sort leaves."""
    text, html, attachments = lists
    ctype = head.get_content_type()
    if _is_inline_text(head) and ctype in ("text/plain", "text/html"):
        if alternative is None:  # RFC 8621 §4.1.4: outside alternatives, in both
            text.append(leaf)
            html.append(leaf)
        elif ctype == "text/plain":
            text.append(leaf)
        else:
            html.append(leaf)
    else:
        attachments.append(leaf)


def charset_codec(charset: str) -> str | None:
    """The codec a text part in ``charset`` is decoded with; None where it is read as
    UTF-8 with U+FFFD and an encoding problem instead. text_codec refuses what is no
    text charset (base64, rot13) and punycode/idna, which decode in quadratic time and
    raise UnicodeError even with "replace"; a name lookup() refuses (a NUL in it raises
    ValueError) is an unknown charset."""
    try:
        codec = codecs.lookup(charset).name
        known = codec == text_codec(charset)
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        return None
    return codec if known else None


def _decoded(part: Message) -> tuple[str, bool]:
    """A text part's content and whether decoding met a problem."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    codec = charset_codec(part.get_content_charset() or "us-ascii")
    if codec is None:
        return data.decode("utf-8", "replace"), True
    try:
        return data.decode(codec), False
    except UnicodeError:
        return data.decode("utf-8", "replace"), True


def _preview(text: list[_Part]) -> str:
    for part in text:
        value, _ = _decoded(part.message)
        if part.message.get_content_subtype() == "html":
            from correo.message.html import html_to_text

            value = html_to_text(value)
        value = " ".join(value.split())
        if value:
            return value[:PREVIEW]
    return ""


# The stdlib parser recurses per multipart/message level and tests every line against
# the boundary of every enclosing multipart: 600 levels over 20,000 lines took 8 s, 1,000
# levels raise RecursionError (and one such message failed every Email/get and search).
_NESTING_HINT = re.compile(rb"(?i)boundary|message/")
_FEW_HINTS = 32  # a message naming fewer boundaries and message types nests that little
_MAX_NESTING = 16  # else its own structure (correo.message, linear) must nest this little


def parse_message(raw: bytes) -> Message:
    """``raw`` as the stdlib's tree; one nested deeper than mail goes is read as its header
    and one opaque body, so its cost follows its size."""
    hints = itertools.islice(_NESTING_HINT.finditer(raw), _FEW_HINTS + 1)
    if sum(1 for _ in hints) <= _FEW_HINTS or _shallow(raw):
        try:
            return email.message_from_bytes(raw, policy=email.policy.compat32)
        except RecursionError:  # not expected under these bounds; never a failed call
            pass
    return BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)


def _shallow(raw: bytes) -> bool:
    """Whether ``raw`` nests at most _MAX_NESTING deep, by correo's own parser; a bare CR
    (which the stdlib takes for a line end and correo does not) never counts as shallow."""
    if raw.count(b"\r") != raw.count(b"\r\n"):
        return False
    deepest = 0
    stack = [(parse_structure(raw), 0)]
    while stack:
        part, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > _MAX_NESTING:
            return False
        stack.extend((child, depth + 1) for child in part.children)
        if part.message is not None:
            stack.append((part.message, depth + 1))
    return True


def parse_email(
    raw: bytes,
    properties: Sequence[str],
    *,
    blob: str,
    body_values: Mapping[str, bool] | None = None,
    max_body_value_bytes: int = 0,
) -> dict[str, Any]:
    """The header and body properties of one message (RFC 8621 §4.1.2-4.1.4).

    ``body_values``: {"text": fetchTextBodyValues, "html": …, "all": …}.  Runs in a
    worker thread: the cost follows the message's size, which is bounded by the store.
    """
    message = parse_message(raw)
    out: dict[str, Any] = {}
    wants = set(properties)
    if "messageId" in wants:
        out["messageId"] = _ids(message, "Message-ID")
    if "inReplyTo" in wants:
        out["inReplyTo"] = _ids(message, "In-Reply-To")
    if "references" in wants:
        out["references"] = _ids(message, "References")
    for prop, name in (("sender", "Sender"), ("from", "From"), ("to", "To"), ("cc", "Cc"),
                       ("bcc", "Bcc"), ("replyTo", "Reply-To")):  # fmt: skip
        if prop in wants:
            out[prop] = _addresses(message, name)
    if "subject" in wants:
        subject = _decoded_header(message, "Subject")
        out["subject"] = subject
    if "sentAt" in wants:
        out["sentAt"] = _date(message)
    fields: list[tuple[str, str]] | None = None
    for prop in wants:
        parsed = header_property(prop)
        if parsed is not None:
            fields = _raw_fields(raw) if fields is None else fields
            out[prop] = _header_value(fields, *parsed)
    if not wants.intersection(BODY_PROPS):
        return out
    text, html, attachments = _body_lists(message)
    if "textBody" in wants:
        out["textBody"] = [p.json(blob) for p in text]
    if "htmlBody" in wants:
        out["htmlBody"] = [p.json(blob) for p in html]
    if "attachments" in wants:
        out["attachments"] = [p.json(blob) for p in attachments]
    if "hasAttachment" in wants:
        out["hasAttachment"] = any(
            p.message.get_content_disposition() == "attachment" or not _is_inline_text(p.message)
            for p in attachments
        )
    if "preview" in wants:
        out["preview"] = _preview(text)
    if "bodyStructure" in wants:
        out["bodyStructure"] = _structure(message, blob)
    if "bodyValues" in wants:
        chosen: dict[str, _Part] = {}
        flags = body_values or {}
        if flags.get("text") or flags.get("all"):
            chosen.update((p.part_id, p) for p in text)
        if flags.get("html") or flags.get("all"):
            chosen.update((p.part_id, p) for p in html)
        if flags.get("all"):
            chosen.update((p.part_id, p) for p in attachments if _is_inline_text(p.message))
        values = {}
        for part_id, part in chosen.items():
            value, problem = _decoded(part.message)
            truncated = False
            if max_body_value_bytes and len(value.encode()) > max_body_value_bytes:
                value = value.encode()[:max_body_value_bytes].decode("utf-8", "ignore")
                truncated = True
            values[part_id] = {
                "value": value,
                "isEncodingProblem": problem,
                "isTruncated": truncated,
            }
        out["bodyValues"] = values
    return out


def header_property(prop: str) -> tuple[str, str, bool] | None:
    """``header:{name}[:as{Form}][:all]`` (RFC 8621 §4.1.3) as (name, form, all), for
    the Raw and Text forms; None when ``prop`` is not one."""
    if not prop.startswith("header:"):
        return None
    parts = prop.split(":")[1:]
    every = bool(parts) and parts[-1] == "all"
    if every:
        parts = parts[:-1]
    if not parts or not parts[0] or len(parts) > 2:
        return None
    form = parts[1] if len(parts) == 2 else "asRaw"
    if form not in ("asRaw", "asText"):
        return None
    name = parts[0]
    if not all(0x21 <= ord(c) <= 0x7E and c != ":" for c in name):
        return None
    return name, form, every


def _raw_fields(raw: bytes) -> list[tuple[str, str]]:
    """The header fields as (name, raw value after the colon), folding kept."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[: end + 2]
    fields: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + "\r\n" + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value))
    return fields


def _header_value(fields: list[tuple[str, str]], name: str, form: str, every: bool) -> Any:
    values = [v for n, v in fields if n.lower() == name.lower()]
    shown: list[Any] = values
    if form == "asText":  # RFC 8621 §4.1.2.2: unfolded, encoded words decoded, trimmed
        shown = []
        for value in values:
            text = decode_header(value)  # linear (the stdlib's is quadratic in words)
            shown.append(" ".join(text.split()))
    if every:
        return shown
    return shown[-1] if shown else None  # RFC 8621 §4.1.3: the last instance


def _structure(message: Message, blob: str) -> dict[str, Any]:
    leaves = {id(p.message): p for p in _leaves(message)}

    def node(part: Message, depth: int) -> dict[str, Any]:
        leaf = leaves.get(id(part))
        if leaf is not None:
            return leaf.json(blob)
        children = part.get_payload() if depth < 20 else []
        return {
            "partId": None,
            "blobId": None,
            "type": part.get_content_type(),
            "subParts": [
                node(c, depth + 1)
                for c in (children if isinstance(children, list) else [])
                if isinstance(c, Message)
            ],
        }

    return node(message, 0)


def _decoded_header(message: Message, name: str) -> str | None:
    # the stored value, not get()'s: for raw UTF-8 (RFC 6532) get() gives U+FFFD
    raw = next(iter(_stored(message, name)), None)
    if raw is None:
        return None
    # correo's decoder is linear: the stdlib's took 65 s for 100,000 encoded words
    return " ".join(decode_header(raw).split())


def find_part(raw: bytes, part_id: str) -> tuple[bytes, str] | None:
    """The decoded octets and media type of part ``part_id`` (for blob downloads)."""
    message = parse_message(raw)
    for part in _leaves(message):
        if part.part_id == part_id:
            payload = part.message.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            return data, part.message.get_content_type()
    return None


def header_view(raw: bytes) -> EmailMessage:
    """The header section parsed once, for filters on From, To, Subject."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[: end + 4]
    parsed = email.message_from_bytes(head, policy=email.policy.compat32)
    return parsed  # type: ignore[return-value]
