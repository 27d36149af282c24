"""The sans-I/O SMTP/LMTP client connection (RFC 5321, RFC 2033), h11 style.

The shell calls command methods (``ehlo()``, ``mail()``, ``rcpt()``, ``data()``,
``message_data()``, ``bdat()``…), each returning the bytes to write; it feeds what the
server sends to ``receive_data`` and pulls events with ``next_event``.  The core keeps
the queue of commands awaiting replies, so pipelining (RFC 2920) is the shell writing
several commands before reading: every reply is matched to its command in order.

Events carry the parsed :class:`ServerReply`.  A peer that breaks the reply syntax or a
limit yields :class:`ProtocolViolation` (the connection is then unusable); nothing the
peer sends raises.  Calling a command out of turn raises ``LocalProtocolError`` (a bug
in the shell).

State table (``LEGAL``): which command may be sent in which state.

=============  ==========================================================
CONNECTED      (waiting for the greeting; nothing may be sent but QUIT)
GREETED        EHLO/LHLO, HELO, QUIT
READY          MAIL, STARTTLS, AUTH, RSET, NOOP, QUIT, EHLO, HELO
TRANSACTION    RCPT, DATA, BDAT, RSET, NOOP, QUIT
DATA           message_data(), end_data() (after the 354)
BDAT           bdat()
CLOSED         nothing
=============  ==========================================================
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from correo.sansio import NEED_DATA, Sentinel
from correo.smtp.errors import LocalProtocolError

__all__ = [
    "LEGAL",
    "NEED_DATA",
    "AuthReply",
    "BdatReply",
    "ClientConnection",
    "ClientLimits",
    "ClientState",
    "ConnectionClosed",
    "DataReply",
    "DotEncoder",
    "EhloReply",
    "Extensions",
    "Greeting",
    "LineEnds",
    "MailReply",
    "MessageReply",
    "NeedData",
    "OtherReply",
    "ProtocolViolation",
    "RcptReply",
    "ReplyParser",
    "ServerReply",
    "StartTlsReply",
    "parse_extensions",
]


NeedData = Sentinel  # the type of NEED_DATA, shared by every core (correo.sansio)


class ClientState(enum.Enum):
    CONNECTED = "connected"
    GREETED = "greeted"
    READY = "ready"
    TRANSACTION = "transaction"
    DATA = "data"
    BDAT = "bdat"
    CLOSED = "closed"


_S = ClientState
#: command -> states in which the client may send it.
LEGAL: Final[Mapping[str, frozenset[ClientState]]] = {
    "EHLO": frozenset({_S.GREETED, _S.READY}),
    "HELO": frozenset({_S.GREETED, _S.READY}),
    "STARTTLS": frozenset({_S.READY}),
    "AUTH": frozenset({_S.READY}),
    "MAIL": frozenset({_S.READY}),
    "RCPT": frozenset({_S.TRANSACTION}),
    "DATA": frozenset({_S.TRANSACTION}),
    "BDAT": frozenset({_S.TRANSACTION, _S.BDAT}),
    "RSET": frozenset({_S.READY, _S.TRANSACTION}),
    "NOOP": frozenset({_S.READY, _S.TRANSACTION}),
    "QUIT": frozenset(set(ClientState) - {_S.CLOSED, _S.DATA, _S.BDAT}),
}

# RFC 3463 §2: class "." subject "." detail, class agreeing with the reply code.
_STATUS_RE = re.compile(rb"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


@dataclass(frozen=True, slots=True)
class ServerReply:
    """One reply as received: code, enhanced status if present, text lines."""

    code: int
    status: str | None
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def diagnostic(self) -> str:
        """``550 5.1.1 text`` — the form used in logs and DSN Diagnostic-Code."""
        status = f" {self.status}" if self.status else ""
        return f"{self.code}{status} {self.text}".rstrip()


@dataclass(frozen=True, slots=True)
class Extensions:
    """What the server offered in its EHLO/LHLO reply (RFC 5321 §4.1.1.1)."""

    keywords: Mapping[str, str] = field(default_factory=dict)

    def __contains__(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.keywords  # RFC 2920

    @property
    def size(self) -> int | None:
        """The SIZE limit (RFC 1870 §4); 0 = no fixed limit; None = not offered."""
        if "SIZE" not in self.keywords:
            return None
        value = self.keywords["SIZE"].strip()
        return int(value) if value.isdigit() and len(value) < 20 else 0

    @property
    def eightbitmime(self) -> bool:
        return "8BITMIME" in self.keywords  # RFC 6152

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self.keywords  # RFC 6531

    @property
    def chunking(self) -> bool:
        return "CHUNKING" in self.keywords  # RFC 3030

    @property
    def dsn(self) -> bool:
        return "DSN" in self.keywords  # RFC 3461

    @property
    def starttls(self) -> bool:
        return "STARTTLS" in self.keywords  # RFC 3207

    @property
    def enhanced_status_codes(self) -> bool:
        return "ENHANCEDSTATUSCODES" in self.keywords  # RFC 2034

    @property
    def auth(self) -> tuple[str, ...]:
        """SASL mechanisms (RFC 4954 §3), upper case."""
        return tuple(m.upper() for m in self.keywords.get("AUTH", "").split())


def parse_extensions(reply: ServerReply) -> Extensions:
    """Keywords of an EHLO reply: every line after the first (RFC 5321 §4.1.1.1)."""
    keywords: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword and keyword.replace("-", "").isalnum():
            keywords.setdefault(keyword.upper(), params.strip())
    return Extensions(keywords)


# -- events -----------------------------------------------------------------------------


class Event:
    """Base class of client events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Greeting(Event):
    reply: ServerReply


