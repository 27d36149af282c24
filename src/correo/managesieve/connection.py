"""The ManageSieve server connection as a pure state machine (h11 style).

``receive_data(bytes)`` buffers, ``next_event()`` returns a command, a
:class:`CommandError` carrying the NO/BYE to send, :class:`ConnectionClosed`, or
``NEED_DATA``.  Each command is answered with ``send(Response)`` (data blocks such as
LISTSCRIPTS lines go first through ``send_data``); the response drives the state:
an OK to AUTHENTICATE authenticates, an OK to STARTTLS waits for ``tls_started()``.

Bounds hold while reading: a command line (outside literals) is at most
``max_line`` bytes, and literals announced larger than ``max_literal`` are refused
from their header, their octets skipped without being buffered.

A refused command is dropped whole: the rest of its line and every literal it
announces (``{n+}`` or the tolerated ``{n}``; ManageSieve has no continuation, so a
client sends the octets at once), so literal octets never run as a command.
"""

from __future__ import annotations

import base64
import enum
import re
from dataclasses import dataclass, field

from correo.sansio import NEED_DATA, ConnectionClosed, LocalProtocolError, ReceiveBuffer, Sentinel

from .commands import (
    COMMANDS,
    ArgumentError,
    Authenticate,
    Capability,
    CheckScript,
    Command,
    DeleteScript,
    GetScript,
    HaveSpace,
    ListScripts,
    Logout,
    Noop,
    PutScript,
    RenameScript,
    SaslCancel,
    SaslResponse,
    SetActive,
    StartTls,
    Unauthenticate,
    build_command,
)
from .responses import Response, quote

__all__ = [
    "LEGAL",
    "NEED_DATA",
    "CommandError",
    "ConnectionClosed",
    "LocalProtocolError",
    "NeedData",
    "SieveLimits",
    "SieveServerConnection",
    "State",
]


NeedData = Sentinel  # the type of NEED_DATA, shared by every core (correo.sansio)


@dataclass(frozen=True, slots=True)
class CommandError:
    """A malformed or illegal command: send ``response``; ``close`` after BYE."""

    response: Response
    close: bool = False


@dataclass(frozen=True, slots=True)
class SieveLimits:
    max_line: int = 8192  # bytes of a command outside its literals
    max_literal: int = 1024 * 1024  # bytes of all literals of one command
    max_errors: int = 20  # bad commands in a row before BYE
    max_skip: int = 128 * 1024 * 1024  # octets of a refused literal read and dropped; more: BYE


class State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    SASL = "sasl"  # AUTHENTICATE in progress: the next line is a client response
    AUTHENTICATED = "authenticated"
    TLS_PENDING = "tls-pending"
    CLOSED = "closed"


_ANY = (Capability, Logout, Noop)
#: Which command is legal in which state (RFC 5804 §2).
LEGAL: dict[State, frozenset[type]] = {
    State.NOT_AUTHENTICATED: frozenset({*_ANY, StartTls, Authenticate}),
    State.AUTHENTICATED: frozenset(
        {
            *_ANY,
            HaveSpace,
            PutScript,
            ListScripts,
            SetActive,
            GetScript,
            DeleteScript,
            RenameScript,
            CheckScript,
            Unauthenticate,
        }
    ),
    State.SASL: frozenset({SaslResponse, SaslCancel}),
    State.TLS_PENDING: frozenset(),
    State.CLOSED: frozenset(),
}

_ATOM = re.compile(rb"[A-Za-z]{1,32}")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\]){0,1024})"')
_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}\r\n")
_NUMBER = re.compile(rb"[0-9]{1,10}")
_UNQUOTE = re.compile(rb"\\([\"\\])")
#: A literal announced at the end of a refused line (RFC 5804 §4): its octets follow.
_LITERAL_AT_END = re.compile(rb"([0-9]+)\+?\}\Z")
_TAIL = 64  # bytes of a dropped line kept to see a literal announced at its end


@dataclass(frozen=True, slots=True)
class _Line:
    args: list[bytes | int]
    end: int
    atom: bytes | None


@dataclass(frozen=True, slots=True)
class _Need:
    pass


@dataclass(frozen=True, slots=True)
class _Bad:
    """A refused command: the whole of it, from the buffer start, is dropped."""

    text: str


@dataclass(slots=True)
class _Progress:
    """How far an incomplete command has been read: the next bytes resume it there, so a
    command arriving a few octets at a time is parsed once, not once per arrival."""

    atom: bool = True
    pos: int = 0  # where the next argument (or its separating space) starts
    args: list[bytes | int] = field(default_factory=list)
    literal_total: int = 0
    name: bytes | None = None


