"""The sans-I/O SMTP/LMTP server connection.

The shell feeds bytes with ``receive_data``, pulls events with
``next_event`` and answers each command event with ``send(reply)``; the reply
code drives the state machine (h11 style). Sequencing rules live in one table,
``LEGAL``, mapping (state, command class) to ``None`` (allowed) or the 503
reply.

Answering rules: every event needs exactly one ``send()`` except
``DataChunk`` and ``ConnectionClosed``; in LMTP mode a final ``DataEnd`` needs
``replies_expected`` sends (one per accepted recipient, RFC 2033 §4.2), or one
``send_many()``. Unsolicited ``send()`` is allowed only for the 220/554
greeting before the first event and for 421 (which closes).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from correo import sansio
from correo.sansio import NEED_DATA, ReceiveBuffer, Sentinel
from correo.smtp.commands import (
    Auth,
    Bdat,
    Command,
    Data,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
    command_verb,
    decode_base64,
    parse_command,
)
from correo.smtp.data import DotDecoder, LineChecker
from correo.smtp.errors import LocalProtocolError
from correo.smtp.replies import (
    ALREADY_AUTHENTICATED,
    AUTH_LINE_TOO_LONG,
    BAD_BASE64,
    BARE_LINE_END_IN_COMMAND,
    BARE_LINE_END_IN_DATA,
    BDAT_IN_PROGRESS,
    DATA_AFTER_BDAT,
    DATA_LINE_TOO_LONG,
    LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    NEED_HELO,
    NEED_MAIL,
    NEED_RCPT,
    NESTED_MAIL,
    NOT_IN_TRANSACTION,
    TLS_ALREADY_ACTIVE,
    TOO_MANY_ERRORS,
    Reply,
)

__all__ = [
    "COMMAND_STATES",
    "LEGAL",
    "NEED_DATA",
    "AuthCancel",
    "AuthResponse",
    "CommandError",
    "ConnectionClosed",
    "DataChunk",
    "DataEnd",
    "NeedData",
    "ServerConnection",
    "SmtpLimits",
    "State",
]


NeedData = Sentinel  # the type of NEED_DATA, shared by every core (correo.sansio)


@dataclass(frozen=True, slots=True)
class DataChunk(Event):
    """Message bytes: dot-unstuffed (DATA) or raw (BDAT), CRLF kept. Not answered."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd(Event):
    """End of the message (DATA) or of one BDAT chunk; ``error`` says why to reject."""

    error: Reply | None
    last: bool = True
    bdat: bool = False


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    """A decoded SASL response line (RFC 4954 §4), after the shell sent 334."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthCancel(Event):
    """The client sent ``*`` (RFC 4954 §4); answer 501 5.0.0."""


@dataclass(frozen=True, slots=True)
class CommandError(Event):
    """A malformed or out-of-sequence command; send ``reply``, then close if ``close``."""

    reply: Reply
    close: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed (or the session ended); any partial message is void. Not answered."""


@dataclass(frozen=True, slots=True)
class SmtpLimits:
    """Bounds on what a peer can make us buffer or tolerate.

    max_command_line: octets incl. CRLF. RFC 5321 §4.5.3.1.4 sets 512 as a
        minimum; extensions (SIZE, BODY, SMTPUTF8, DSN params) need more.
    max_data_line: octets incl. CRLF of an unstuffed message line, 0 = no check
        (RFC 5321 §4.5.3.1.6 says 1000; real mail sometimes exceeds it).
    max_message_size: unstuffed octets per message, 0 = unlimited (RFC 1870).
    max_auth_line: a SASL line or AUTH command; RFC 4954 §4 suggests 12288.
    max_unknown_commands: consecutive bad commands before 421 and close, 0 = never.
    """

    max_command_line: int = 2048
    max_data_line: int = 0
    max_message_size: int = 0
    max_auth_line: int = 12288
    max_unknown_commands: int = 20

    def __post_init__(self) -> None:
        if self.max_command_line < 16 or self.max_auth_line < 16:
            raise ValueError("line limits must be at least 16 octets")
        if min(self.max_data_line, self.max_message_size, self.max_unknown_commands) < 0:
            raise ValueError("limits must not be negative")