@dataclass(frozen=True, slots=True)
class EhloReply(Event):
    """Answer to EHLO/LHLO or HELO; ``extensions`` is None after HELO or on failure."""

    reply: ServerReply
    extensions: Extensions | None


@dataclass(frozen=True, slots=True)
class StartTlsReply(Event):
    reply: ServerReply


@dataclass(frozen=True, slots=True)
class AuthReply(Event):
    """334 (send ``auth_response``), 235 (done) or a failure."""

    reply: ServerReply


@dataclass(frozen=True, slots=True)
class MailReply(Event):
    reply: ServerReply


@dataclass(frozen=True, slots=True)
class RcptReply(Event):
    recipient: str
    reply: ServerReply


@dataclass(frozen=True, slots=True)
class DataReply(Event):
    """Answer to DATA: 354 means send the message."""

    reply: ServerReply


@dataclass(frozen=True, slots=True)
class BdatReply(Event):
    """Answer to a non-final BDAT chunk (RFC 3030 §2)."""

    reply: ServerReply


@dataclass(frozen=True, slots=True)
class MessageReply(Event):
    """Answer after the message: SMTP one; LMTP one per accepted recipient (RFC 2033 §4.2)."""

    reply: ServerReply
    recipient: str | None = None


@dataclass(frozen=True, slots=True)
class OtherReply(Event):
    """Answer to RSET, NOOP or QUIT."""

    command: str
    reply: ServerReply


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Event):
    """The server broke the reply syntax or a limit; close the connection."""

    text: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The server closed the connection (``receive_data(b"")``)."""


# -- reply parsing ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Bounds on what a server can make us buffer.

    RFC 5321 §4.5.3.1.5 sets 512 octets per reply line; real servers exceed it a little
    (long EHLO AUTH lists), so the default is lenient.  Lines times length bounds a reply.
    """

    max_line: int = 4096
    max_lines: int = 200


