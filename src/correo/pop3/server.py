"""The sans-I/O POP3 server connection (RFC 1939, RFC 2449, RFC 2595, RFC 5034).

Driving pattern (as in h11)::

    conn = Pop3Connection(Pop3Limits(...))
    sock.send(conn.greeting())
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA: conn.receive_data(sock.recv(65536)); continue
        match ev:
            case Respond(data): sock.send(data)            # core answered itself
            case ConnectionClosed(): break
            case _: ...                                    # shell decides, then send()

The core owns the state (AUTHORIZATION, TRANSACTION, UPDATE — RFC 1939 §3),
the maildrop listing and the deletion marks, so only decisions that need the
directory, the store or the socket reach the shell.  While the core waits for
such a decision ``next_event()`` returns ``PAUSED`` and reads no further
input, which is what makes pipelining (RFC 2449 §6.6) and STLS safe.

Errors: the peer's mistakes become ``-ERR`` replies inside ``Respond`` events
and never raise; :class:`LocalProtocolError` is raised only when the shell
calls a method out of order (a bug in our code).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from correo.pop3.commands import (
    PARSERS,
    ApopCommand,
    AuthCommand,
    BadCommand,
    CapaCommand,
    Command,
    DeleCommand,
    ListCommand,
    NoopCommand,
    PassCommand,
    QuitCommand,
    RetrCommand,
    RsetCommand,
    StatCommand,
    StlsCommand,
    TopCommand,
    UidlCommand,
    UserCommand,
    decode_base64,
    has_controls,
    split_keyword,
)
from correo.sansio import (
    LINE_TOO_LONG,
    NEED_DATA,
    PAUSED,
    AuthCancel,
    AuthResponse,
    ConnectionClosed,
    LocalProtocolError,
    ReceiveBuffer,
    Respond,
    Sentinel,
)
from correo.sasl.mechanisms import SUPPORTED

__all__ = [
    "LEGAL",
    "NEED_DATA",
    "PAUSED",
    "Auth",
    "AuthCancel",
    "AuthResponse",
    "ConnectionClosed",
    "Event",
    "LocalProtocolError",
    "MaildropEntry",
    "Pop3Connection",
    "Pop3Limits",
    "Pop3Reply",
    "Pop3State",
    "Quit",
    "Respond",
    "Retrieve",
    "Sentinel",
    "StartTls",
    "UserPass",
]

CRLF = b"\r\n"


class Pop3State(enum.Enum):
    """RFC 1939 §3 session states, plus CLOSED once the session is over."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


class _Wait(enum.Enum):
    """What the core is waiting for, beyond the RFC state."""

    NONE = enum.auto()  # reading commands
    TLS_REPLY = enum.auto()  # StartTls emitted: shell send()s +OK / -ERR
    TLS_HANDSHAKE = enum.auto()  # +OK sent: shell calls tls_started()
    CREDENTIALS = enum.auto()  # UserPass emitted: open_maildrop() or send(-ERR)
    SASL = enum.auto()  # Auth/AuthResponse emitted: send_challenge/open_maildrop/send(-ERR)
    SASL_CLIENT = enum.auto()  # challenge sent: the next line is a SASL response
    SASL_CANCEL = enum.auto()  # AuthCancel emitted: shell send()s -ERR
    RETRIEVE = enum.auto()  # Retrieve emitted: begin_message() or send(-ERR)
    SENDING = enum.auto()  # message streaming: message_sent()
    QUIT = enum.auto()  # Quit emitted: shell send()s +OK or -ERR [SYS/TEMP]