class State(enum.Enum):
    """Where the session is; the first five read command lines."""

    INITIAL = "initial"  # connected (or just after STARTTLS), no HELO/EHLO yet
    GREETED = "greeted"  # HELO/EHLO accepted, no transaction
    MAIL = "mail"  # MAIL accepted, no RCPT yet
    RCPT = "rcpt"  # at least one RCPT accepted
    CHUNKING = "chunking"  # a non-LAST BDAT chunk answered; more BDAT expected
    DATA = "data"  # reading DATA content until CRLF.CRLF
    BDAT = "bdat"  # reading the octets of a BDAT chunk
    AUTH = "auth"  # the next line is a SASL response
    TLS_PENDING = "tls-pending"  # STARTTLS answered 220; waiting for tls_started()
    CLOSED = "closed"


COMMAND_STATES: Final = (State.INITIAL, State.GREETED, State.MAIL, State.RCPT, State.CHUNKING)
_COMMANDS: Final = (
    Helo,
    StartTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
)
# RFC 5321 §4.1.4: NOOP, HELP, EXPN, VRFY, RSET (and QUIT) are allowed at any
# time; EHLO may restart at any time.
_ANYTIME: Final = (Helo, Rset, Noop, Quit, Vrfy, Expn, Help)

# The state table: (state, command) -> None if legal, else the reply to send.
LEGAL: Final[dict[tuple[State, type[Command]], Reply | None]] = {
    **{(s, c): None for s in COMMAND_STATES for c in _ANYTIME},
    (State.INITIAL, StartTls): NEED_HELO,
    (State.INITIAL, Auth): NEED_HELO,
    (State.INITIAL, MailFrom): NEED_HELO,
    (State.INITIAL, RcptTo): NEED_HELO,
    (State.INITIAL, Data): NEED_HELO,
    (State.INITIAL, Bdat): NEED_HELO,
    (State.GREETED, StartTls): None,
    (State.GREETED, Auth): None,
    (State.GREETED, MailFrom): None,
    (State.GREETED, RcptTo): NEED_MAIL,
    (State.GREETED, Data): NEED_MAIL,
    (State.GREETED, Bdat): NEED_MAIL,
    (State.MAIL, StartTls): NOT_IN_TRANSACTION,  # TLS resets the session (RFC 3207 §4.2)
    (State.MAIL, Auth): NOT_IN_TRANSACTION,  # RFC 4954 §4: not during a mail transaction
    (State.MAIL, MailFrom): NESTED_MAIL,
    (State.MAIL, RcptTo): None,
    (State.MAIL, Data): NEED_RCPT,  # RFC 5321 §3.3: no valid recipients -> 503/554
    (State.MAIL, Bdat): NEED_RCPT,
    (State.RCPT, StartTls): NOT_IN_TRANSACTION,
    (State.RCPT, Auth): NOT_IN_TRANSACTION,
    (State.RCPT, MailFrom): NESTED_MAIL,
    (State.RCPT, RcptTo): None,
    (State.RCPT, Data): None,
    (State.RCPT, Bdat): None,
    (State.CHUNKING, StartTls): NOT_IN_TRANSACTION,
    (State.CHUNKING, Auth): NOT_IN_TRANSACTION,
    (State.CHUNKING, MailFrom): NESTED_MAIL,
    (State.CHUNKING, RcptTo): BDAT_IN_PROGRESS,
    (State.CHUNKING, Data): DATA_AFTER_BDAT,  # RFC 3030 §2: DATA and BDAT not mixed
    (State.CHUNKING, Bdat): None,
}
assert len(LEGAL) == len(COMMAND_STATES) * len(_COMMANDS)

_UNANSWERED = (DataChunk, ConnectionClosed)


