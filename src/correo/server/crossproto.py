"""Recognise an HTTP request sent to a mail port, so the listener can hang up.

A web page can make a browser send an HTTP request to any host and port, and a
server-side fetcher can often be steered the same way. The request body is the
attacker's: on a line-based mail port the lines after the HTTP head would be read as
commands, and an LMTP or SMTP listener would deliver forged mail from inside the
network ("cross-protocol scripting"; Postfix answers it with "hangup after HTTP
request").

An HTTP/1.x client sends its request line first (RFC 9112 §2.1), so the first line a
client sends on a mail port is screened: the listener drops the connection, before
running anything the client sent, when that line

* starts with an HTTP method and a space (``GET ``, ``POST ``, ``CONNECT ``, …) — no
  SMTP, LMTP, POP3 or ManageSieve command has such a name;
* has the shape of a request line, ``token SP target SP HTTP/d.d`` (RFC 9112 §3);
* or looks like a header field, ``token ":"`` (RFC 9112 §5.1) — no command does.

IMAP lines begin with a client-chosen tag, which may be any atom, so on IMAP only the
full request-line shape counts. Pure and incremental: lines of any length are judged
from their first 64 octets, their last 16 and their number of spaces.
"""

from __future__ import annotations

import re

__all__ = ["HttpGuard"]

_HEAD = 64
_TAIL = 16
# RFC 9110 §9 and the registered methods browsers and proxies send.
_METHOD = re.compile(rb"(?:GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH) ")
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 §5.6.2
_REQUEST_START = re.compile(_TOKEN + rb" [^ ]")  # RFC 9112 §3: method SP request-target
_REQUEST_END = re.compile(rb" HTTP/[0-9]\.[0-9]\Z")  # RFC 9112 §2.3: SP HTTP-version
_FIELD = re.compile(_TOKEN + rb":")  # RFC 9112 §5.1: field-name ":"


class HttpGuard:
    """Screens the first line a client sends; see the module docstring."""

    __slots__ = ("_head", "_spaces", "_tagged", "_tail")

    def __init__(self, *, tagged: bool = False) -> None:
        self._tagged = tagged  # IMAP: lines start with a free-form tag
        self._head = b""
        self._tail = b""
        self._spaces = 0

    def feed(self, data: bytes) -> bool | None:
        """True: HTTP, hang up; False: the first line is not HTTP, stop screening;
        None: the first line is not complete yet (``data`` may be passed on)."""
        if not self._head:
            data = data.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before a request
            if not data:
                return None
        end = data.find(b"\n")
        piece = data if end < 0 else data[:end]
        if len(self._head) < _HEAD:
            self._head += piece[: _HEAD - len(self._head)]
        self._tail = (self._tail + piece[-_TAIL:])[-_TAIL:]
        self._spaces += piece.count(b" ")
        if not self._tagged and _METHOD.match(self._head):
            return True
        if end < 0:
            return None
        tail = self._tail.removesuffix(b"\r")
        if (
            self._spaces == 2
            and _REQUEST_START.match(self._head)
            and _REQUEST_END.search(tail) is not None
        ):
            return True
        return not self._tagged and _FIELD.match(self._head) is not None