@dataclass(frozen=True, slots=True)
class Pop3Limits:
    """Named bounds; every buffer is held to one of these while it is read."""

    # RFC 2449 §4 allows 255 octets with CRLF; 512 gives clients slack.
    max_line: int = 512
    # RFC 5034 §4: SASL responses have no fixed length; 12 KiB fits Kerberos-sized tokens.
    max_auth_line: int = 12288
    # Consecutive -ERR answers before we hang up on a confused or hostile client.
    max_bad_commands: int = 20
    # RFC 2595 §2.1 / RFC 8314: passwords only under TLS unless explicitly allowed.
    allow_plaintext_auth: bool = False
    # Advertise STLS only if the shell actually has a certificate to offer.
    stls_available: bool = False

    def __post_init__(self) -> None:
        if self.max_line < 8 or self.max_auth_line < self.max_line:
            raise ValueError("need 8 <= max_line <= max_auth_line")
        if self.max_bad_commands < 1:
            raise ValueError("max_bad_commands must be >= 1")


@dataclass(frozen=True, slots=True)
class MaildropEntry:
    """One message of the maildrop as the store lists it at login."""

    uid: int
    size: int
    uidl: str


@dataclass(frozen=True, slots=True)
class Pop3Reply:
    """A status line: ``+OK text`` or ``-ERR [CODE] text`` (RFC 2449 §8 response codes)."""

    ok: bool
    text: str
    code: str | None = None

    def to_bytes(self) -> bytes:
        """Serialize; CR/LF in the text would let our caller inject lines, so refuse it."""
        if has_controls(self.text.encode("utf-8")):
            raise LocalProtocolError("reply text must not contain control characters")
        parts = ["+OK" if self.ok else "-ERR"]
        if self.code is not None:
            if (
                not self.code
                or has_controls(self.code.encode())
                or any(c in self.code for c in " []")
            ):
                raise LocalProtocolError(f"invalid response code {self.code!r}")
            parts.append(f"[{self.code}]")  # RFC 2449 §8: "[" resp-code "]"
        if self.text:
            parts.append(self.text)
        return " ".join(parts).encode("utf-8") + CRLF


# ---- events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTls:
    """STLS (RFC 2595 §4): send(+OK/-ERR), handshake, then tls_started()."""


@dataclass(frozen=True, slots=True)
class UserPass:
    """USER + PASS (RFC 1939 §7): verify, then open_maildrop() or send(-ERR [AUTH])."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"UserPass(user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH mechanism [initial] (RFC 5034 §4); ``initial`` is already base64-decoded."""

    mechanism: str
    initial: bytes | None

    def __repr__(self) -> str:
        shown = None if self.initial is None else f"<{len(self.initial)} bytes>"
        return f"Auth(mechanism={self.mechanism!r}, initial={shown})"


# AuthResponse answers send_challenge(); after AuthCancel (``*``, RFC 5034 §4) the
# shell must send(-ERR). Both, Respond and ConnectionClosed are correo.sansio's.


