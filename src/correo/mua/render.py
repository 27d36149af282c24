"""Messages for a terminal: decoded headers, the text part preferred, HTML as text.

Uses correo's own tolerant parser (``parse_structure``): any bytes render, broken
encodings become replacement characters, never exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from correo.message import (
    decode_header,
    decode_param,
    decode_transfer,
    html_to_text,
    parse_structure,
)
from correo.message.mime import split_header_fields
from correo.message.structure import Part
from correo.message.text import decode_text

__all__ = ["AttachmentInfo", "attachments", "body_text", "header_value", "render"]

_SHOWN = ("date", "from", "to", "cc", "subject")


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    filename: str
    content_type: str
    data: bytes


def charset_decode(raw: bytes, charset: str | None) -> str:
    return decode_text(raw, charset)  # one decoder: never raises, no quadratic codecs


def header_value(data: bytes, name: str, part: Part | None = None) -> str | None:
    """The first ``name`` field of the (top) header, unfolded and RFC 2047-decoded."""
    root = part or parse_structure(data)
    for field, raw in split_header_fields(data[root.header_start : root.header_end]):
        if field == name.lower():
            value = raw.partition(b":")[2].decode("utf-8", "surrogateescape")
            return decode_header(" ".join(value.split()))
    return None


def _leaf_text(data: bytes, p: Part) -> str:
    raw = decode_transfer(data[p.header_end : p.body_end], p.encoding)
    return charset_decode(raw, decode_param(p.params, "charset"))


def _is_attachment(p: Part) -> bool:
    return (p.disposition or "").lower() == "attachment" or (
        _filename(p) is not None and p.type.lower() != "text"
    )


def _filename(p: Part) -> str | None:
    name = decode_param(p.disposition_params, "filename") or decode_param(p.params, "name")
    return decode_header(name) if name else None


def body_text(data: bytes, root: Part | None = None) -> str:
    """The readable body: the first text/plain part, else the first HTML part as text."""
    root = root or parse_structure(data)
    html: Part | None = None
    for p in root.walk():
        if p.is_multipart or p.message is not None or _is_attachment(p):
            continue
        if p is not root and p.envelope is not None:
            continue
        if p.media_type == "text/plain":
            return _leaf_text(data, p)
        if p.media_type == "text/html" and html is None:
            html = p
    return html_to_text(_leaf_text(data, html)) if html is not None else ""


def attachments(data: bytes, root: Part | None = None) -> Iterator[AttachmentInfo]:
    """Every part with a file name or an attachment disposition, decoded."""
    root = root or parse_structure(data)
    for p in root.walk():
        if p.is_multipart or p is root:
            continue
        name = _filename(p)
        if name is None and (p.disposition or "").lower() != "attachment":
            continue
        body = decode_transfer(data[p.header_end : p.body_end], p.encoding)
        yield AttachmentInfo(name or "attachment.bin", p.media_type, body)


def render(data: bytes) -> str:
    root = parse_structure(data)
    lines = []
    for name in _SHOWN:
        value = header_value(data, name, root)
        if value is not None:
            lines.append(f"{name.capitalize()}: {value}")
    files = list(attachments(data, root))
    for a in files:
        lines.append(f"Attachment: {a.filename} ({a.content_type}, {len(a.data)} bytes)")
    lines.append("")
    lines.append(body_text(data, root).replace("\r\n", "\n").rstrip("\n"))
    return "\n".join(lines) + "\n"
