"""Pop3Connection: the state table, transcripts of whole sessions, limits and misuse."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pytest

from correo.pop3 import (
    LEGAL,
    NEED_DATA,
    PAUSED,
    Auth,
    AuthCancel,
    AuthResponse,
    ConnectionClosed,
    DotStuffer,
    Event,
    LocalProtocolError,
    MaildropEntry,
    Pop3Connection,
    Pop3Limits,
    Pop3Reply,
    Pop3State,
    Quit,
    Respond,
    Retrieve,
    Sentinel,
    StartTls,
    TopFilter,
    UserPass,
)
from correo.sasl import Challenge, Credentials, Mechanism, server_mechanism

MESSAGES = {
    101: b"From: a\r\nSubject: one\r\n\r\nhello\r\n.dot line\r\n",
    102: b"From: b\r\nSubject: two\r\n\r\nl1\r\nl2\r\nl3\r\n",
    103: b"Subject: three\r\n\r\nbody",
}
ENTRIES = [MaildropEntry(uid, len(body), f"uid-{uid}") for uid, body in MESSAGES.items()]
TOTAL = sum(e.size for e in ENTRIES)


@dataclass
class Shell:
    """A fake protocol shell: answers every event the way the real server would."""

    conn: Pop3Connection
    users: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    accept_tls: bool = True
    in_use: bool = False
    quit_fails: bool = False
    mech: Mechanism | None = None
    events: list[Event] = field(default_factory=list)
    deleted: tuple[int, ...] | None = None

    def feed(self, data: bytes, eof: bool = False) -> bytes:
        """Feed bytes, handle every event until the core needs data; return all output."""
        self.conn.receive_data(data)
        if eof:
            self.conn.receive_data(b"")
        out = bytearray()
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA or ev is PAUSED:
                return bytes(out)
            assert not isinstance(ev, Sentinel)
            self.events.append(ev)
            if isinstance(ev, ConnectionClosed):
                return bytes(out)
            out += self.handle(ev)

    def handle(self, ev: Event) -> bytes:
        conn = self.conn
        match ev:
            case Respond(data):
                return data
            case StartTls():
                if not self.accept_tls:
                    return conn.send(Pop3Reply(False, "TLS not available now"))
                out = conn.send(Pop3Reply(True, "Begin TLS negotiation"))
                conn.tls_started()
                return out
            case UserPass(user, password):
                return self.login(user, password)
            case Auth(mechanism, initial):
                self.mech = server_mechanism(mechanism)
                assert self.mech is not None
                return self.sasl(self.mech.start(initial))
            case AuthResponse(data):
                assert self.mech is not None
                return self.sasl(self.mech.step(data))
            case AuthCancel():
                self.mech = None
                return conn.send(Pop3Reply(False, "Authentication cancelled"))
            case Retrieve(_, uid, top):
                body = MESSAGES[uid]
                head = conn.begin_message(None if top is not None else len(body))
                stuffer = DotStuffer()
                data = body if top is None else TopFilter(top).feed(body)
                out = head + stuffer.feed(data) + stuffer.finish()
                conn.message_sent()
                return out
            case Quit(deleted):
                self.deleted = deleted
                if self.quit_fails:
                    return conn.send(Pop3Reply(False, "Could not delete", code="SYS/TEMP"))
                return conn.send(Pop3Reply(True, "Bye"))
        raise AssertionError(ev)

    def sasl(self, step: object) -> bytes:
        if isinstance(step, Challenge):
            return self.conn.send_challenge(step.data)
        self.mech = None
        if isinstance(step, Credentials):
            return self.login(step.authcid, step.password)
        return self.conn.send(Pop3Reply(False, "Authentication failed", code="AUTH"))

    def login(self, user: str, password: str) -> bytes:
        if self.users.get(user) != password:
            return self.conn.send(Pop3Reply(False, "Invalid credentials", code="AUTH"))
        if self.in_use:
            return self.conn.send(Pop3Reply(False, "Maildrop locked", code="IN-USE"))
        return self.conn.open_maildrop(ENTRIES)


def make(tls: bool = True, **limits: Any) -> Shell:
    return Shell(Pop3Connection(Pop3Limits(**limits), tls_active=tls))


def logged_in(**limits: Any) -> Shell:
    shell = make(**limits)
    assert shell.feed(b"USER alice\r\nPASS secret\r\n").endswith(b"(102 octets)\r\n")
    assert shell.conn.state is Pop3State.TRANSACTION
    return shell


def test_totals_constant() -> None:
    assert TOTAL == 102


# ---- the state table --------------------------------------------------------------

SAMPLES = {
    b"USER": b"USER alice",
    b"PASS": b"PASS secret",
    b"APOP": b"APOP alice 0123456789abcdef0123456789abcdef",
    b"AUTH": b"AUTH",
    b"STLS": b"STLS",
    b"CAPA": b"CAPA",
    b"STAT": b"STAT",
    b"LIST": b"LIST",
    b"UIDL": b"UIDL",
    b"RETR": b"RETR 1",
    b"TOP": b"TOP 1 0",
    b"DELE": b"DELE 1",
    b"RSET": b"RSET",
    b"NOOP": b"NOOP",
    b"QUIT": b"QUIT",
}

# Written from RFC 1939 §§4-6, RFC 2449 §5, RFC 2595 §4 and RFC 5034 §4, independently of LEGAL.
EXPECTED_LEGAL = {
    Pop3State.AUTHORIZATION: {b"USER", b"PASS", b"APOP", b"AUTH", b"STLS", b"CAPA", b"QUIT"},
    Pop3State.TRANSACTION: {
        b"STAT", b"LIST", b"UIDL", b"RETR", b"TOP", b"DELE", b"RSET", b"NOOP", b"CAPA", b"QUIT",
    },
    Pop3State.UPDATE: set(),
    Pop3State.CLOSED: set(),
}  # fmt: skip


def shell_in(state: Pop3State) -> Shell:
    """A shell whose connection sits in ``state`` with nothing pending."""
    if state is Pop3State.AUTHORIZATION:
        return make(stls_available=True)
    shell = logged_in()
    if state is Pop3State.UPDATE:
        shell.conn.receive_data(b"QUIT\r\n")
        assert isinstance(shell.conn.next_event(), Quit)  # left unanswered: UPDATE
    elif state is Pop3State.CLOSED:
        shell.feed(b"QUIT\r\n")
    assert shell.conn.state is state
    return shell


def test_legal_table_matches_rfc() -> None:
    assert {s: set(k) for s, k in LEGAL.items()} == EXPECTED_LEGAL
    assert set(SAMPLES) == set().union(*EXPECTED_LEGAL.values())


@pytest.mark.parametrize("state", list(Pop3State))
@pytest.mark.parametrize("keyword", list(SAMPLES))
def test_every_state_command_pair(state: Pop3State, keyword: bytes) -> None:
    shell = shell_in(state)
    conn = shell.conn
    conn.receive_data(SAMPLES[keyword] + b"\r\n")
    ev = conn.next_event()
    if state is Pop3State.UPDATE:
        assert ev is PAUSED  # waiting for the shell's QUIT answer, reads nothing
        return
    if state is Pop3State.CLOSED:
        assert isinstance(ev, ConnectionClosed)
        return
    refused = Respond(b"-ERR Command not valid in this state\r\n")
    if keyword in EXPECTED_LEGAL[state]:
        assert ev != refused
    else:
        assert ev == refused
        assert conn.state is state


# ---- transcripts ------------------------------------------------------------------


def test_full_session_pipelined_in_one_buffer() -> None:
    """RFC 2449 §6.6: a whole burst is answered in order."""
    shell = make()
    out = shell.feed(
        b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n"
        b"TOP 2 1\r\nDELE 2\r\nLIST 2\r\nSTAT\r\nQUIT\r\n"
    )
    expected = (
        b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n"
        b"AUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\n"
        b"IMPLEMENTATION correo\r\n.\r\n"
        b"+OK Send PASS\r\n"
        b"+OK maildrop has 3 messages (102 octets)\r\n"
        b"+OK 3 102\r\n"
        b"+OK 3 messages (102 octets)\r\n1 43\r\n2 37\r\n3 22\r\n.\r\n"
        b"+OK\r\n1 uid-101\r\n2 uid-102\r\n3 uid-103\r\n.\r\n"
        b"+OK 43 octets\r\nFrom: a\r\nSubject: one\r\n\r\nhello\r\n..dot line\r\n.\r\n"
        b"+OK\r\nFrom: b\r\nSubject: two\r\n\r\nl1\r\n.\r\n"
        b"+OK Message 2 deleted\r\n"
        b"-ERR Message already deleted\r\n"
        b"+OK 2 65\r\n"
        b"+OK Bye\r\n"
    )
    assert out == expected
    assert shell.deleted == (102,)
    assert isinstance(shell.events[-1], ConnectionClosed)
    assert shell.conn.state is Pop3State.CLOSED


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"LIST 0", b"-ERR No such message\r\n"),
        (b"LIST 4", b"-ERR No such message\r\n"),
        (b"UIDL 4", b"-ERR No such message\r\n"),
        (b"RETR 0", b"-ERR No such message\r\n"),
        (b"RETR 9999999999", b"-ERR No such message\r\n"),
        (b"RETR 99999999999", b"-ERR Invalid message number\r\n"),
        (b"RETR -1", b"-ERR Invalid message number\r\n"),
        (b"TOP 4 1", b"-ERR No such message\r\n"),
        (b"TOP 1", b"-ERR Syntax error\r\n"),
        (b"DELE 0", b"-ERR No such message\r\n"),
        (b"DELE 4", b"-ERR No such message\r\n"),
        (b"LIST 3", b"+OK 3 22\r\n"),
        (b"UIDL 3", b"+OK 3 uid-103\r\n"),
        (b"NOOP", b"+OK\r\n"),
        (b"APOP x y", b"-ERR Command not valid in this state\r\n"),
        (b"FOO", b"-ERR Unknown command\r\n"),
    ],
)
def test_transaction_single_replies(line: bytes, reply: bytes) -> None:
    shell = logged_in()
    assert shell.feed(line + b"\r\n") == reply
    assert shell.conn.state is Pop3State.TRANSACTION


def test_deleted_messages_and_rset() -> None:
    shell = logged_in()
    assert shell.feed(b"DELE 1\r\nDELE 3\r\n") == (
        b"+OK Message 1 deleted\r\n+OK Message 3 deleted\r\n"
    )
    assert shell.feed(b"DELE 1\r\n") == b"-ERR Message already deleted\r\n"
    assert shell.feed(b"RETR 1\r\n") == b"-ERR Message already deleted\r\n"
    assert shell.feed(b"TOP 3 0\r\n") == b"-ERR Message already deleted\r\n"
    assert shell.feed(b"UIDL 1\r\n") == b"-ERR Message already deleted\r\n"
    assert shell.feed(b"STAT\r\n") == b"+OK 1 37\r\n"
    assert shell.feed(b"LIST\r\n") == b"+OK 1 messages (37 octets)\r\n2 37\r\n.\r\n"
    assert shell.feed(b"UIDL\r\n") == b"+OK\r\n2 uid-102\r\n.\r\n"
    assert shell.feed(b"RSET\r\n") == b"+OK maildrop has 3 messages (102 octets)\r\n"
    assert shell.feed(b"STAT\r\n") == b"+OK 3 102\r\n"
    assert shell.feed(b"DELE 3\r\nDELE 1\r\nQUIT\r\n").endswith(b"+OK Bye\r\n")
    assert shell.deleted == (101, 103)  # in message-number order


def test_quit_failure_still_closes() -> None:
    shell = logged_in()
    shell.quit_fails = True
    assert shell.feed(b"DELE 2\r\nQUIT\r\n").endswith(b"-ERR [SYS/TEMP] Could not delete\r\n")
    assert shell.conn.state is Pop3State.CLOSED
    assert isinstance(shell.events[-1], ConnectionClosed)


def test_quit_in_authorization() -> None:
    shell = make()
    assert shell.feed(b"QUIT\r\nNOOP\r\n") == b"+OK correo POP3 server signing off\r\n"
    assert isinstance(shell.events[-1], ConnectionClosed)
    assert not any(isinstance(e, Quit) for e in shell.events)


def test_eof_in_transaction_applies_nothing() -> None:
    shell = logged_in()
    assert shell.feed(b"DELE 1\r\nQUI", eof=True) == b"+OK Message 1 deleted\r\n"
    assert isinstance(shell.events[-1], ConnectionClosed)
    assert shell.deleted is None  # RFC 1939 §6: no QUIT, no UPDATE
    assert isinstance(shell.conn.next_event(), ConnectionClosed)  # idempotent
    shell.conn.receive_data(b"NOOP\r\n")  # ignored once closed
    assert isinstance(shell.conn.next_event(), ConnectionClosed)


def test_pipelined_commands_after_eof_still_run() -> None:
    shell = make()
    assert shell.feed(b"USER alice\r\nPASS secret\r\nSTAT\r\n", eof=True).endswith(b"+OK 3 102\r\n")
    assert isinstance(shell.events[-1], ConnectionClosed)


# ---- authentication ---------------------------------------------------------------

REFUSED = b"-ERR [AUTH] Authentication requires TLS (use STLS)\r\n"


@pytest.mark.parametrize(
    "line",
    [b"USER alice", b"PASS secret", b"AUTH", b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH PLAIN ="],
)
def test_plaintext_auth_refused(line: bytes) -> None:
    shell = make(tls=False)
    assert shell.feed(line + b"\r\n") == REFUSED
    assert shell.conn.state is Pop3State.AUTHORIZATION


def test_plaintext_auth_allowed_by_limits() -> None:
    shell = make(tls=False, allow_plaintext_auth=True)
    assert shell.feed(b"USER alice\r\nPASS secret\r\n").startswith(b"+OK Send PASS\r\n+OK maildrop")


def test_user_pass_failures() -> None:
    shell = make()
    assert shell.feed(b"PASS secret\r\n") == b"-ERR USER first\r\n"
    assert shell.feed(b"USER alice\r\nPASS wrong\r\n") == (
        b"+OK Send PASS\r\n-ERR [AUTH] Invalid credentials\r\n"
    )
    assert shell.feed(b"PASS secret\r\n") == b"-ERR USER first\r\n"  # USER must be restated
    shell.in_use = True
    assert shell.feed(b"USER alice\r\nPASS secret\r\n").endswith(
        b"-ERR [IN-USE] Maildrop locked\r\n"
    )
    assert shell.conn.state is Pop3State.AUTHORIZATION


def test_user_pass_event_hides_password() -> None:
    shell = make()
    shell.feed(b"USER alice\r\nPASS hunter2\r\n")
    userpass = next(e for e in shell.events if isinstance(e, UserPass))
    assert userpass.password == "hunter2"
    assert "hunter2" not in repr(userpass)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


PLAIN_OK = b64(b"\x00alice\x00secret")
OPENED = b"+OK maildrop has 3 messages (102 octets)\r\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"AUTH PLAIN " + PLAIN_OK], OPENED),
        ([b"auth plain", PLAIN_OK], b"+ \r\n" + OPENED),
        ([b"AUTH PLAIN", b""], b"+ \r\n-ERR [AUTH] Authentication failed\r\n"),
        ([b"AUTH PLAIN " + b64(b"\x00alice\x00bad")], b"-ERR [AUTH] Invalid credentials\r\n"),
        (
            [b"AUTH LOGIN", b64(b"alice"), b64(b"secret")],
            b"+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n" + OPENED,
        ),
        ([b"AUTH LOGIN " + b64(b"alice"), b64(b"secret")], b"+ UGFzc3dvcmQ6\r\n" + OPENED),
        ([b"AUTH LOGIN", b"*"], b"+ VXNlcm5hbWU6\r\n-ERR Authentication cancelled\r\n"),
        ([b"AUTH PLAIN", b"*"], b"+ \r\n-ERR Authentication cancelled\r\n"),
        ([b"AUTH PLAIN", b"not base64!"], b"+ \r\n-ERR Invalid base64 data\r\n"),
        ([b"AUTH PLAIN", b"YQ"], b"+ \r\n-ERR Invalid base64 data\r\n"),
        ([b"AUTH PLAIN", b"A\rB"], b"+ \r\n-ERR Syntax error\r\n"),
        ([b"AUTH PLAIN bm90IGJhc2U2NA"], b"-ERR Invalid base64 data\r\n"),
        ([b"AUTH CRAM-MD5"], b"-ERR Unsupported authentication mechanism\r\n"),
        ([b"AUTH"], b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"),
    ],
)
def test_auth_exchanges(lines: list[bytes], expected: bytes) -> None:
    shell = make()
    assert shell.feed(b"".join(line + b"\r\n" for line in lines)) == expected
    state = Pop3State.TRANSACTION if expected.endswith(OPENED) else Pop3State.AUTHORIZATION
    assert shell.conn.state is state


def test_auth_then_commands_continue_after_failed_exchange() -> None:
    shell = make()
    out = shell.feed(b"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\n" + PLAIN_OK + b"\r\nSTAT\r\n")
    assert out == b"+ \r\n-ERR Authentication cancelled\r\n+ \r\n" + OPENED + b"+OK 3 102\r\n"


def test_auth_events_hide_secrets() -> None:
    shell = make()
    shell.feed(b"AUTH PLAIN\r\n" + PLAIN_OK + b"\r\n")
    for ev in shell.events:
        assert "secret" not in repr(ev)
    assert any(isinstance(e, AuthResponse) for e in shell.events)
    assert "secret" not in repr(Auth("PLAIN", b"\x00alice\x00secret"))


def test_sasl_line_may_exceed_command_limit() -> None:
    shell = make(max_line=64, max_auth_line=4096)
    blob = b64(b"\x00alice\x00secret" + b"x" * 1000)  # ~1.3 KiB, longer than max_line
    assert shell.feed(b"AUTH PLAIN\r\n" + blob + b"\r\n") == (
        b"+ \r\n-ERR [AUTH] Invalid credentials\r\n"
    )
    assert shell.feed(b"AUTH PLAIN\r\n" + b"A" * 5000 + b"\r\n") == (
        b"+ \r\n-ERR Line too long\r\n"
    )
    assert shell.feed(b"NOOP " + b"x" * 100 + b"\r\n") == b"-ERR Line too long\r\n"


# ---- STLS -------------------------------------------------------------------------


def test_stls_discards_pipelined_plaintext() -> None:
    """RFC 2595 §4, CVE-2011-0411: commands sent with STLS must not run under TLS."""
    shell = make(tls=False, stls_available=True)
    out = shell.feed(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
    assert out == b"+OK Begin TLS negotiation\r\n"
    assert shell.conn.tls_active
    assert not any(isinstance(e, UserPass) for e in shell.events)
    assert shell.feed(b"USER alice\r\nPASS secret\r\n").endswith(OPENED)


def test_stls_states() -> None:
    assert make(tls=False).feed(b"STLS\r\n") == b"-ERR STLS not available\r\n"
    assert make(tls=True, stls_available=True).feed(b"STLS\r\n") == b"-ERR TLS already active\r\n"
    shell = make(tls=False, stls_available=True)
    shell.accept_tls = False
    assert shell.feed(b"STLS\r\nNOOP\r\nCAPA\r\n").startswith(
        b"-ERR TLS not available now\r\n-ERR Command not valid in this state\r\n+OK Cap"
    )
    assert not shell.conn.tls_active
    assert logged_in(stls_available=True).feed(b"STLS\r\n") == (
        b"-ERR Command not valid in this state\r\n"
    )


def test_stls_pauses_until_handshake() -> None:
    conn = Pop3Connection(Pop3Limits(stls_available=True))
    conn.receive_data(b"STLS\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), StartTls)
    assert conn.next_event() is PAUSED
    conn.send(Pop3Reply(True, "Begin TLS negotiation"))
    assert conn.next_event() is PAUSED
    conn.tls_started()
    assert conn.next_event() is NEED_DATA


# ---- CAPA by state ----------------------------------------------------------------

BASE = [b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE"]
TAIL = [b"EXPIRE NEVER", b"LOGIN-DELAY 0", b"IMPLEMENTATION correo"]
AUTHS = [b"USER", b"SASL PLAIN LOGIN"]


def capa_reply(caps: list[bytes]) -> bytes:
    return b"+OK Capability list follows\r\n" + b"".join(c + b"\r\n" for c in caps) + b".\r\n"


@pytest.mark.parametrize(
    ("tls", "limits", "caps"),
    [
        (False, {}, BASE + TAIL),
        (False, {"stls_available": True}, [*BASE, b"STLS", *TAIL]),
        (True, {"stls_available": True}, BASE + AUTHS + TAIL),
        (False, {"allow_plaintext_auth": True}, BASE + AUTHS + TAIL),
        (
            False,
            {"allow_plaintext_auth": True, "stls_available": True},
            [*BASE, *AUTHS, b"STLS", *TAIL],
        ),
    ],
)
def test_capa_in_authorization(tls: bool, limits: dict[str, bool], caps: list[bytes]) -> None:
    out = make(tls=tls, **limits).feed(b"CAPA\r\n")
    assert out == capa_reply(caps)


def test_capa_in_transaction() -> None:
    out = logged_in(stls_available=True).feed(b"CAPA\r\n")
    assert out == capa_reply(BASE + TAIL)


# ---- line framing and limits ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "out"),
    [
        (b"NOOP\n", b"-ERR Syntax error\r\n"),
        (b"NO\rOP\r\n", b"-ERR Syntax error\r\n"),
        (b"NOOP\r\r\n", b"-ERR Syntax error\r\n"),
        (b"STAT\x00\r\n", b"-ERR Syntax error\r\n"),
        (b"\r\n", b"-ERR Unknown command\r\n"),
    ],
)
def test_bare_cr_lf_rejected_session_continues(data: bytes, out: bytes) -> None:
    shell = logged_in()
    assert shell.feed(data + b"STAT\r\n") == out + b"+OK 3 102\r\n"


@pytest.mark.parametrize("feed_bytewise", [False, True])
def test_line_length_boundary(feed_bytewise: bool) -> None:
    shell = logged_in(max_line=32)
    fits = b"NOOP " + b"x" * 25 + b"\r\n"  # exactly 32 octets including CRLF
    too_long = b"NOOP " + b"x" * 26 + b"\r\n"
    data = fits + too_long + b"A" * 10_000 + b"\r\nSTAT\r\n"
    out = b""
    if feed_bytewise:
        for i in range(len(data)):
            out += shell.feed(data[i : i + 1])
    else:
        out = shell.feed(data)
    assert out == (
        b"-ERR No arguments allowed\r\n"  # fits: parsed (and refused on syntax)
        b"-ERR Line too long\r\n-ERR Line too long\r\n+OK 3 102\r\n"
    )
    assert len(shell.conn._in) == 0  # nothing of the long lines retained


def test_long_line_is_discarded_without_buffering() -> None:
    conn = Pop3Connection(Pop3Limits(max_line=64))
    conn.receive_data(b"X" * 100)
    assert conn.next_event() == Respond(b"-ERR Line too long\r\n")
    for _ in range(1000):
        conn.receive_data(b"Y" * 1000)  # 1 MB of one line: dropped as it arrives
        assert conn.next_event() is NEED_DATA
        assert len(conn._in) == 0
    conn.receive_data(b"\r\nCAPA\r\n")
    ev = conn.next_event()
    assert isinstance(ev, Respond)
    assert ev.data.startswith(b"+OK Capability")


def test_too_many_errors_closes() -> None:
    shell = logged_in(max_bad_commands=3)
    out = shell.feed(b"BAD\r\nNOOP\r\nBAD\r\nBAD\r\nBAD\r\nNOOP\r\n")
    assert out == (
        b"-ERR Unknown command\r\n+OK\r\n-ERR Unknown command\r\n-ERR Unknown command\r\n"
        b"-ERR Too many errors\r\n"
    )
    assert isinstance(shell.events[-1], ConnectionClosed)
    assert shell.deleted is None


def test_default_limits() -> None:
    limits = Pop3Limits()
    assert (limits.max_line, limits.max_auth_line, limits.max_bad_commands) == (512, 12288, 20)
    assert not limits.allow_plaintext_auth
    with pytest.raises(ValueError):
        Pop3Limits(max_line=4)
    with pytest.raises(ValueError):
        Pop3Limits(max_bad_commands=0)


# ---- replies and misuse -----------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "wire"),
    [
        (Pop3Reply(True, "hello"), b"+OK hello\r\n"),
        (Pop3Reply(True, ""), b"+OK\r\n"),
        (Pop3Reply(False, "locked", code="IN-USE"), b"-ERR [IN-USE] locked\r\n"),
        (Pop3Reply(False, "try later", code="SYS/TEMP"), b"-ERR [SYS/TEMP] try later\r\n"),
    ],
)
def test_reply_bytes(reply: Pop3Reply, wire: bytes) -> None:
    assert reply.to_bytes() == wire


@pytest.mark.parametrize(
    "reply",
    [
        Pop3Reply(True, "two\r\nlines"),
        Pop3Reply(False, "x", code="A B"),
        Pop3Reply(False, "x", code="]"),
        Pop3Reply(False, "x", code=""),
    ],
)
def test_reply_injection_refused(reply: Pop3Reply) -> None:
    with pytest.raises(LocalProtocolError):
        reply.to_bytes()


def test_shell_misuse_raises() -> None:
    conn = Pop3Connection(Pop3Limits(), tls_active=True)
    with pytest.raises(LocalProtocolError):
        conn.send(Pop3Reply(True, "unasked"))
    for call in (
        lambda: conn.send_challenge(b""),
        lambda: conn.open_maildrop([]),
        lambda: conn.begin_message(1),
        conn.message_sent,
        conn.tls_started,
    ):
        with pytest.raises(LocalProtocolError):
            call()
    conn.receive_data(b"USER alice\r\nPASS x\r\n")
    conn.next_event()
    assert isinstance(conn.next_event(), UserPass)
    with pytest.raises(LocalProtocolError):
        conn.send(Pop3Reply(True, "use open_maildrop"))
    with pytest.raises(LocalProtocolError):
        conn.send_challenge(b"no SASL after USER/PASS")
    with pytest.raises(LocalProtocolError):
        conn.open_maildrop([MaildropEntry(1, 1, "a b")])  # RFC 1939 §7: no space in UIDL
    with pytest.raises(LocalProtocolError):
        conn.open_maildrop([MaildropEntry(1, 1, "a"), MaildropEntry(2, 1, "a")])
    with pytest.raises(LocalProtocolError):
        conn.open_maildrop([MaildropEntry(1, -1, "a")])
    assert conn.open_maildrop([]) == b"+OK maildrop has 0 messages (0 octets)\r\n"


def test_retrieve_can_be_refused_by_shell() -> None:
    shell = logged_in()
    conn = shell.conn
    conn.receive_data(b"RETR 1\r\nNOOP\r\n")
    assert conn.next_event() == Retrieve(1, 101, None)
    assert conn.next_event() is PAUSED
    assert conn.send(Pop3Reply(False, "message vanished")) == b"-ERR message vanished\r\n"
    assert conn.next_event() == Respond(b"+OK\r\n")


def test_greeting() -> None:
    assert Pop3Connection().greeting() == b"+OK correo POP3 server ready\r\n"