def _parse(buf: bytearray, limits: SieveLimits, progress: _Progress) -> _Line | _Need | _Bad:
    """One line: ``atom *(SP arg) CRLF`` (or, in SASL, just one string).

    ``progress`` holds the complete arguments of an earlier call on the same buffer; a
    ``_Need`` answer leaves it at the first incomplete argument.
    """
    atom = progress.atom
    pos = progress.pos
    name = progress.name
    if atom and name is None:
        m = _ATOM.match(buf)
        if m is None:
            if len(buf) < 2 or buf.find(b"\r\n") >= 0:
                return _Bad("Bad command") if len(buf) >= 2 else _Need()
            return _Bad("Bad command")
        if m.end() == len(buf):
            return _Need()
        name = progress.name = m.group()
        pos = progress.pos = m.end()
    args = progress.args
    literal_total = progress.literal_total
    while True:
        progress.pos, progress.literal_total = pos, literal_total  # all before is complete
        if buf.startswith(b"\r\n", pos):
            return _Line(args, pos + 2, name)
        if pos >= len(buf) or (pos + 1 == len(buf) and buf[pos] == 0x0D):
            break
        if atom or args:
            if buf[pos] != 0x20:
                return _Bad("Syntax error: expected a space")
            pos += 1
            if pos >= len(buf):
                break
        elif buf[pos] == 0x20:  # tolerate a leading space in a SASL response line
            pos += 1
            continue
        first = buf[pos]
        if first == 0x22:  # '"'
            m = _QUOTED.match(buf, pos)
            if m is None:
                crlf = buf.find(b"\r\n", pos)
                if crlf >= 0 or len(buf) - pos > 1026:
                    return _Bad("Syntax error in quoted string")
                break
            args.append(_UNQUOTE.sub(rb"\1", m.group(1)))
            pos = m.end()
        elif first == 0x7B:  # '{': RFC 5804 §4 literal, {n+} (and {n}, tolerated)
            m = _LITERAL.match(buf, pos)
            if m is None:
                if len(buf) - pos < 16 and buf.find(b"\r\n", pos) < 0:
                    break
                return _Bad("Syntax error in literal")
            size = int(m.group(1))
            if literal_total + size > limits.max_literal:
                return _Bad("Literal too big")  # dropped with the line
            if len(buf) < m.end() + size:
                return _Need()
            literal_total += size
            args.append(bytes(buf[m.end() : m.end() + size]))
            pos = m.end() + size
        elif 0x30 <= first <= 0x39:
            m = _NUMBER.match(buf, pos)
            assert m is not None
            if m.end() == len(buf):
                break
            args.append(int(m.group()))
            pos = m.end()
        else:
            return _Bad("Syntax error: expected a string")
    if len(buf) - literal_total > limits.max_line:
        return _Bad("Line too long")
    return _Need()