@dataclass(frozen=True, slots=True)
class Retrieve:
    """RETR n / TOP n m: begin_message(), stream, message_sent(); or send(-ERR)."""

    number: int
    uid: int
    top_lines: int | None


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT in TRANSACTION (RFC 1939 §6): delete ``deleted`` uids, then send()."""

    deleted: tuple[int, ...]


# ConnectionClosed: the session is over; deletions apply only via Quit.


Event = (
    Respond
    | StartTls
    | UserPass
    | Auth
    | AuthResponse
    | AuthCancel
    | Retrieve
    | Quit
    | ConnectionClosed
)

# One table says which keyword is legal in which state (RFC 1939 §§6-8, RFC 2449 §5,
# RFC 2595 §4, RFC 5034 §4).  Keywords not listed in a state get "-ERR not valid".
_AUTH_ONLY = frozenset({b"USER", b"PASS", b"APOP", b"AUTH", b"STLS"})
_TRANS_ONLY = frozenset({b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"RSET", b"NOOP"})
LEGAL: dict[Pop3State, frozenset[bytes]] = {
    Pop3State.AUTHORIZATION: _AUTH_ONLY | {b"CAPA", b"QUIT"},
    Pop3State.TRANSACTION: _TRANS_ONLY | {b"CAPA", b"QUIT"},
    Pop3State.UPDATE: frozenset(),
    Pop3State.CLOSED: frozenset(),
}


class _LineError(enum.Enum):
    TOO_LONG = "Line too long"  # RFC 2449 §4 line limit
    SYNTAX = "Syntax error"  # bare CR/LF or control octet


_REFUSE_PLAINTEXT = ("Authentication requires TLS (use STLS)", "AUTH")


def _valid_uidl(uidl: str) -> bool:
    # RFC 1939 §7 UIDL: 1 to 70 characters in the range 0x21 to 0x7E
    return 1 <= len(uidl) <= 70 and uidl.isascii() and uidl.isprintable() and " " not in uidl


class Pop3Connection:
    """One POP3 server session as a pure state machine."""

    def __init__(self, limits: Pop3Limits | None = None, *, tls_active: bool = False) -> None:
        self._limits = limits if limits is not None else Pop3Limits()
        self._tls_active = tls_active  # True for implicit TLS (port 995, RFC 8314)
        #: SASL mechanisms offered (CAPA, bare AUTH) and accepted; the shell sets them
        #: per connection (SCRAM's -PLUS depends on the TLS in use).
        self.mechanisms: tuple[str, ...] = SUPPORTED
        self._state = Pop3State.AUTHORIZATION
        self._wait = _Wait.NONE
        self._in = ReceiveBuffer()
        self._bad = 0
        self._user: str | None = None
        self._messages: tuple[MaildropEntry, ...] = ()
        self._deleted: set[int] = set()
        self._live_count = 0
        self._live_octets = 0

    # ---- introspection ----------------------------------------------------

    @property
    def state(self) -> Pop3State:
        return self._state

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @tls_active.setter
    def tls_active(self, value: bool) -> None:
        """Let a shell mark an implicit-TLS connection (port 995, RFC 8314 §3.3)."""
        self._tls_active = value

    @property
    def limits(self) -> Pop3Limits:
        return self._limits

    # ---- input -------------------------------------------------------------

    def greeting(self, text: str = "correo POP3 server ready") -> bytes:
        """The banner (RFC 1939 §4); no APOP timestamp since APOP is not offered."""
        return Pop3Reply(True, text).to_bytes()

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means EOF."""
        if self._state is Pop3State.CLOSED:
            return
        self._in.feed(data)  # the rest of an over-long line is dropped unbuffered

    def next_event(self) -> Event | Sentinel:
        """The next event, ``NEED_DATA``, or ``PAUSED`` while the shell owes an action."""
        if self._state is Pop3State.CLOSED:
            return ConnectionClosed()
        if self._wait is not _Wait.NONE and self._wait is not _Wait.SASL_CLIENT:
            return PAUSED
        line = self._take_line()
        if line is None:
            if self._in.eof:
                self._state = Pop3State.CLOSED  # RFC 1939 §6: no UPDATE without QUIT
                return ConnectionClosed()
            return NEED_DATA
        if isinstance(line, _LineError):
            return self._error(line.value)
        if self._wait is _Wait.SASL_CLIENT:
            return self._sasl_line(line)
        return self._command_line(line)

    def _take_line(self) -> bytes | _LineError | None:
        """Cut one CRLF line off the buffer, bounded by the current line limit."""
        sasl = self._wait is _Wait.SASL_CLIENT
        limit = self._limits.max_auth_line if sasl else self._limits.max_line
        line = self._in.take_line(limit)  # RFC 2449 §4: the limit counts the CRLF
        if line is None:
            return None
        if line is LINE_TOO_LONG:
            return _LineError.TOO_LONG
        if line[-1:] != b"\r" or has_controls(line[:-1]):
            return _LineError.SYNTAX  # bare LF, bare CR or other control: refuse, don't guess
        return line[:-1]

    # ---- replies built by the core ------------------------------------------

    def _ok(self, data: bytes) -> Respond:
        self._bad = 0
        return Respond(data)

    def _error(self, text: str, code: str | None = None) -> Respond:
        if self._wait is _Wait.SASL_CLIENT:
            self._wait = _Wait.NONE  # a broken SASL line ends the exchange
        self._bad += 1
        if self._bad >= self._limits.max_bad_commands:
            self._state = Pop3State.CLOSED
            return Respond(Pop3Reply(False, "Too many errors").to_bytes())
        return Respond(Pop3Reply(False, text, code).to_bytes())

    def _emit(self, event: Event, wait: _Wait) -> Event:
        self._bad = 0
        self._wait = wait
        return event

    def _plaintext_ok(self) -> bool:
        return self._tls_active or self._limits.allow_plaintext_auth

    # ---- command dispatch ---------------------------------------------------

    def _command_line(self, line: bytes) -> Event:
        keyword, rest = split_keyword(line)
        parser = PARSERS.get(keyword)
        if parser is None:
            return self._error("Unknown command")
        if keyword not in LEGAL[self._state]:
            return self._error("Command not valid in this state")
        command = parser(rest)
        if isinstance(command, BadCommand):
            return self._error(command.text)
        return self._dispatch(command)

    def _dispatch(self, command: Command) -> Event:
        match command:
            case UserCommand(name):
                return self._user_cmd(name)
            case PassCommand(password):
                return self._pass_cmd(password)
            case ApopCommand():
                return self._error("APOP not supported")
            case AuthCommand(mechanism, initial):
                return self._auth_cmd(mechanism, initial)
            case StlsCommand():
                return self._stls_cmd()
            case CapaCommand():
                return self._ok(self._capabilities())
            case StatCommand():
                # RFC 1939 §5: STAT counts only messages not marked as deleted
                return self._ok(f"+OK {self._live_count} {self._live_octets}\r\n".encode())
            case ListCommand(number):
                return self._list_cmd(number)
            case UidlCommand(number):
                return self._uidl_cmd(number)
            case RetrCommand(number):
                return self._retrieve(number, None)
            case TopCommand(number, lines):
                return self._retrieve(number, lines)
            case DeleCommand(number):
                return self._dele_cmd(number)
            case RsetCommand():
                return self._rset_cmd()
            case NoopCommand():
                return self._ok(b"+OK\r\n")  # RFC 1939 §5 NOOP
            case QuitCommand():
                return self._quit_cmd()
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    # ---- AUTHORIZATION ------------------------------------------------------

    def _user_cmd(self, name: str) -> Event:
        if not self._plaintext_ok():
            return self._error(*_REFUSE_PLAINTEXT)  # RFC 2595 §2.1
        self._user = name
        return self._ok(b"+OK Send PASS\r\n")

    def _pass_cmd(self, password: str) -> Event:
        if not self._plaintext_ok():
            return self._error(*_REFUSE_PLAINTEXT)  # RFC 2595 §2.1
        user, self._user = self._user, None
        if user is None:
            return self._error("USER first")  # RFC 1939 §7: PASS only after USER
        return self._emit(UserPass(user, password), _Wait.CREDENTIALS)

    def _auth_cmd(self, mechanism: str | None, initial: bytes | None) -> Event:
        self._user = None
        if mechanism is not None and mechanism.upper() not in self.mechanisms:
            return self._error("Unsupported authentication mechanism")
        if not self._plaintext_ok():
            return self._error(*_REFUSE_PLAINTEXT)  # RFC 2595 §2.1: PLAIN/LOGIN need TLS
        if mechanism is None:
            # RFC 5034 §4 (via RFC 1734 practice): bare AUTH lists mechanisms
            listing = "".join(f"{name}\r\n" for name in self.mechanisms)
            return self._ok(f"+OK\r\n{listing}.\r\n".encode())
        return self._emit(Auth(mechanism, initial), _Wait.SASL)

    def _sasl_line(self, line: bytes) -> Event:
        if line == b"*":  # RFC 5034 §4: "*" cancels; server must reply -ERR
            return self._emit(AuthCancel(), _Wait.SASL_CANCEL)
        data = b"" if not line else decode_base64(line)
        if data is None:
            return self._error("Invalid base64 data")  # RFC 5034 §4: reject the AUTH
        return self._emit(AuthResponse(data), _Wait.SASL)

    def _stls_cmd(self) -> Event:
        if self._tls_active:
            return self._error("TLS already active")  # RFC 2595 §4
        if not self._limits.stls_available:
            return self._error("STLS not available")
        return self._emit(StartTls(), _Wait.TLS_REPLY)

    def _capabilities(self) -> bytes:
        """RFC 2449 §5 CAPA; the list depends on state and on TLS."""
        caps = ["TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
        if self._state is Pop3State.AUTHORIZATION:
            if self._plaintext_ok():
                caps.append("USER")  # RFC 2449 §6.8
                caps.append("SASL " + " ".join(self.mechanisms))  # RFC 2449 §6.3
            if self._limits.stls_available and not self._tls_active:
                caps.append("STLS")  # RFC 2595 §4
        caps += ["EXPIRE NEVER", "LOGIN-DELAY 0", "IMPLEMENTATION correo"]
        body = "".join(f"{cap}\r\n" for cap in caps)
        return f"+OK Capability list follows\r\n{body}.\r\n".encode()

    # ---- TRANSACTION --------------------------------------------------------

    def _lookup(self, number: int) -> MaildropEntry | str:
        """The entry for a 1-based message number, or the -ERR text."""
        if not 1 <= number <= len(self._messages):
            return "No such message"  # RFC 1939 §5: numbers run 1..N
        if number - 1 in self._deleted:
            return "Message already deleted"  # RFC 1939 §5: deleted messages are not counted
        return self._messages[number - 1]

    def _list_cmd(self, number: int | None) -> Event:
        if number is not None:
            found = self._lookup(number)
            if isinstance(found, str):
                return self._error(found)
            return self._ok(f"+OK {number} {found.size}\r\n".encode())  # RFC 1939 §7 LIST
        lines = "".join(
            f"{i} {m.size}\r\n"
            for i, m in enumerate(self._messages, 1)
            if i - 1 not in self._deleted
        )
        head = f"+OK {self._live_count} messages ({self._live_octets} octets)\r\n"
        return self._ok(f"{head}{lines}.\r\n".encode())

    def _uidl_cmd(self, number: int | None) -> Event:
        if number is not None:
            found = self._lookup(number)
            if isinstance(found, str):
                return self._error(found)
            return self._ok(f"+OK {number} {found.uidl}\r\n".encode())  # RFC 1939 §7 UIDL
        lines = "".join(
            f"{i} {m.uidl}\r\n"
            for i, m in enumerate(self._messages, 1)
            if i - 1 not in self._deleted
        )
        return self._ok(f"+OK\r\n{lines}.\r\n".encode())

    def _retrieve(self, number: int, top: int | None) -> Event:
        found = self._lookup(number)
        if isinstance(found, str):
            return self._error(found)
        return self._emit(Retrieve(number, found.uid, top), _Wait.RETRIEVE)

    def _dele_cmd(self, number: int) -> Event:
        found = self._lookup(number)
        if isinstance(found, str):
            return self._error(found)
        self._deleted.add(number - 1)  # RFC 1939 §5: only marked until UPDATE
        self._live_count -= 1
        self._live_octets -= found.size
        return self._ok(f"+OK Message {number} deleted\r\n".encode())

    def _rset_cmd(self) -> Event:
        self._deleted.clear()  # RFC 1939 §5 RSET: unmark all
        self._recount()
        return self._ok(self._maildrop_line())

    def _quit_cmd(self) -> Event:
        if self._state is Pop3State.AUTHORIZATION:
            self._state = Pop3State.CLOSED  # RFC 1939 §6: QUIT in AUTHORIZATION, no UPDATE
            return self._ok(b"+OK correo POP3 server signing off\r\n")
        self._state = Pop3State.UPDATE  # RFC 1939 §6: enter UPDATE
        deleted = tuple(self._messages[i].uid for i in sorted(self._deleted))
        return self._emit(Quit(deleted), _Wait.QUIT)

    def _maildrop_line(self) -> bytes:
        text = f"maildrop has {self._live_count} messages ({self._live_octets} octets)"
        return Pop3Reply(True, text).to_bytes()

    def _recount(self) -> None:
        self._live_count = len(self._messages) - len(self._deleted)
        self._live_octets = sum(
            m.size for i, m in enumerate(self._messages) if i not in self._deleted
        )

    # ---- the shell's side ---------------------------------------------------

    def _expect(self, *waits: _Wait) -> None:
        if self._wait not in waits:
            names = ", ".join(w.name for w in waits)
            raise LocalProtocolError(
                f"not allowed now (waiting for {self._wait.name}, need {names})"
            )

    def send(self, reply: Pop3Reply) -> bytes:
        """The shell's answer to an event that needed a decision."""
        wait = self._wait
        if wait is _Wait.TLS_REPLY:
            self._wait = _Wait.TLS_HANDSHAKE if reply.ok else _Wait.NONE
        elif wait in (_Wait.CREDENTIALS, _Wait.SASL, _Wait.SASL_CANCEL, _Wait.RETRIEVE):
            if reply.ok:
                raise LocalProtocolError("success goes through open_maildrop()/begin_message()")
            self._wait = _Wait.NONE
        elif wait is _Wait.QUIT:
            self._wait = _Wait.NONE
            self._state = Pop3State.CLOSED  # RFC 1939 §6: close after the QUIT reply either way
        else:
            raise LocalProtocolError(f"send() not expected while waiting for {wait.name}")
        return reply.to_bytes()

    def send_challenge(self, data: bytes) -> bytes:
        """A SASL challenge, ``+ base64`` (RFC 5034 §4); the next line is the response."""
        self._expect(_Wait.SASL)
        self._wait = _Wait.SASL_CLIENT
        return b"+ " + base64.b64encode(data) + CRLF

    def open_maildrop(self, messages: Sequence[MaildropEntry], note: str = "") -> bytes:
        """Authentication succeeded: take the maildrop listing and enter TRANSACTION.

        ``note`` goes after the counts in the +OK text (RFC 1939 §5 leaves the text to
        the server): the account's quota usage, say."""
        self._expect(_Wait.CREDENTIALS, _Wait.SASL)
        entries = tuple(messages)
        uidls = {m.uidl for m in entries}
        if len(uidls) != len(entries):
            raise LocalProtocolError("UIDLs must be unique")  # RFC 1939 §7 UIDL
        for m in entries:
            if m.size < 0 or not _valid_uidl(m.uidl):
                raise LocalProtocolError(f"invalid maildrop entry {m!r}")
        self._messages = entries
        self._deleted = set()
        self._recount()
        self._wait = _Wait.NONE
        self._state = Pop3State.TRANSACTION  # RFC 1939 §4: maildrop locked, now TRANSACTION
        if note:
            text = f"maildrop has {self._live_count} messages ({self._live_octets} octets); {note}"
            return Pop3Reply(True, " ".join(text.split())[:400]).to_bytes()
        return self._maildrop_line()

    def begin_message(self, size: int | None) -> bytes:
        """Status line before streaming a message for RETR (or TOP when size is None)."""
        self._expect(_Wait.RETRIEVE)
        self._wait = _Wait.SENDING
        if size is None:
            return b"+OK\r\n"
        return f"+OK {size} octets\r\n".encode()  # RFC 1939 §7 RETR

    def message_sent(self) -> None:
        """The shell wrote the whole message and DotStuffer.finish(); read commands again."""
        self._expect(_Wait.SENDING)
        self._wait = _Wait.NONE

    def tls_started(self) -> None:
        """The TLS handshake finished: forget everything read in plaintext."""
        self._expect(_Wait.TLS_HANDSHAKE)
        # RFC 2595 §4 / CVE-2011-0411: bytes pipelined before the handshake are
        # attacker-controlled and must not be run as commands under TLS.
        self._in.clear()
        self._user = None
        self._tls_active = True
        self._wait = _Wait.NONE
