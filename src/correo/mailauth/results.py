"""Authentication-Results (RFC 8601): writing ours, removing forged ones.

A message may arrive carrying an Authentication-Results field that claims to come from
us; RFC 8601 §5 says to delete those before adding our own, or readers would trust them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from correo.mailauth.canon import split_fields

__all__ = ["ResultItem", "authserv_id_of", "format_results", "strip_forged_results"]

_COMMENT = re.compile(r"\([^()]*\)")
_UNSAFE_VALUE = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.@]")


@dataclass(frozen=True, slots=True)
class ResultItem:
    """One ``method=result (comment) ptype.property=value ...`` clause (RFC 8601 §2.2)."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()
    comment: str = ""
    reason: str = ""


def _value(value: str) -> str:
    """A property value: a token if it can be, else a quoted-string (RFC 8601 §2.2)."""
    if value and not _UNSAFE_VALUE.search(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _comment(text: str) -> str:
    cleaned = "".join(c for c in text if c >= " " and c not in "()\\")
    return f"({cleaned})"


def format_results(authserv_id: str, items: Sequence[ResultItem]) -> bytes:
    """The whole field, folded one clause per line, with its final CRLF."""
    clauses = []
    for item in items:
        parts = [f"{item.method}={item.result}"]
        if item.comment:
            parts.append(_comment(item.comment))
        if item.reason:
            parts.append(f"reason={_value(item.reason)}")  # RFC 8601 §2.2 reasonspec
        parts += [f"{name}={_value(value)}" for name, value in item.properties]
        clauses.append(" ".join(parts))
    if not clauses:
        clauses = ["none"]  # RFC 8601 §2.2: no-result
    text = f"Authentication-Results: {authserv_id};\r\n\t" + ";\r\n\t".join(clauses) + "\r\n"
    return text.encode("utf-8")


def authserv_id_of(value: str) -> str:
    """The authserv-id at the start of a field value (comments skipped, version dropped)."""
    text = value
    for _ in range(4):  # nested comments are rare; a few passes are plenty
        text = _COMMENT.sub(" ", text)
    head = text.split(";", 1)[0].strip()
    return head.split()[0].lower() if head else ""


def strip_forged_results(header: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields claiming ``authserv_id`` (RFC 8601 §5)."""
    ours = authserv_id.lower()
    lowered = header.lower()
    if b"authentication-results" not in lowered:
        return header  # the common case: nothing to scan
    for name, raw in split_fields(header):
        if name == "authentication-results":
            value = raw.partition(b":")[2].decode("utf-8", "replace")
            if authserv_id_of(value) == ours:
                header = header.replace(raw, b"", 1)  # everything else kept byte for byte
    return header