class ServerConnection:
    """One SMTP (or LMTP) server session as a pure state machine."""

    def __init__(self, limits: SmtpLimits | None = None, *, lmtp: bool = False) -> None:
        self.limits = limits if limits is not None else SmtpLimits()
        self.lmtp = lmtp
        self.tls_active = False  # set by the shell (implicit TLS) or by tls_started()
        self.authenticated = False
        self._state = State.INITIAL
        self._in = ReceiveBuffer()
        self._awaiting: Event | None = None
        self._replies_left = 0
        self._queued: Event | None = None  # a DataEnd/CommandError behind a DataChunk
        self._errors = 0
        self._greeted_once = False  # greeting or first event seen
        self._auth_return = State.GREETED
        self._reset_transaction()
        self._dot: DotDecoder | None = None
        self._bdat_left = 0
        self._bdat_last = False
        self._bdat_reject: Reply | None = None
        self._bdat_return = State.GREETED

    # -- public API -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state (for logs and tests)."""
        return self._state

    @property
    def rcpt_count(self) -> int:
        """Recipients accepted (2xx) in the current transaction."""
        return self._rcpts

    @property
    def smtputf8(self) -> bool:
        """Whether the current transaction's MAIL carried SMTPUTF8 and was accepted."""
        return self._smtputf8

    @property
    def replies_expected(self) -> int:
        """How many ``send()`` calls the pending event still needs (0 if none)."""
        return self._replies_left

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means EOF."""
        if self._state is State.CLOSED:
            return
        if self._in.eof and data:
            raise LocalProtocolError("receive_data() after EOF")
        self._in.feed(data)

    def next_event(self) -> Event | Literal[NeedData.NEED_DATA]:
        """The next event, or NEED_DATA when more bytes are needed."""
        if self._awaiting is not None:
            raise LocalProtocolError(f"{type(self._awaiting).__name__} has not been answered")
        if self._state is State.TLS_PENDING:
            raise LocalProtocolError("call tls_started() after the TLS handshake")
        self._greeted_once = True
        ev = self._next()
        if ev is NEED_DATA:
            return ev
        if isinstance(ev, ConnectionClosed):
            self._state = State.CLOSED
            self._in.data.clear()
        elif not isinstance(ev, _UNANSWERED):
            self._awaiting = ev
            self._replies_left = 1
            if self.lmtp and isinstance(ev, DataEnd) and ev.last:
                self._replies_left = max(1, self._rcpts)  # RFC 2033 §4.2
        return ev

    def send(self, reply: Reply) -> bytes:
        """Answer the pending event; returns the bytes to write."""
        ev = self._awaiting
        if ev is None:
            return self._unsolicited(reply)
        self._replies_left -= 1
        if self._replies_left == 0:
            self._awaiting = None
            self._transition(ev, reply)
        if reply.code == 421:  # RFC 5321 §3.8: 421 means the server is closing
            self._close()
        return reply.to_bytes()

    def send_many(self, replies: Iterable[Reply]) -> bytes:
        """Several ``send()`` calls at once (LMTP per-recipient replies)."""
        return b"".join([self.send(r) for r in replies])

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: forget everything plaintext."""
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        # RFC 3207 §4.2: discard buffered plaintext (command injection, CVE-2011-0411)
        # and all knowledge from the client, including EHLO and authentication.
        self._in.clear()
        self.tls_active = True
        self.authenticated = False
        self._errors = 0
        self._reset_transaction()
        self._state = State.INITIAL

    # -- state changes from replies ------------------------------------------------

    def _reset_transaction(self) -> None:
        self._rcpts = 0
        self._smtputf8 = False
        self._size = 0
        self._too_big = False
        self._bdat_failed: Reply | None = None
        self._bdat_lines = LineChecker(self.limits.max_data_line)

    def _close(self) -> None:
        self._state = State.CLOSED
        self._awaiting = None
        self._replies_left = 0
        self._queued = None
        self._in.data.clear()

    def _greeted_state(self) -> State:
        return State.INITIAL if self._state is State.INITIAL else State.GREETED

    def _transition(self, ev: Event, reply: Reply) -> None:
        ok = 200 <= reply.code < 300
        match ev:
            case Helo():
                if ok:  # RFC 5321 §4.1.4: EHLO resets like RSET
                    self._reset_transaction()
                    self._state = State.GREETED
            case MailFrom(params=params):
                if ok:
                    self._state = State.MAIL
                    self._smtputf8 = "SMTPUTF8" in params  # RFC 6531 §3.4
            case RcptTo():
                if ok:
                    self._rcpts += 1
                    self._state = State.RCPT
            case Data():
                if reply.code == 354:  # RFC 5321 §4.1.1.4: 354 starts the mail data
                    self._state = State.DATA
                    self._dot = DotDecoder(self.limits.max_data_line)
            case DataEnd(last=last):
                if last:
                    self._reset_transaction()
                    self._state = State.GREETED
                else:
                    self._state = State.CHUNKING
                    if not ok and self._bdat_failed is None:
                        self._bdat_failed = reply  # RFC 3030 §2: discard later chunks
            case Rset():
                if ok:
                    self._reset_transaction()
                    self._state = self._greeted_state()
            case StartTls():
                if reply.code == 220:  # RFC 3207 §4: 220 -> TLS negotiation starts
                    self._state = State.TLS_PENDING
            case Auth() | AuthResponse():
                if reply.code == 334:  # RFC 4954 §4: a server challenge
                    self._state = State.AUTH
                else:
                    if reply.code == 235:  # RFC 4954 §6: authentication succeeded
                        self.authenticated = True
                    self._state = self._auth_return
            case AuthCancel():
                self._state = self._auth_return
            case Quit():
                if reply.code == 221:  # RFC 5321 §4.1.1.10
                    self._close()
            case _:
                pass  # CommandError: the state was settled when it was emitted

    def _unsolicited(self, reply: Reply) -> bytes:
        if reply.code == 421:
            self._close()
            return reply.to_bytes()
        if reply.code in (220, 554) and not self._greeted_once:  # RFC 5321 §3.1 greeting
            self._greeted_once = True
            return reply.to_bytes()
        raise LocalProtocolError("send() with no event to answer")

    # -- reading -------------------------------------------------------------------

    def _next(self) -> Event | Literal[NeedData.NEED_DATA]:
        if self._state is State.CLOSED:
            return ConnectionClosed()
        if self._queued is not None:
            ev, self._queued = self._queued, None
            return ev
        match self._state:
            case State.DATA:
                return self._next_data()
            case State.BDAT:
                return self._next_bdat()
            case State.AUTH:
                return self._next_auth()
            case _:
                return self._next_command()

    def _no_more(self) -> Event | Literal[NeedData.NEED_DATA]:
        return ConnectionClosed() if self._in.eof else NEED_DATA

    def _take_line(self, limit: int) -> bytes | Reply | None:
        """One CRLF-terminated line without CRLF, an error reply, or None (need data)."""
        line = self._in.take_line(limit)
        if line is None:
            return None
        if line is sansio.LINE_TOO_LONG:
            return LINE_TOO_LONG  # RFC 5321 §4.5.3.1.4; skipped to its LF, unstored
        # RFC 5321 §2.3.8: lines end with CRLF only; a lone CR or LF is an error.
        if not line.endswith(b"\r") or line.find(b"\r", 0, len(line) - 1) >= 0:
            return BARE_LINE_END_IN_COMMAND
        return line[:-1]

    def _error(self, reply: Reply, close: bool = False) -> CommandError:
        self._errors += 1
        limit = self.limits.max_unknown_commands
        if limit and self._errors >= limit:
            reply, close = TOO_MANY_ERRORS, True
        if close:
            self._state = State.CLOSED
            self._in.data.clear()
        return CommandError(reply, close)

    def _command_limit(self) -> int:
        # RFC 4954 §4: an AUTH line with an initial response may be long.
        limit = self.limits.max_command_line
        if self._in.data[:5].upper() == b"AUTH ":
            limit = max(limit, self.limits.max_auth_line)
        return limit

    def _next_command(self) -> Event | Literal[NeedData.NEED_DATA]:
        line = self._take_line(self._command_limit())
        if line is None:
            return self._no_more()
        if isinstance(line, Reply):
            return self._error(line)
        cmd = parse_command(line, lmtp=self.lmtp, smtputf8=self._smtputf8)
        if isinstance(cmd, Reply):
            # RFC 3030 §2: after a bad BDAT we cannot know how many octets to skip.
            return self._error(cmd, close=command_verb(line) == b"BDAT")
        verdict = LEGAL[(self._state, type(cmd))]
        if verdict is None:
            if isinstance(cmd, StartTls) and self.tls_active:
                verdict = TLS_ALREADY_ACTIVE  # RFC 3207 §4: no STARTTLS inside TLS
            elif isinstance(cmd, Auth) and self.authenticated:
                verdict = ALREADY_AUTHENTICATED  # RFC 4954 §4: one AUTH per session
        if isinstance(cmd, Bdat):
            # RFC 3030 §2: the octets follow the command whatever its fate; consume them.
            self._bdat_left = cmd.size
            self._bdat_last = cmd.last
            self._bdat_reject = verdict
            self._bdat_return = self._state
            self._state = State.BDAT
            return self._next_bdat()
        if verdict is not None:
            return self._error(verdict)
        self._errors = 0
        if isinstance(cmd, Auth):
            self._auth_return = self._state
        return cmd

    def _account(self, data: bytes) -> bytes:
        """Count message octets; past the size limit, stop passing them on (RFC 1870)."""
        limit = self.limits.max_message_size
        before = self._size
        self._size += len(data)
        if not limit or self._size <= limit:
            return data
        self._too_big = True
        return data[: max(0, limit - before)]

    def _next_data(self) -> Event | Literal[NeedData.NEED_DATA]:
        dot = self._dot
        assert dot is not None
        if not self._in.data:
            return self._no_more()
        chunk = bytes(self._in.data)
        self._in.data.clear()
        out, rest = dot.feed(chunk)
        out = self._account(out)
        end: Event | None = None
        if rest is not None:
            self._in.data += rest
            error = None
            if dot.bare_line_end:
                error = BARE_LINE_END_IN_DATA  # CVE-2023-51764 class smuggling
            elif dot.line_too_long:
                error = DATA_LINE_TOO_LONG
            elif self._too_big:
                error = MESSAGE_TOO_BIG
            self._dot = None
            end = DataEnd(error, last=True, bdat=False)
        if out:
            self._queued = end
            return DataChunk(out)
        if end is not None:
            return end
        return self._no_more()

    def _next_bdat(self) -> Event | Literal[NeedData.NEED_DATA]:
        piece = b""
        if self._bdat_left:
            if not self._in.data:
                return self._no_more()
            n = min(self._bdat_left, len(self._in.data))
            piece = bytes(self._in.data[:n])
            del self._in.data[:n]
            self._bdat_left -= n
            if self._bdat_reject is not None:
                piece = b""
            else:
                # RFC 3030 §2: BDAT octets are raw, but they are relayed later over DATA,
                # so they obey the same line rules (bare CR/LF: SMTP smuggling).
                lines = self._bdat_lines
                lines.feed(piece)
                piece = b"" if lines.bare_line_end else self._account(piece)
        end: Event | None = None
        if not self._bdat_left:
            if self._bdat_reject is not None:
                self._state = self._bdat_return
                end = self._error(self._bdat_reject)
            else:
                lines = self._bdat_lines
                if self._bdat_last:
                    lines.finish()
                error = self._bdat_failed
                if error is None and lines.bare_line_end:
                    error = BARE_LINE_END_IN_DATA  # the reply DATA gives (CVE-2023-51764)
                elif error is None and lines.line_too_long:
                    error = DATA_LINE_TOO_LONG
                elif error is None and self._too_big:
                    error = MESSAGE_TOO_BIG
                self._errors = 0
                end = DataEnd(error, last=self._bdat_last, bdat=True)
        if piece:
            self._queued = end
            return DataChunk(piece)
        return end if end is not None else self._no_more()

    def _next_auth(self) -> Event | Literal[NeedData.NEED_DATA]:
        line = self._take_line(self.limits.max_auth_line)
        if line is None:
            return self._no_more()
        self._state = self._auth_return  # any failure below ends the exchange
        if line is LINE_TOO_LONG:
            return self._error(AUTH_LINE_TOO_LONG)
        if isinstance(line, Reply):
            return self._error(line)
        if line == b"*":  # RFC 4954 §4: the client cancels
            return AuthCancel()
        data = decode_base64(line)
        if data is None:
            return self._error(BAD_BASE64)  # RFC 4954 §4: 501 on undecodable response
        self._state = State.AUTH
        return AuthResponse(data)