class ReplyParser:
    """Incremental multi-line reply parser (RFC 5321 §4.2.1) with bounded buffering.

    Lines ending in LF alone are accepted (be liberal in what you accept); the buffer
    never holds more than ``max_line`` bytes without a line end.
    """

    __slots__ = ("_buf", "_code", "_lines", "_status", "error", "limits")

    def __init__(self, limits: ClientLimits | None = None) -> None:
        self.limits = limits or ClientLimits()
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code = 0
        self._status: str | None = None
        self.error: str | None = None

    def feed(self, data: bytes) -> list[ServerReply]:
        """Add bytes; return every reply completed.  After an error, nothing more."""
        if self.error is not None:
            return []
        self._buf += data
        out: list[ServerReply] = []
        start = 0
        buf = self._buf
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buf[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.limits.max_line:
                self.error = "reply line too long"
                return out
            reply = self._line(line)
            if isinstance(reply, str):
                self.error = reply
                return out
            if reply is not None:
                out.append(reply)
        del buf[:start]
        if len(buf) > self.limits.max_line:
            self.error = "reply line too long"
        return out

    def _line(self, line: bytes) -> ServerReply | str | None:
        """A completed reply, None while a multi-line reply goes on, or an error text."""
        # RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, or Reply-code "-" for more.
        code_b, sep = line[:3], line[3:4]
        if len(code_b) != 3 or not code_b.isdigit() or sep not in (b"", b" ", b"-"):
            return "malformed reply line"
        code = int(code_b)
        if not 200 <= code <= 599:
            return f"reply code {code} out of range"
        if self._lines and code != self._code:
            return "reply code changed inside a multi-line reply"
        text = line[4:]
        if not self._lines:
            self._code = code
            match = _STATUS_RE.match(text)
            # RFC 3463 §2 / RFC 2034 §4: the status class must match the code's class.
            if match and match.group(1) == code_b[:1] and code_b[:1] in b"245":
                self._status = match.group(0).decode().strip()
            else:
                self._status = None
        if self._status is not None and text.startswith(self._status.encode()):
            text = text[len(self._status) :].lstrip(b" ")
        self._lines.append(text.decode("utf-8", "replace"))
        if len(self._lines) > self.limits.max_lines:
            return "too many reply lines"
        if sep == b"-":
            return None
        reply = ServerReply(code, self._status, tuple(self._lines))
        self._lines = []
        self._status = None
        return reply


# -- outgoing message data --------------------------------------------------------------


class LineEnds:
    """Streaming line-end repair: every bare CR and bare LF becomes CRLF.

    RFC 5321 §2.3.8 allows CR and LF only as the pair CRLF.  A stored message may
    still hold a lone one (an import, a DSN quoting a sloppy original, a local
    script); sent as is, ``LF "." LF`` ends the data early at a lenient next hop and
    what follows runs as SMTP commands there (SMTP smuggling, CVE-2023-51764).  So the
    client repairs line ends as the last step before the wire, whatever path the
    message came by.  A CR at the end of a chunk waits for the next one (it may be
    the first half of a CRLF split across chunks).
    """

    __slots__ = ("_cr",)

    def __init__(self) -> None:
        self._cr = False

    def feed(self, chunk: bytes) -> bytes:
        s = b"\r" + chunk if self._cr else chunk
        self._cr = s.endswith(b"\r")
        if self._cr:
            s = s[:-1]
        crlf = s.count(b"\r\n")
        if s.count(b"\r") == crlf and s.count(b"\n") == crlf:
            return s  # the usual case: nothing to repair
        return s.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")

    def flush(self) -> bytes:
        """End of the message: a CR still waiting was a bare one."""
        if self._cr:
            self._cr = False
            return b"\r\n"
        return b""


class DotEncoder:
    """Streaming dot-stuffing for DATA (RFC 5321 §4.5.2), bytes methods only.

    Line ends are repaired first (:class:`LineEnds`), so the only line end on the wire
    is CRLF and a "." after one is always stuffed.  Two bytes of the previous chunk are
    kept so a CRLF "." split across chunks is still seen; the message is assumed to
    start at a line beginning.
    """

    __slots__ = ("_lines", "_tail")

    def __init__(self) -> None:
        self._tail = b"\r\n"
        self._lines = LineEnds()

    def encode(self, chunk: bytes) -> bytes:
        return self._stuff(self._lines.feed(chunk))

    def _stuff(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        s = self._tail + chunk
        self._tail = s[-2:]
        return s.replace(b"\r\n.", b"\r\n..")[2:]

    def end(self) -> bytes:
        """The end marker; adds the CRLF a message must end with (RFC 5321 §4.1.1.4)."""
        rest = self._stuff(self._lines.flush())
        return rest + (b".\r\n" if self._tail == b"\r\n" else b"\r\n.\r\n")


# -- the connection -----------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    command: str
    recipient: str | None = None
    last: bool = False


class ClientConnection:
    """One SMTP (or LMTP, ``lmtp=True``) client connection's protocol state."""

    def __init__(self, *, lmtp: bool = False, limits: ClientLimits | None = None) -> None:
        self.lmtp = lmtp
        self.state = ClientState.CONNECTED
        self.extensions = Extensions()
        self.extended = False
        self._parser = ReplyParser(limits)
        self._replies: deque[ServerReply] = deque()
        self._pending: deque[_Pending] = deque([_Pending("GREETING")])
        self._events: deque[Event] = deque()
        self._accepted: list[str] = []  # recipients with a 2xx RCPT reply (LMTP)
        self._encoder: DotEncoder | None = None
        self._bdat_lines = LineEnds()
        self._closed = False

    # -- input ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means it closed the connection."""
        if self._closed:
            return
        if not data:
            self._closed = True
            self._events.append(ConnectionClosed())
            self.state = ClientState.CLOSED
            return
        for reply in self._parser.feed(data):
            self._dispatch(reply)
        if self._parser.error is not None:
            self._violation(self._parser.error)

    def next_event(self) -> Event | NeedData:
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    @property
    def awaiting(self) -> int:
        """Commands sent whose replies have not arrived yet."""
        return len(self._pending)

    def _violation(self, text: str) -> None:
        if not self._closed:
            self._closed = True
            self.state = ClientState.CLOSED
            self._events.append(ProtocolViolation(text))

    def _dispatch(self, reply: ServerReply) -> None:
        if self._closed:
            return
        if not self._pending:
            # RFC 5321 §3.8: a 421 may come unsolicited before the server closes.
            if reply.code == 421:
                self._events.append(OtherReply("UNSOLICITED", reply))
                return
            self._violation(f"unexpected reply {reply.diagnostic()}")
            return
        pending = self._pending.popleft()
        self._events.append(self._event(pending, reply))

    def _event(self, p: _Pending, reply: ServerReply) -> Event:
        ok = reply.is_positive
        match p.command:
            case "GREETING":
                if self.state is ClientState.CONNECTED:
                    self.state = ClientState.GREETED if reply.code == 220 else ClientState.CLOSED
                return Greeting(reply)
            case "EHLO" | "HELO":
                ext: Extensions | None = None
                if ok and reply.code == 250:
                    self.state = ClientState.READY
                    self.extended = p.command == "EHLO"
                    ext = parse_extensions(reply) if self.extended else Extensions()
                    self.extensions = ext
                    if not self.extended:
                        ext = None
                return EhloReply(reply, ext)
            case "STARTTLS":
                return StartTlsReply(reply)
            case "AUTH":
                return AuthReply(reply)
            case "MAIL":
                if not ok and self.state is ClientState.TRANSACTION:
                    self.state = ClientState.READY  # no transaction; RCPTs get 503s
                return MailReply(reply)
            case "RCPT":
                assert p.recipient is not None
                if ok:
                    self._accepted.append(p.recipient)
                return RcptReply(p.recipient, reply)
            case "DATA":
                if reply.code == 354 and self.state is ClientState.TRANSACTION:
                    self.state = ClientState.DATA
                    self._encoder = DotEncoder()
                elif self.state is ClientState.TRANSACTION:
                    self.state = ClientState.READY
                return DataReply(reply)
            case "BDAT":
                if p.last:
                    return self._message_reply(p, reply)
                return BdatReply(reply)
            case "END":
                return self._message_reply(p, reply)
            case "LMTP-RCPT":
                return MessageReply(reply, p.recipient)
            case _:
                return OtherReply(p.command, reply)

    def _message_reply(self, p: _Pending, reply: ServerReply) -> Event:
        if self.lmtp and p.recipient == "*":
            # RFC 2033 §4.2: one reply per recipient that got a 2xx RCPT reply, in order.
            accepted, self._accepted = self._accepted, []
            if not accepted:
                return MessageReply(reply, None)
            for rcpt in reversed(accepted[1:]):
                self._pending.appendleft(_Pending("LMTP-RCPT", rcpt))
            return MessageReply(reply, accepted[0])
        return MessageReply(reply, p.recipient)

    # -- output --------------------------------------------------------------------

    def _check(self, command: str) -> None:
        if self.state not in LEGAL[command]:
            raise LocalProtocolError(f"{command} not allowed in state {self.state.value}")

    def _send(self, command: str, line: str, recipient: str | None = None) -> bytes:
        self._pending.append(_Pending(command, recipient))
        if "\r" in line or "\n" in line:
            raise LocalProtocolError("CR or LF inside a command argument")
        return line.encode("utf-8") + b"\r\n"

    def ehlo(self, name: str) -> bytes:
        """EHLO (or LHLO in LMTP, RFC 2033 §4.1)."""
        self._check("EHLO")
        return self._send("EHLO", f"{'LHLO' if self.lmtp else 'EHLO'} {name}")

    def helo(self, name: str) -> bytes:
        """HELO: the RFC 5321 §4.1.4 fallback when EHLO is refused with 5xx."""
        self._check("HELO")
        if self.lmtp:
            raise LocalProtocolError("LMTP has no HELO")
        return self._send("HELO", f"HELO {name}")

    def starttls(self) -> bytes:
        self._check("STARTTLS")
        return self._send("STARTTLS", "STARTTLS")

    def tls_started(self) -> None:
        """After the handshake: RFC 3207 §4.2 discards all knowledge; EHLO again."""
        self.state = ClientState.GREETED
        self.extensions = Extensions()
        self.extended = False

    def auth(self, mechanism: str, initial: str | None = None) -> bytes:
        """AUTH with an optional base64 initial response (RFC 4954 §4; "=" for empty)."""
        self._check("AUTH")
        arg = "" if initial is None else " " + (initial or "=")
        return self._send("AUTH", f"AUTH {mechanism}{arg}")

    def auth_response(self, line: str) -> bytes:
        """A base64 line answering a 334 challenge."""
        self._check("AUTH")
        return self._send("AUTH", line)

    def mail(self, sender: str, params: Sequence[str] = ()) -> bytes:
        """MAIL FROM:<sender> with ESMTP parameters (``"SIZE=123"``, ``"BODY=8BITMIME"``)."""
        self._check("MAIL")
        self.state = ClientState.TRANSACTION
        self._accepted = []
        self._bdat_lines = LineEnds()
        tail = "".join(" " + p for p in params)
        return self._send("MAIL", f"MAIL FROM:<{sender}>{tail}")

    def rcpt(self, recipient: str, params: Sequence[str] = ()) -> bytes:
        self._check("RCPT")
        tail = "".join(" " + p for p in params)
        return self._send("RCPT", f"RCPT TO:<{recipient}>{tail}", recipient)

    def data(self) -> bytes:
        """DATA; may be pipelined after the RCPTs (RFC 2920 §3.1)."""
        self._check("DATA")
        return self._send("DATA", "DATA")

    def message_data(self, chunk: bytes) -> bytes:
        """Message bytes after the 354, dot-stuffed."""
        if self.state is not ClientState.DATA or self._encoder is None:
            raise LocalProtocolError("message data before a 354 reply")
        return self._encoder.encode(chunk)

    def end_data(self) -> bytes:
        """The end-of-data marker; then wait for the MessageReply event(s)."""
        if self.state is not ClientState.DATA or self._encoder is None:
            raise LocalProtocolError("end of data before a 354 reply")
        out = self._encoder.end()
        self._encoder = None
        self.state = ClientState.READY
        self._pending.append(_Pending("END", "*" if self.lmtp else None))
        return out

    def data_failed(self) -> None:
        """The shell could not send the body (354 came with no recipient accepted)."""
        self._encoder = None
        self.state = ClientState.READY

    def bdat(self, chunk: bytes, *, last: bool = False) -> bytes:
        """One BDAT chunk (RFC 3030 §2): no stuffing, the size says where it ends.

        Line ends are repaired as for DATA: the next hop may relay the message with DATA,
        or hold BDAT octets to the DATA line rules and refuse them.
        """
        self._check("BDAT")
        chunk = self._bdat_lines.feed(chunk)
        if last:
            chunk += self._bdat_lines.flush()
        self._pending.append(_Pending("BDAT", "*" if self.lmtp and last else None, last))
        self.state = ClientState.READY if last else ClientState.BDAT
        return f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk

    def rset(self) -> bytes:
        self._check("RSET")
        self.state = ClientState.READY
        return self._send("RSET", "RSET")

    def noop(self) -> bytes:
        self._check("NOOP")
        return self._send("NOOP", "NOOP")

    def quit(self) -> bytes:
        self._check("QUIT")
        self.state = ClientState.CLOSED
        return self._send("QUIT", "QUIT")
