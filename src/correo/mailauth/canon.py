"""DKIM canonicalization (RFC 6376 §3.4) and tag lists (§3.2), shared by DKIM and ARC.

The body side is a streaming :class:`BodyHasher`: it is fed the body in chunks of any size,
canonicalizes whole lines with bytes methods (no per-byte loop), holds back only the
trailing empty lines and the unfinished last line, and so hashes a 100 MB body in bounded
memory.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "BodyHasher",
    "HeaderField",
    "TagError",
    "canon_header",
    "parse_tags",
    "split_fields",
    "strip_b_value",
]

HeaderField = tuple[str, bytes]  # (lowercased name, raw field bytes including the final CRLF)

_WSP_RUN = re.compile(rb"[ \t]+")
_WSP_TO_FIX = re.compile(rb"\t[ \t]*| [ \t]+")  # runs that are not already one SP
_CRLF_RUN_REVERSED = re.compile(rb"(?:\n\r)*")
_B_TAG = re.compile(rb"((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*")
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_PARTIAL_LIMIT = 64 * 1024  # flush a line's safe prefix beyond this: bounded memory
_EMPTY_BLOCK = b"\r\n" * 32768


class TagError(ValueError):
    """A tag-list that RFC 6376 §3.2 does not allow (duplicate tag, bad syntax)."""


def parse_tags(value: str) -> dict[str, str]:
    """RFC 6376 §3.2: ``tag=value`` pairs separated by ``;``, FWS ignored around both."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip(" \t\r\n"):
            continue  # RFC 6376 §3.2: a trailing ";" is allowed
        name, sep, val = part.partition("=")
        name = name.strip(" \t\r\n")
        if not sep or not _TAG_NAME.match(name):
            raise TagError(f"bad tag {part.strip()!r}")
        if name in tags:
            raise TagError(f"duplicate tag {name!r}")  # RFC 6376 §3.2
        tags[name] = val.strip(" \t\r\n")
    return tags


def split_fields(header: bytes) -> list[HeaderField]:
    """The header section as raw fields, folded lines kept with their field."""
    fields: list[HeaderField] = []
    lines = header.split(b"\r\n")
    current: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            raw = b"\r\n".join(current) + b"\r\n"
            name = raw.split(b":", 1)[0]
            if b":" in raw and name and name == name.strip():
                fields.append((name.decode("ascii", "replace").lower(), raw))
        current = [line] if line else []
    return fields


def canon_header(raw: bytes, relaxed: bool) -> bytes:
    """RFC 6376 §3.4.1 (simple) and §3.4.2 (relaxed) header canonicalization."""
    if not relaxed:
        return raw
    name, _, value = raw.partition(b":")
    value = value.replace(b"\r\n", b"")  # unfold
    value = _WSP_RUN.sub(b" ", value).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def strip_b_value(raw: bytes) -> bytes:
    """The signature field with its b= value removed (RFC 6376 §3.7), CRLF dropped."""
    name, _, value = raw.partition(b":")
    value = _B_TAG.sub(lambda m: m.group(1), value, count=1)
    out = name + b":" + value
    return out[:-2] if out.endswith(b"\r\n") else out


class BodyHasher:
    """Streaming body canonicalization and hash (RFC 6376 §3.4.3, §3.4.4, §3.7).

    ``limit`` is the l= tag: only that many canonical octets are hashed.
    ``length`` counts every canonical octet, so l= can be checked against the whole body.
    """

    __slots__ = (
        "_digest",
        "_midline",
        "_partial",
        "_pending",
        "hashed",
        "length",
        "limit",
        "relaxed",
    )

    def __init__(self, relaxed: bool, algorithm: str = "sha256", limit: int | None = None) -> None:
        self.relaxed = relaxed
        self.limit = limit
        self._digest = hashlib.new(algorithm)
        self._partial = b""
        self._pending = 0  # empty lines seen but not yet known to be inside the body
        self._midline = False  # part of the current line was already emitted
        self.hashed = 0
        self.length = 0

    def _emit(self, data: bytes) -> None:
        self.length += len(data)
        if self.limit is not None:
            room = self.limit - self.hashed
            if room <= 0:
                return
            data = data[:room]
        self.hashed += len(data)
        self._digest.update(data)

    def _flush_pending(self) -> None:
        while self._pending:
            n = min(self._pending, len(_EMPTY_BLOCK) // 2)
            self._emit(_EMPTY_BLOCK[: 2 * n])
            self._pending -= n

    def _canon(self, data: bytes) -> bytes:
        if not self.relaxed:
            return data
        if b"\t" in data or b"  " in data:  # C-speed scans; most text needs no change
            data = _WSP_TO_FIX.sub(b" ", data)  # RFC 6376 §3.4.4: reduce WSP runs
        if b" \r\n" in data:
            data = data.replace(b" \r\n", b"\r\n")  # and drop WSP at line ends
        return data

    def _lines(self, block: bytes) -> None:
        """``block`` is whole lines, each ending in CRLF."""
        if self._midline:
            end = block.find(b"\r\n") + 2
            head, block = block[:end], block[end:]
            self._emit(self._canon(head))
            self._midline = False
            if not block:
                return
        canon = self._canon(block)
        tail = canon[len(canon.rstrip(b"\r\n")) :]
        match = _CRLF_RUN_REVERSED.match(tail[::-1])
        clean = match.end() if match else 0  # the final run of whole CRLF pairs
        if clean == len(canon):
            body, empty = b"", clean // 2  # only empty lines
        else:
            body = canon[: len(canon) - clean + 2]  # the last line keeps its own CRLF
            empty = clean // 2 - 1
        if body:
            self._flush_pending()
            self._emit(body)
        self._pending += empty

    def update(self, data: bytes) -> None:
        """Feed body bytes (CRLF line ends, dot-unstuffed) in chunks of any size."""
        if not data:
            return
        buf = self._partial + data if self._partial else data
        cut = buf.rfind(b"\r\n")
        if cut >= 0:
            self._partial = buf[cut + 2 :]
            self._lines(buf[: cut + 2])
        else:
            self._partial = buf
        if len(self._partial) > _PARTIAL_LIMIT:
            safe = self._partial.rstrip(b" \t\r")
            if safe:
                self._flush_pending()
                self._emit(self._canon(safe))
                self._midline = True
                self._partial = self._partial[len(safe) :]

    def digest(self) -> bytes:
        """End of body: RFC 6376 §3.4.3/§3.4.4 final CRLF rules, then the hash."""
        if self._partial or self._midline:
            partial, self._partial = self._partial, b""
            self._lines(partial + b"\r\n")
        if not self.relaxed and self.length == 0:
            self._emit(b"\r\n")  # RFC 6376 §3.4.3: an empty body is one CRLF
        self._pending = 0  # RFC 6376 §3.4.3/§3.4.4: trailing empty lines ignored
        return self._digest.digest()
