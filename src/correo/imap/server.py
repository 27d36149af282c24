"""The sans-I/O IMAP server connection (RFC 9051, RFC 3501).

Driving pattern (as in h11)::

    conn = ImapConnection(ImapLimits())
    sock.send(conn.greeting(caps))
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA: conn.receive_data(sock.recv(65536)); continue
        match ev:
            case Respond(data): sock.send(data)           # the core answered by itself
            case CommandEvent(tag, command): ...  # run it, write responses.py bytes
            case AppendStart(): sock.send(conn.append_accept())   # or append_reject(...)
            case ConnectionClosed(): break

The core frames commands (lines plus literals), enforces every limit while
reading, checks the state table, parses, and answers malformed input itself
with tagged ``BAD`` (``* BAD`` if the tag is unreadable, RFC 9051 §7.1).  It
reads nothing beyond the current command, so the shell's transitions
(``authenticated()``, ``selected()``, ``tls_started()``...) made before the next
``next_event()`` apply to the next command.

Resynchronisation after a rejected command: a synchronising literal whose
``+`` was never sent is not transmitted by the client (RFC 9051 §7.5), so the
next line is a new command; a LITERAL+ literal (RFC 7888) is discarded octet
by octet without buffering, and then the rest of the command line with it.

Errors: the peer's mistakes never raise; :class:`LocalProtocolError` is raised
only when the shell calls a method out of turn.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from correo.imap.appending import AppendFraming
from correo.imap.commands import (
    Authenticate,
    Compress,
    Idle,
    Login,
    ParseOptions,
    StartTLS,
    command_name,
    quick_fetch,
)
from correo.imap.errors import LocalProtocolError, ParseError
from correo.imap.events import (
    NEED_DATA,
    PAUSED,
    AppendAborted,
    AppendChunk,
    AppendDone,
    AppendEnd,
    AppendStart,
    CatenateStart,
    CatenateText,
    CatenateUrl,
    Respond,
    Sentinel,
)
from correo.imap.events import Mode as _Mode
from correo.imap.extended import ALL_COMMAND_NAMES, AnyCommand, parse_any
from correo.imap.reader import ImapLimits, find_literal_marker
from correo.imap.responses import continuation, tagged, untagged
from correo.imap.states import ImapState, is_legal
from correo.imap.uidonly import uses_sequence_numbers
from correo.sansio import AuthCancel, AuthResponse, ConnectionClosed, ReceiveBuffer

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "AppendAborted",
    "AppendChunk",
    "AppendDone",
    "AppendEnd",
    "AppendStart",
    "AuthCancel",
    "AuthResponse",
    "CatenateStart",
    "CatenateText",
    "CatenateUrl",
    "CommandEvent",
    "ConnectionClosed",
    "Event",
    "IdleDone",
    "ImapConnection",
    "Respond",
    "Sentinel",
]

CRLF = b"\r\n"
_TAIL = 32  # enough octets of a discarded line to see a literal marker at its end


@dataclass(frozen=True, slots=True)
class CommandEvent:
    """A valid command, legal in the current state: run it and answer ``tag``."""

    tag: str
    command: AnyCommand


@dataclass(frozen=True, slots=True)
class IdleDone:
    """IDLE ended. ``error`` None: the client sent DONE, answer ``tag OK``; else write it."""

    tag: str
    error: bytes | None = None


# AuthResponse: the decoded answer to send_challenge(); AuthCancel: answer the
# AUTHENTICATE tag with BAD (RFC 9051 §6.2.2); ConnectionClosed: EOF, LOGOUT or too
# many errors, and any partial APPEND is void. Shared by every core (correo.sansio).


Event = (
    Respond
    | CommandEvent
    | AppendStart
    | CatenateStart
    | CatenateText
    | CatenateUrl
    | AppendChunk
    | AppendEnd
    | AppendDone
    | AppendAborted
    | IdleDone
    | AuthResponse
    | AuthCancel
    | ConnectionClosed
)


# capabilities ENABLE can switch on, and what they imply (RFC 9051 §6.3.1, RFC 7162 §3.2.3)
_ENABLEABLE = {
    "IMAP4REV2": ("IMAP4rev2",),
    "UTF8=ACCEPT": ("UTF8=ACCEPT",),
    "CONDSTORE": ("CONDSTORE",),
    "QRESYNC": ("QRESYNC", "CONDSTORE"),
    "UIDONLY": ("UIDONLY",),  # RFC 9586
}


#: Commands whose messages stream as AppendChunk events (RFC 8508 REPLACE too).
_STREAMED = frozenset({"APPEND", "REPLACE", "UID REPLACE"})
#: Commands that take a literal8 (``~{n}``) besides APPEND: a METADATA value (RFC 5464 §5).
_LITERAL8 = frozenset({"SETMETADATA"})


class ImapConnection(AppendFraming):
    """One IMAP server session as a pure state machine."""

    def __init__(self, limits: ImapLimits | None = None, *, tls_active: bool = False) -> None:
        self._limits = limits if limits is not None else ImapLimits()
        self._tls = tls_active  # True for implicit TLS (port 993, RFC 8314)
        self._state = ImapState.NOT_AUTHENTICATED
        self._mode = _Mode.COMMAND
        self._in = ReceiveBuffer()
        self._bad = 0
        self._enabled: set[str] = set()
        self._compressed = False
        self._read_only = False
        self._options = self._make_options()
        self._may: frozenset[str] = frozenset()  # helper calls allowed before next_event()
        self._reset_command()
        self._lit = bytearray()
        self._need = 0
        self._tail = b""
        self._bad_head = b""
        self._init_append()
        self._special_tag = ""  # tag of the IDLE / AUTHENTICATE in progress

    # ---- introspection ------------------------------------------------------

    @property
    def state(self) -> ImapState:
        return self._state

    @property
    def limits(self) -> ImapLimits:
        return self._limits

    @property
    def tls_active(self) -> bool:
        return self._tls

    @property
    def utf8(self) -> bool:
        """Mailbox names and quoted strings are UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled)."""
        return bool(self._enabled & {"IMAP4rev2", "UTF8=ACCEPT"})

    @property
    def rev2(self) -> bool:
        return "IMAP4rev2" in self._enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self._enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self._enabled

    @property
    def uidonly(self) -> bool:
        """RFC 9586: messages are named by UID only, in commands and in responses."""
        return "UIDONLY" in self._enabled

    @property
    def vanished(self) -> bool:
        """Expunges are told as VANISHED (RFC 7162 §3.2.10 QRESYNC, RFC 9586 §3.2)."""
        return bool(self._enabled & {"QRESYNC", "UIDONLY"})

    @property
    def enabled(self) -> frozenset[str]:
        return frozenset(self._enabled)

    @property
    def buffered(self) -> bool:
        """Received octets are still unprocessed (e.g. DONE pipelined right after IDLE)."""
        return bool(self._in.data)

    @property
    def between_commands(self) -> bool:
        """No command is being read: untagged data may go out unasked (RFC 5465 §1)."""
        return self._mode is _Mode.COMMAND and not self._lines and not self._in.data

    @property
    def compression_active(self) -> bool:
        return self._compressed

    @property
    def read_only(self) -> bool:
        return self._read_only

    def _make_options(self) -> ParseOptions:
        lim = self._limits
        return ParseOptions(
            utf8=self.utf8,
            max_ranges=lim.max_ranges,
            max_search_keys=lim.max_search_keys,
            max_depth=lim.max_depth,
        )

    def _plaintext_ok(self) -> bool:
        return self._tls or self._limits.allow_plaintext_auth

    # ---- input --------------------------------------------------------------------

    def greeting(
        self, capabilities: tuple[str, ...] = (), text: str = "correo IMAP ready"
    ) -> bytes:
        """``* OK [CAPABILITY ...] text`` (RFC 9051 §7.1.1)."""
        code = "CAPABILITY " + " ".join(capabilities) if capabilities else None
        return untagged("OK", text, code)

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer (decompressed if COMPRESS is on); ``b""`` means EOF."""
        if self._mode is _Mode.CLOSED:
            return
        if data and self._mode is _Mode.DISCARD and not self._in.data:
            drop = min(self._need, len(data))  # never buffer octets we will throw away
            self._need -= drop
            data = data[drop:]
            if not data:
                return
        self._in.feed(data)  # b"": EOF

    def next_event(self) -> Event | Sentinel:
        """The next event, ``NEED_DATA``, or ``PAUSED`` while an AppendStart is unanswered."""
        mode = self._mode
        if mode is _Mode.APPEND_WAIT:
            return PAUSED
        if (
            mode is _Mode.COMMAND
            and not self._in.data
            and not self._in.eof
            and self._text_used < self._limits.max_line
        ):
            return NEED_DATA  # between commands, all read: what _command_step would say
        allowed, self._may = self._may, frozenset()
        while True:
            mode = self._mode
            if mode is _Mode.CLOSED:
                return ConnectionClosed()
            # the usual mode called directly, the others through _step's match
            result = self._command_step() if mode is _Mode.COMMAND else self._step()
            if result is None:
                continue
            if result is NEED_DATA:
                if self._in.eof:
                    self._mode = _Mode.CLOSED
                    return ConnectionClosed()
                self._may = allowed  # nothing happened: idle_started() etc. still allowed
            return result

    def _step(self) -> Event | Sentinel | None:
        match self._mode:
            case _Mode.COMMAND:
                return self._command_step()
            case _Mode.LITERAL:
                return self._literal_step()
            case _Mode.APPEND_DATA:
                return self._append_data_step()
            case _Mode.APPEND_NEXT:
                return self._append_next_step()
            case _Mode.CATENATE:
                return self._catenate_step()
            case _Mode.CATENATE_URL:
                return self._catenate_url_step()
            case _Mode.DISCARD:
                return self._discard_step()
            case _Mode.DISCARD_LINE:
                return self._discard_line_step()
            case _Mode.IDLE:
                return self._idle_step()
            case _Mode.AUTH:
                return self._auth_step()
        raise AssertionError(self._mode)  # pragma: no cover - CLOSED/APPEND_WAIT handled above

    # ---- framing ---------------------------------------------------------------------

    def _reset_command(self) -> None:
        self._lines: list[bytes] = []
        self._lits: list[bytes] = []
        self._bins: list[bool] = []
        self._lit_binary = False  # the literal being read is a literal8 ("~{n}")
        self._text_used = 0
        self._lit_used = 0
        self._tag = "*"
        self._name = ""

    def _take_line(self, limit: int) -> bytes | ParseError | None:
        """One CRLF-terminated line (CRLF stripped), an error, or None for NEED_DATA."""
        buf = self._in.data
        end = buf.find(b"\n", 0, limit)
        if (
            end > 0
            and buf[end - 1] == 0x0D
            and buf.find(b"\r", 0, end - 1) < 0
            and buf.find(b"\x00", 0, end - 1) < 0
        ):  # a well-formed line, copied once (the checks below, passed)
            line = bytes(buf[: end - 1])
            del buf[: end + 1]
            self._text_used += end + 1
            return line
        self._bad_head = bytes(buf[:64])
        if end < 0:
            if len(buf) < limit:
                return None
            self._tail = b""
            self._mode = _Mode.DISCARD_LINE  # resync at the end of the over-long line
            return ParseError("line too long", "TOOBIG")
        raw = bytes(buf[:end])
        del buf[: end + 1]
        self._text_used += end + 1
        if not raw.endswith(b"\r"):
            self._after_bad_line(raw)
            return ParseError("bare LF: lines end with CRLF")  # RFC 9051 §2.2
        line = raw[:-1]
        if b"\r" in line or b"\x00" in line:
            self._after_bad_line(line)
            return ParseError("bare CR or NUL in command")  # RFC 9051 §9: CTLs outside literals
        return line

    def _after_bad_line(self, line: bytes) -> None:
        """Skip an announced LITERAL+ literal of a line we reject."""
        marker = find_literal_marker(line)
        if marker is not None and not marker.sync:
            self._skip_literal(marker.size)
        else:
            self._mode = _Mode.COMMAND

    def _skip_literal(self, size: int) -> None:
        """Drop the ``size`` octets of a refused LITERAL+ literal as they come, or, when
        that is more than ``max_skip``, close instead of reading them (RFC 7888 §4)."""
        if size > self._limits.max_skip:
            self._mode = _Mode.CLOSED
        else:
            self._need = size
            self._mode = _Mode.DISCARD

    def _reject(self, err: ParseError, line: bytes | None = None) -> Event:
        """Answer the current command with err; resync on the line's literal marker."""
        if line is not None:
            self._after_bad_line(line)
        elif self._mode not in (_Mode.DISCARD, _Mode.DISCARD_LINE, _Mode.CLOSED):
            self._mode = _Mode.COMMAND
        data = tagged(self._tag, err.status, err.text, err.code) + self._bye_if_closed()
        tag = self._tag
        self._reset_command()
        if self._append_started:
            self._append_started = False
            return AppendAborted(tag, self._count_bad(data))
        if err.status == "BAD":
            data = self._count_bad(data)
        return Respond(data)

    def _bye_if_closed(self) -> bytes:
        if self._mode is _Mode.CLOSED:
            return untagged("BYE", "Literal too big to skip; closing")
        return b""

    def _count_bad(self, data: bytes) -> bytes:
        if self._mode is _Mode.CLOSED:
            return data  # already saying BYE
        self._bad += 1
        if self._bad >= self._limits.max_bad_commands:
            self._mode = _Mode.CLOSED
            return data + untagged("BYE", "Too many invalid commands")
        return data

    def _command_step(self) -> Event | Sentinel | None:
        got = self._take_line(self._limits.max_line - self._text_used)
        if got is None:
            return NEED_DATA
        if isinstance(got, ParseError):
            if not self._lines:
                head = command_name(self._bad_head)  # RFC 9051 §7.1: "*" if no tag
                self._tag = head[0] if head else "*"
            return self._reject(got)
        line = got
        if not self._lines:
            if self._state is ImapState.SELECTED:
                quick = quick_fetch(line, self._options)
                if quick is not None and (quick[1].uid or not self.uidonly):
                    # the common case, without the general parser
                    self._text_used = 0
                    self._bad = 0
                    return CommandEvent(*quick)
            head = command_name(line)
            if head is None:
                return self._reject(ParseError("invalid tag", "CLIENTBUG"), line)
            self._tag, self._name = head
        self._lines.append(line)
        marker = find_literal_marker(line)
        if self._name in _STREAMED:  # RFC 3502 / RFC 4469: messages stream, never buffered
            started = self._append_head_step(line, marker)
            if started is not None:
                return started
        if marker is None:
            return self._complete()
        early = self._check_name()
        if early is not None:
            return self._reject(early, line)
        if marker.binary and self._name not in _LITERAL8:
            return self._reject(ParseError("literal8 only for APPEND", "CLIENTBUG"), line)
        if (
            marker.size > self._limits.max_literal
            or self._lit_used + marker.size > self._limits.max_command_literals
        ):
            return self._reject(ParseError("literal too big", "TOOBIG"), line)
        self._lit_used += marker.size
        self._need = marker.size
        self._lit = bytearray()
        self._lit_binary = marker.binary
        self._mode = _Mode.LITERAL
        if marker.sync:
            return Respond(continuation("OK"))  # RFC 9051 §7.5: only after checking the size
        return None

    def _reset_command_keep_tag(self) -> None:
        tag, name = self._tag, self._name
        self._reset_command()
        self._tag, self._name = tag, name

    def _check_name(self) -> ParseError | None:
        if self._name not in ALL_COMMAND_NAMES:
            return ParseError("unknown command", "CLIENTBUG")
        if not is_legal(self._state, self._name):
            return ParseError(f"{self._name} not allowed in this state", "CLIENTBUG")
        return None

    def _literal_step(self) -> Event | Sentinel | None:
        buf = self._in.data
        take = min(self._need, len(buf))
        self._lit += buf[:take]
        del buf[:take]
        self._need -= take
        if self._need:
            return NEED_DATA
        self._lits.append(bytes(self._lit))
        self._bins.append(self._lit_binary)
        self._lit = bytearray()
        self._mode = _Mode.COMMAND
        return None

    def _complete(self) -> Event:
        early = self._check_name()
        if early is not None:
            return self._reject(early)
        try:
            command = parse_any(self._lines, self._lits, binary=self._bins, options=self._options)
        except ParseError as exc:
            return self._reject(exc)
        match command:
            case Login() | Authenticate() if not self._plaintext_ok():
                # RFC 9051 §6.2.3 LOGINDISABLED / §7.1 PRIVACYREQUIRED
                return self._reject(ParseError("authentication needs TLS", "PRIVACYREQUIRED", "NO"))
            case StartTLS() if self._tls:
                return self._reject(ParseError("TLS already active", "CLIENTBUG"))
            case Compress() if self._compressed:
                # RFC 4978 §3
                return self._reject(ParseError("already compressing", "COMPRESSIONACTIVE", "NO"))
            case StartTLS():
                self._may = frozenset({"tls"})
            case Compress():
                self._may = frozenset({"compress"})
            case Idle():
                self._may = frozenset({"idle"})
                self._special_tag = self._tag
            case Authenticate():
                self._may = frozenset({"challenge"})
                self._special_tag = self._tag
            case _ if "UIDONLY" in self._enabled and uses_sequence_numbers(command):
                # RFC 9586 §3.1
                return self._reject(ParseError("use UIDs, not message numbers", "UIDREQUIRED"))
        tag = self._tag
        self._reset_command()
        self._bad = 0
        return CommandEvent(tag, command)

    # ---- discarding -------------------------------------------------------------------

    def _discard_step(self) -> Event | Sentinel | None:
        buf = self._in.data
        take = min(self._need, len(buf))
        del buf[:take]
        self._need -= take
        if self._need:
            return NEED_DATA
        self._tail = b""
        self._mode = _Mode.DISCARD_LINE
        return None

    def _discard_line_step(self) -> Event | Sentinel | None:
        buf = self._in.data
        end = buf.find(b"\n")
        if end < 0:
            self._tail = (self._tail + bytes(buf[-_TAIL:]))[-_TAIL:]
            buf.clear()
            return NEED_DATA
        line = (self._tail + bytes(buf[max(0, end - _TAIL) : end]))[-_TAIL:]
        del buf[: end + 1]
        self._tail = b""
        self._after_bad_line(line.removesuffix(b"\r"))
        return None

    # ---- IDLE and AUTHENTICATE ------------------------------------------------------

    def _idle_step(self) -> Event | Sentinel | None:
        got = self._take_line(self._limits.max_line)
        if got is None:
            return NEED_DATA
        self._text_used = 0  # DONE is not part of any command's budget
        tag = self._special_tag
        if isinstance(got, ParseError) or got.upper() != b"DONE":  # RFC 2177 §3
            if not isinstance(got, ParseError):
                self._after_bad_line(got)
            elif self._mode is _Mode.IDLE:
                self._mode = _Mode.COMMAND
            data = self._count_bad(tagged(tag, "BAD", "expected DONE", "CLIENTBUG"))
            return IdleDone(tag, data)
        self._mode = _Mode.COMMAND
        self._bad = 0
        return IdleDone(tag)

    def _auth_step(self) -> Event | Sentinel | None:
        got = self._take_line(self._limits.max_auth_line)
        if got is None:
            return NEED_DATA
        self._text_used = 0  # SASL lines have their own limit
        self._tag = self._special_tag
        if isinstance(got, ParseError):
            return self._reject(got)
        self._mode = _Mode.COMMAND
        if got == b"*":
            return AuthCancel()  # RFC 9051 §6.2.2: the exchange is cancelled
        try:
            data = base64.b64decode(got, validate=True)
        except (binascii.Error, ValueError):
            return self._reject(ParseError("invalid base64 in SASL response"))
        self._may = frozenset({"challenge"})
        return AuthResponse(data)

    # ---- the shell's side -----------------------------------------------------------

    def _allow(self, what: str) -> None:
        if what not in self._may:
            raise LocalProtocolError(f"{what} not expected now")
        self._may = frozenset()

    def send_challenge(self, data: bytes) -> bytes:
        """``+ base64`` after AUTHENTICATE or an AuthResponse; the next line is the answer."""
        self._allow("challenge")
        self._mode = _Mode.AUTH
        return b"+ " + base64.b64encode(data) + CRLF

    def idle_started(self) -> bytes:
        """Accept IDLE: returns ``+ idling``; from now on only DONE is read (RFC 2177 §3)."""
        self._allow("idle")
        self._mode = _Mode.IDLE
        return continuation("idling")

    def tls_started(self) -> None:
        """The STARTTLS handshake finished: forget all plaintext read so far."""
        self._allow("tls")
        # RFC 9051 §6.2.1 / CVE-2011-0411: octets pipelined after STARTTLS came in
        # plaintext and must not be run as commands under TLS.
        self._in.data.clear()
        self._reset_command()
        self._mode = _Mode.COMMAND
        self._tls = True

    def compression_started(self) -> bytes:
        """COMPRESS answered OK: returns octets already buffered, which are compressed
        data (RFC 4978 §3); the shell inflates them and feeds them back."""
        self._allow("compress")
        self._compressed = True
        leftover = bytes(self._in.data)
        self._in.data.clear()
        return leftover

    def authenticated(self) -> None:
        """LOGIN/AUTHENTICATE succeeded (RFC 9051 §3.2)."""
        if self._state is not ImapState.NOT_AUTHENTICATED:
            raise LocalProtocolError("already authenticated")
        self._may = frozenset()
        self._state = ImapState.AUTHENTICATED

    def selected(self, read_only: bool) -> None:
        """SELECT/EXAMINE succeeded (RFC 9051 §3.3); a failed one should call unselected()."""
        if self._state not in (ImapState.AUTHENTICATED, ImapState.SELECTED):
            raise LocalProtocolError("not authenticated")
        self._state = ImapState.SELECTED
        self._read_only = read_only

    def unselected(self) -> None:
        """CLOSE/UNSELECT, or a failed SELECT: back to authenticated (RFC 9051 §6.3.2)."""
        if self._state not in (ImapState.AUTHENTICATED, ImapState.SELECTED):
            raise LocalProtocolError("not authenticated")
        self._state = ImapState.AUTHENTICATED
        self._read_only = False

    def unauthenticated(self) -> None:
        """UNAUTHENTICATE succeeded (RFC 8437 §3): not authenticated again, with every
        ENABLEd extension off; TLS and COMPRESS stay as they are."""
        if self._state not in (ImapState.AUTHENTICATED, ImapState.SELECTED):
            raise LocalProtocolError("not authenticated")
        self._state = ImapState.NOT_AUTHENTICATED
        self._read_only = False
        self._enabled.clear()
        self._options = self._make_options()

    def logout(self) -> None:
        """After writing ``* BYE`` and the tagged OK: next_event() returns ConnectionClosed."""
        self._state = ImapState.LOGOUT
        self._mode = _Mode.CLOSED

    def enable(self, *capabilities: str) -> tuple[str, ...]:
        """Switch on ENABLE-able extensions; returns those newly enabled, for ``* ENABLED``."""
        added: list[str] = []
        for cap in capabilities:
            for name in _ENABLEABLE.get(cap.upper(), ()):
                if name not in self._enabled:
                    self._enabled.add(name)
                    added.append(name)
        self._options = self._make_options()
        return tuple(added)