class SieveServerConnection:
    """One ManageSieve session's protocol state; performs no I/O."""

    def __init__(self, limits: SieveLimits | None = None) -> None:
        self.limits = limits or SieveLimits()
        self.tls_active = False
        self._state = State.NOT_AUTHENTICATED
        self._in = ReceiveBuffer()
        self._skip = 0  # bytes still to drop (the octets of a refused literal)
        self._skip_line = False  # then drop the rest of the refused command
        self._tail = b""  # the end of the part of that command already dropped
        self._awaiting: Command | None = None
        self._errors = 0
        self._error_pending = False  # a CommandError waits for its NO
        self._progress = _Progress()  # the command being read, as far as it has arrived

    @property
    def state(self) -> State:
        return self._state

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means EOF."""
        if self._state is State.CLOSED:
            return
        if data and self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
            if not data:
                return
        self._in.feed(data)  # b"": EOF

    def next_event(self) -> Command | CommandError | ConnectionClosed | NeedData:
        if self._awaiting is not None or self._error_pending:
            raise LocalProtocolError("the previous event has not been answered")
        if self._state is State.TLS_PENDING:
            raise LocalProtocolError("call tls_started() after the TLS handshake")
        if self._state is State.CLOSED:
            return ConnectionClosed()
        if self._skip_line:
            done = self._drop_line()
            if done is None:
                return self._too_big()
            if not done:
                return self._end_or_need()
        sasl = self._state is State.SASL
        if self._progress.atom is sasl:  # a new state reads its lines anew
            self._progress = _Progress(atom=not sasl)
        parsed = _parse(self._in.data, self.limits, self._progress)
        if isinstance(parsed, _Need):
            return self._end_or_need()
        self._progress = _Progress(atom=not sasl)  # the buffer's start moves on
        if isinstance(parsed, _Bad):
            self._skip_line = True
            if self._drop_line() is None:
                return self._too_big()
            if sasl:  # RFC 5804 §2.1: a broken exchange fails the authentication
                self._state = State.NOT_AUTHENTICATED
            return self._error(parsed.text)
        del self._in.data[: parsed.end]
        event: Command
        if sasl:
            if len(parsed.args) != 1 or not isinstance(parsed.args[0], bytes):
                self._state = State.NOT_AUTHENTICATED
                return self._error("Expected one string in the SASL exchange")
            value = parsed.args[0]
            event = SaslCancel() if value == b"*" else SaslResponse(value)  # RFC 5804 §2.1
        else:
            assert parsed.atom is not None
            name = parsed.atom.decode("ascii").upper()
            if name not in COMMANDS:
                return self._error(f"Unknown command {name[:32]}")
            try:
                event = build_command(name, parsed.args)
            except ArgumentError as exc:
                return self._error(f"{name}: {exc}")
            if type(event) not in LEGAL[self._state]:
                return self._error(f"{name} is not allowed now")
            if isinstance(event, StartTls) and self.tls_active:
                return self._error("TLS is already active")
        self._errors = 0
        self._awaiting = event
        return event

    def send_data(self, data: bytes) -> bytes:
        """Data lines before the response (capabilities, script list, script)."""
        if self._awaiting is None and self._state is not State.NOT_AUTHENTICATED:
            raise LocalProtocolError("send_data() with no command to answer")
        return data

    def send_challenge(self, data: bytes) -> bytes:
        """A SASL server challenge (RFC 5804 §2.1): a string; the client answers one."""
        if not isinstance(self._awaiting, (Authenticate, SaslResponse)):
            raise LocalProtocolError("send_challenge() outside AUTHENTICATE")
        self._awaiting = None
        self._state = State.SASL
        return quote(base64.b64encode(data)) + b"\r\n"

    def send(self, response: Response) -> bytes:
        """The final response to the pending command (or an unsolicited BYE)."""
        event = self._awaiting
        self._awaiting = None
        ok = response.kind == "OK"
        if self._error_pending:
            self._error_pending = False
            event = None
            if response.kind == "NO":
                return response.to_bytes()
        if response.kind == "BYE":
            self._close()
            return response.to_bytes()
        match event:
            case Authenticate() | SaslResponse() | SaslCancel():
                self._state = State.AUTHENTICATED if ok else State.NOT_AUTHENTICATED
            case StartTls():
                if ok:  # RFC 5804 §2.2: TLS negotiation starts after this OK
                    self._state = State.TLS_PENDING
            case Logout():
                self._close()  # RFC 5804 §2.3: the server closes after OK
            case Unauthenticate():
                if ok:  # RFC 5804 §2.14
                    self._state = State.NOT_AUTHENTICATED
            case None:
                if not (self._state is State.NOT_AUTHENTICATED and ok):
                    raise LocalProtocolError("send() with no command to answer")
            case _:
                pass
        return response.to_bytes()

    def tls_started(self) -> None:
        """The TLS handshake finished: forget everything sent in plaintext."""
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self._in.data.clear()  # no command injection across the upgrade (cf. CVE-2011-0411)
        self._progress = _Progress()
        self.tls_active = True
        self._state = State.NOT_AUTHENTICATED

    # -- helpers ------------------------------------------------------------------

    def _drop_line(self) -> bool | None:
        """Drop the rest of a refused command: True when done, False for more data,
        None when it announced a literal too big to read and drop (then BYE).

        A line ending in ``{n+}`` or ``{n}`` is followed by n octets that belong to the
        same command (RFC 5804 §4), and the command goes on after them: they are
        counted off, never parsed, so a refused line cannot smuggle a command in.
        """
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._in.data))
                del self._in.data[:dropped]
                self._skip -= dropped
                if self._skip:
                    return False
            end = self._in.data.find(b"\r\n")
            if end < 0:  # bounded: the rest of a bad line is never kept (but a CR might
                keep = self._in.data.endswith(b"\r")  # start the CRLF that ends it)
                gone = self._in.data[:-1] if keep else self._in.data
                self._tail = (self._tail + bytes(gone[-_TAIL:]))[-_TAIL:]
                self._in.data.clear()
                if keep:
                    self._in.data += b"\r"
                return False
            tail = (self._tail + bytes(self._in.data[max(0, end - _TAIL) : end]))[-_TAIL:]
            self._tail = b""
            del self._in.data[: end + 2]
            m = _LITERAL_AT_END.search(tail)
            if m is not None and m.start() == 0 and len(tail) == _TAIL:
                return None  # digits fill the kept tail: a size beyond any bound
            if m is None or m.start() == 0 or tail[m.start() - 1] != 0x7B:  # "{"
                self._skip_line = False
                return True
            if int(m.group(1)) > self.limits.max_skip:
                return None
            self._skip = int(m.group(1))

    def _too_big(self) -> CommandError:
        """A refused literal too big to read and drop: BYE and close (cf. RFC 7888 §4)."""
        self._close()
        return CommandError(Response("BYE", None, "Literal too big"), close=True)

    def _end_or_need(self) -> ConnectionClosed | NeedData:
        if self._in.eof:
            self._close()
            return ConnectionClosed()
        return NEED_DATA

    def _error(self, text: str) -> CommandError:
        self._errors += 1
        if self._errors >= self.limits.max_errors:
            self._close()
            return CommandError(Response("BYE", None, "Too many errors"), close=True)
        self._error_pending = True
        return CommandError(Response("NO", None, text))

    def _close(self) -> None:
        self._state = State.CLOSED
        self._awaiting = None
        self._in.data.clear()
        self._progress = _Progress()
