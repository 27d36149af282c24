"""HTTP/1.1 request heads and responses (RFC 9112), only as much as a static responder
needs: one GET or HEAD per connection, no bodies, every limit checked. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["MAX_HEAD", "HttpError", "Request", "parse_request", "response"]

MAX_HEAD = 8192  # request line and header fields; more is refused with 431
_MAX_FIELDS = 64
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}


class HttpError(Exception):
    """A request answered with ``status`` and closed."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # GET or HEAD
    path: str  # percent-decoded
    query: dict[str, list[str]]
    host: str  # lower case, without port or final dot


def parse_request(head: bytes) -> Request:
    """The request whose head (up to the empty line, excluded) is ``head``; HttpError if bad."""
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.1 and 1.0")
    if len(lines) - 1 > _MAX_FIELDS:
        raise HttpError(431, "too many header fields")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # RFC 9112 §5.1: no space before ":"
            raise HttpError(400, "malformed header field")
        key = name.lower()
        if key == b"host" and key in fields:
            raise HttpError(400, "more than one Host")  # RFC 9112 §3.2
        fields.setdefault(key, value.strip(b" \t"))
    if method not in (b"GET", b"HEAD"):
        raise HttpError(405, "only GET and HEAD")
    if not target.startswith(b"/") or any(c < 0x21 or c > 0x7E for c in target):
        raise HttpError(400, "malformed request target")
    host_value = fields.get(b"host")
    if host_value is None and version == b"HTTP/1.1":
        raise HttpError(400, "Host is required")  # RFC 9112 §3.2
    try:
        host = (host_value or b"").decode("ascii")
    except UnicodeDecodeError:
        raise HttpError(400, "malformed Host") from None
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    split = urlsplit(target.decode("ascii"))
    return Request(
        method.decode("ascii"),
        unquote(split.path),
        parse_qs(split.query, max_num_fields=20),
        host.lower().rstrip("."),
    )


def response(
    status: int,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    max_age: int = 0,
) -> bytes:
    """A complete response that closes the connection."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "X-Content-Type-Options: nosniff",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    if max_age:
        lines.append(f"Cache-Control: max-age={max_age}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (b"" if head_only else body)
