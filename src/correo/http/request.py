"""HTTP/1.1 request heads and responses (RFC 9112), only as much as a static responder
needs: one GET or HEAD per connection, no bodies, every limit checked. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

__all__ = ["MAX_HEAD", "MAX_QUERY_FIELDS", "HttpError", "Request", "parse_request", "response"]

MAX_HEAD = 8192  # request line and header fields; more is refused with 431
MAX_QUERY_FIELDS = 20  # query fields read; the rest are ignored (autoconfig reads one)
_MAX_FIELDS = 64
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §5.6.2
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")  # RFC 9112 §2.3
# RFC 9110 §5.5: a field value holds no CTL but HTAB (bare CR, LF and NUL included)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 9110 §7.2 / RFC 3986 §3.2.2-3: uri-host (IP-literal or reg-name) [":" port]
_HOST = re.compile(rb"(\[[0-9A-Za-z:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
# RFC 9112 §3.2.2 absolute-form: an http(s) URI; its authority ends at "/" or "?"
_ABSOLUTE = re.compile(rb"([Hh][Tt][Tt][Pp][Ss]?)://([^/?]*)(.*)")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
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
    """The request whose head (up to the empty line, excluded) is ``head``; HttpError if bad.

    Linear in the length of ``head``; every malformation is a 4xx (505 for an HTTP
    version other than 1.x), never another exception.
    """
    if len(head) > MAX_HEAD:
        raise HttpError(431, "request head too large")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]):
        raise HttpError(400, "malformed request line")  # RFC 9112 §3
    method, target, version = parts
    if not _VERSION.fullmatch(version):
        raise HttpError(400, "malformed HTTP version")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.1 and 1.0")
    if len(lines) - 1 > _MAX_FIELDS:
        raise HttpError(431, "too many header fields")
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # RFC 9112 §5.1: no space before ":"
            raise HttpError(400, "malformed header field")
        if _BAD_VALUE.search(value):
            raise HttpError(400, "control character in a header field")  # RFC 9110 §5.5
        key = name.lower()
        if key == b"host" and key in fields:
            raise HttpError(400, "more than one Host")  # RFC 9112 §3.2
        fields.setdefault(key, value.strip(b" \t"))
    if method not in (b"GET", b"HEAD"):
        raise HttpError(405, "only GET and HEAD")
    host_value = fields.get(b"host")
    if host_value is None and version == b"HTTP/1.1":
        raise HttpError(400, "Host is required")  # RFC 9112 §3.2
    host = _host(host_value or b"")  # RFC 9112 §3.2: an invalid Host is a 400 as well
    path, query, authority = _target(target)
    if authority is not None:
        host = _host(authority)  # RFC 9112 §3.2.2: the target's authority wins over Host
    return Request(method.decode("ascii"), unquote(path), _query(query), host)


def _target(target: bytes) -> tuple[str, str, bytes | None]:
    """Path, query and (absolute-form only) authority of a request target."""
    if any(c < 0x21 or c > 0x7E for c in target) or b"#" in target:
        raise HttpError(400, "malformed request target")  # RFC 9112 §3.2: no fragment
    if target.startswith(b"/"):  # RFC 9112 §3.2.1 origin-form: absolute-path ["?" query]
        path, _, query = target.partition(b"?")
        return path.decode("ascii"), query.decode("ascii"), None
    match = _ABSOLUTE.fullmatch(target)  # RFC 9112 §3.2.2: servers MUST accept absolute-form
    if match is None:  # asterisk-form and authority-form are for OPTIONS and CONNECT only
        raise HttpError(400, "malformed request target")
    authority, rest = match.group(2), match.group(3)
    if not authority or b"@" in authority:
        # RFC 9110 §4.2.1: an empty host is invalid; §4.2.4: userinfo is an error
        raise HttpError(400, "malformed request target")
    path, _, query = rest.partition(b"?")
    # RFC 9110 §4.2.3: an empty path is "/"
    return (path or b"/").decode("ascii"), query.decode("ascii"), authority


def _host(value: bytes) -> str:
    """The host of a Host value or authority: lower case, without port or final dot."""
    match = _HOST.fullmatch(value)
    if match is None:
        raise HttpError(400, "malformed Host")
    host = match.group(1).decode("ascii").lower()
    return host if host.startswith("[") else host.rstrip(".")


def _query(query: str) -> dict[str, list[str]]:
    """The first MAX_QUERY_FIELDS fields of a query; the rest are ignored."""
    if not query:
        return {}
    fields = query.split("&", MAX_QUERY_FIELDS)[:MAX_QUERY_FIELDS]
    return parse_qs("&".join(fields))


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
