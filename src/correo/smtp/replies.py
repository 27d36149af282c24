"""SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034, RFC 3463).

A ``Reply`` is a value; ``to_bytes()`` is the only place reply text is put on
the wire, so it is also the only place it is sanitised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from correo.smtp.errors import LocalProtocolError

__all__ = [
    "ALREADY_AUTHENTICATED",
    "AUTH_LINE_TOO_LONG",
    "BAD_BASE64",
    "BAD_PARAMS",
    "BAD_RECIPIENT_SYNTAX",
    "BAD_SENDER_SYNTAX",
    "BARE_LINE_END_IN_COMMAND",
    "BARE_LINE_END_IN_DATA",
    "BDAT_IN_PROGRESS",
    "BDAT_SYNTAX_CLOSE",
    "DATA_AFTER_BDAT",
    "DATA_LINE_TOO_LONG",
    "EMPTY_COMMAND",
    "LINE_TOO_LONG",
    "MESSAGE_TOO_BIG",
    "NEED_HELO",
    "NEED_MAIL",
    "NEED_RCPT",
    "NESTED_MAIL",
    "NOT_IN_TRANSACTION",
    "TLS_ALREADY_ACTIVE",
    "TOO_MANY_ERRORS",
    "UNRECOGNIZED",
    "Reply",
    "ehlo_reply",
    "greeting",
    "syntax_error",
]

# RFC 3463 §2: class.subject.detail; class must agree with the reply code.
_STATUS_RE = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
# RFC 5321 §4.2: textstring = 1*(%d09 / %d32-126); CR, LF and other C0 controls
# would let a caller forge extra reply lines, so they become spaces.
_SANITISE = dict.fromkeys((*range(9), *range(10, 32), 127), " ")


@dataclass(frozen=True, slots=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    status: str | None
    text: str | tuple[str, ...] = ""

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:  # RFC 5321 §4.2: reply codes are 2xx..5xx
            raise LocalProtocolError(f"bad reply code {self.code}")
        if self.status is not None and (
            not _STATUS_RE.fullmatch(self.status)
            or (self.code // 100 != 3 and self.status[0] != str(self.code)[0])
        ):
            raise LocalProtocolError(f"bad enhanced status {self.status!r} for {self.code}")

    @property
    def is_positive(self) -> bool:
        """2xx (completion) and 3xx (intermediate) replies."""
        return 200 <= self.code < 400

    @property
    def lines(self) -> tuple[str, ...]:
        """The text lines, sanitised, at least one (possibly empty)."""
        raw = (self.text,) if isinstance(self.text, str) else self.text
        return tuple(line.translate(_SANITISE) for line in raw) or ("",)

    def to_bytes(self) -> bytes:
        """Wire form: ``code-text`` continuation lines, then ``code text``."""
        lines = self.lines
        prefix = f"{self.status} " if self.status else ""
        last = len(lines) - 1
        out = []
        for i, line in enumerate(lines):
            body = f"{prefix}{line}".rstrip(" ")
            if i < last:
                out.append(f"{self.code}-{body}\r\n")  # RFC 5321 §4.2.1: '-' continues
            elif body or self.code == 334:  # RFC 4954 §4: "334" SP [base64], even empty
                out.append(f"{self.code} {body}\r\n")
            else:
                out.append(f"{self.code}\r\n")  # RFC 5321 §4.2: textstring is optional
        return "".join(out).encode("utf-8")


def syntax_error(text: str) -> Reply:
    """A 501 5.5.2 reply for a command whose arguments do not parse."""
    return Reply(501, "5.5.2", text)


def ehlo_reply(hostname: str, greeting: str, extensions: Sequence[str]) -> Reply:
    """EHLO/LHLO answer: first line greets, then one extension keyword a line.

    No enhanced status codes here: RFC 2034 §3 exempts the EHLO response.
    """
    return Reply(250, None, (f"{hostname} greets {greeting}", *extensions))


def greeting(hostname: str, protocol: str = "ESMTP") -> Reply:
    """The 220 banner (RFC 5321 §4.3.1); pass ``protocol="LMTP"`` for LMTP."""
    return Reply(220, None, f"{hostname} {protocol}")


UNRECOGNIZED = Reply(500, "5.5.1", "Command unrecognized")
EMPTY_COMMAND = Reply(500, "5.5.2", "Error: bad syntax")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")  # RFC 5321 §4.5.3.1.4
BARE_LINE_END_IN_COMMAND = Reply(500, "5.5.2", "Syntax error: bare CR or LF in command")
BAD_PARAMS = Reply(501, "5.5.4", "Invalid command parameters")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
BAD_BASE64 = Reply(501, "5.5.2", "Invalid base64 data")
BDAT_SYNTAX_CLOSE = Reply(554, "5.5.4", "Syntax: BDAT size [LAST]; closing connection")
NEED_HELO = Reply(503, "5.5.1", "Error: send HELO/EHLO first")
NEED_MAIL = Reply(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
NESTED_MAIL = Reply(503, "5.5.1", "Error: nested MAIL command")
NOT_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
BDAT_IN_PROGRESS = Reply(503, "5.5.1", "Error: BDAT transfer in progress")
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA and BDAT cannot be mixed")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "Error: TLS already active")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Error: already authenticated")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")  # RFC 4954 §4
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
BARE_LINE_END_IN_DATA = Reply(
    554, "5.6.0", "Message contains bare CR or LF; lines must end with CRLF"
)
DATA_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long in message data")  # RFC 5321 §4.5.3.1.6
