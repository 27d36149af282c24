"""Sieve and ManageSieve against hostile input, over real sockets.

* a sender's deeply nested message to a user with a ``body`` test must not stall the
  server for everyone else (the body test once re-parsed it on the event loop);
* a vacation ``:from`` may name only the account's own addresses (RFC 5230 §4.2 leaves
  it to policy), at upload and at delivery, and ``:mime`` cannot add header fields;
* a refused ManageSieve command drops the literals it announced (RFC 5804 §4), and a
  script name must follow RFC 5804 §1.6.
"""

from __future__ import annotations

import base64
import select
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import PASSWORDS, Server, correo, make_data_dir
from tests.server.helpers import RawSmtp, mailbox, wait_count
from tests.server.test_mda_managesieve import Client

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("sieve-hostile") / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]'})
    assert correo(data, "alias", "add", "helpdesk@example.test", ALICE).returncode == 0
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def put_script(srv: Server, user: str, text: str, name: str = "main") -> None:
    """Store and activate over ManageSieve, which the next delivery sees at once (the
    CLI's change shows after the delivery cache's second)."""
    c = sieve_login(srv, user)
    script = text.encode()
    assert c.cmd(b'PUTSCRIPT "%s" {%d+}\r\n' % (name.encode(), len(script)) + script)[-1] == b"OK"
    assert c.cmd(b'SETACTIVE "%s"' % name.encode())[-1] == b"OK"
    c.cmd(b"LOGOUT")


def deactivate(srv: Server, user: str) -> None:
    c = sieve_login(srv, user)
    assert c.cmd(b'SETACTIVE ""')[-1] == b"OK"
    c.cmd(b"LOGOUT")


def send(srv: Server, sender: str, rcpt: str, data: bytes) -> tuple[int, str]:
    c = RawSmtp(srv.ports["smtp"], timeout=60)
    c.cmd("EHLO client.test")
    assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(data + b"\r\n.\r\n")
    reply = c.reply()
    c.close()
    return reply


def sieve_login(srv: Server, user: str) -> Client:
    c = Client(srv.ports["sieve"])
    c.response()
    c.starttls()
    token = base64.b64encode(f"\0{user}\0{PASSWORDS[user]}".encode())
    assert c.cmd(b'AUTHENTICATE "PLAIN" "' + token + b'"')[-1].startswith(b"OK")
    return c


# ---- the body test does not stall the server ---------------------------------------


def nested(depth: int, lines: int) -> bytes:
    out = (
        f"From: stranger@remote.test\r\nTo: {ALICE}\r\nSubject: deep\r\n"
        "Message-ID: <deep@remote.test>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    for i in range(depth):
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
    out += b"Content-Type: text/plain\r\n\r\n" + b"a\r\n" * lines + b"needle\r\n"
    for i in reversed(range(depth)):
        out += b"--b%d--\r\n" % i
    return out


def test_a_nested_message_to_a_body_test_does_not_stall_other_clients(srv: Server) -> None:
    """A ~350 KB message nested 900 deep kept every client waiting for seconds while
    the body test re-parsed it on the event loop; other clients now get answers."""
    put_script(srv, ALICE, 'require ["body", "fileinto"];\nif body :contains "needle" { keep; }\n')
    before = wait_count(srv.ports["pop3s"], ALICE, 0, timeout=0)
    data = nested(900, 100_000)
    assert len(data) > 300_000
    other = RawSmtp(srv.ports["smtp"])
    other.cmd("EHLO other.test")
    hostile = RawSmtp(srv.ports["smtp"], timeout=60)
    hostile.cmd("EHLO hostile.test")
    assert hostile.cmd("MAIL FROM:<stranger@remote.test>")[0] == 250
    assert hostile.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert hostile.cmd("DATA")[0] == 354
    hostile.send(data)
    reply: list[tuple[int, str]] = []
    done = threading.Event()

    def finish() -> None:
        hostile.send(b"\r\n.\r\n")
        reply.append(hostile.reply())
        done.set()

    rounds = 0
    thread = threading.Thread(target=finish)
    thread.start()
    while not done.is_set() or rounds < 5:
        assert other.cmd("NOOP")[0] == 250  # answered meanwhile (10 s socket timeout)
        rounds += 1
    thread.join()
    other.cmd("QUIT")
    assert reply[0][0] == 250, reply
    assert wait_count(srv.ports["pop3s"], ALICE, before + 1) == before + 1
    # How long a NOOP waited is the machine's load as much as the server's; the
    # watchdog's report of a callback computing past 100 ms is the server's alone.
    srv.assert_loop_never_blocked()
    deactivate(srv, ALICE)


# ---- vacation :from ------------------------------------------------------------------

_FOREIGN = 'require "vacation";\nvacation :from "IT Security <bob@example.test>" "Away.";\n'


def test_a_foreign_vacation_from_is_refused_at_upload(srv: Server) -> None:
    c = sieve_login(srv, ALICE)
    script = _FOREIGN.encode()
    for command in (b'PUTSCRIPT "away" {%d+}\r\n', b"CHECKSCRIPT {%d+}\r\n"):
        no = c.cmd(command % len(script) + script)[-1]
        assert no.startswith(b"NO") and b"bob@example.test" in no and b"your addresses" in no
    assert b'"away"' not in b"".join(c.cmd(b"LISTSCRIPTS"))
    for own in ("Alice <alice@example.test>", "helpdesk@example.test", "ALICE+away@example.test"):
        script = f'require "vacation";\nvacation :from "{own}" "Away.";\n'.encode()
        assert c.cmd(b'PUTSCRIPT "own" {%d+}\r\n' % len(script) + script)[-1] == b"OK", own
    c.cmd(b"LOGOUT")
    path = srv.data / "foreign.sieve"
    path.write_text(_FOREIGN)
    r = correo(srv.data, "sieve", "put", ALICE, "away", str(path))
    assert r.returncode != 0 and "not one of your addresses" in r.stderr, r.stderr
    assert "away" not in correo(srv.data, "sieve", "list", ALICE).stdout


def _reply_to(srv: Server, subject: str) -> bytes:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for msg in mailbox(srv.ports["pop3s"], CAROL):
            if f"Subject: Auto: {subject}".encode() in msg:
                return msg
        time.sleep(0.1)
    raise AssertionError(f"no vacation reply to {subject!r}\n" + srv.log()[-2000:])


def _from_fields(msg: bytes) -> list[bytes]:
    head = msg.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"from:")]


@pytest.mark.parametrize(
    ("vacation", "expected"),
    [
        # Computed at run time, so only delivery can refuse it: the account's own address.
        ('set "who" "IT Security <bob@example.test>";\nvacation :from "${who}"', ALICE),
        ('vacation :from "Alice on holiday <helpdesk@example.test>"', "helpdesk@example.test"),
        # :mime's entity may bring Content-* fields, never a From (or To, Bcc...).
        (
            'vacation :mime :from "alice@example.test" text:\r\n'
            "From: IT Security <bob@example.test>\r\nBcc: victim@remote.test\r\n"
            "Content-Type: text/plain\r\n\r\nAway.\r\n.\r\n",
            ALICE,
        ),
    ],
    ids=["variable-from", "alias-from", "mime-headers"],
)
def test_the_vacation_reply_comes_from_the_account(
    srv: Server, vacation: str, expected: str
) -> None:
    subject = f"hello {len(vacation)}"
    put_script(
        srv,
        ALICE,
        f'require ["vacation", "variables"];\n{vacation} "Away.";\n'
        if "text:" not in vacation
        else f'require ["vacation", "variables"];\n{vacation};\n',
        name=f"v{len(vacation)}",
    )
    msg = (
        f"From: {CAROL}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{len(vacation)}@example.test>\r\n\r\nAre you there?\r\n"
    ).encode()
    assert send(srv, CAROL, ALICE, msg)[0] == 250
    reply = _reply_to(srv, subject)
    fields = _from_fields(reply)
    assert len(fields) == 1 and expected.encode() in fields[0], fields
    assert b"bob@example.test" not in reply.split(b"\r\n\r\n", 1)[0]
    assert b"victim@remote.test" not in reply
    if expected == ALICE and "${who}" in vacation:
        assert "event=delivery.vacation_from_refused" in srv.log()
    deactivate(srv, ALICE)


# ---- ManageSieve: refused commands and their literals ------------------------------


def test_a_literal_after_a_refused_command_is_not_run(srv: Server) -> None:
    """RFC 5804 §4: the literal belongs to the refused command; its text (here a
    DELETESCRIPT) must not run as the next command."""
    c = sieve_login(srv, BOB)
    script = b"keep;\r\n"
    assert c.cmd(b'PUTSCRIPT "x" {%d+}\r\n' % len(script) + script)[-1] == b"OK"
    inner = b'DELETESCRIPT "x"\r\n'
    for bad in (
        b"PUTSCRIPT x {%d+}\r\n",  # an atom where a string belongs
        b'PUTSCRIPT "y" junk {%d+}\r\n',
        b'"DELETESCRIPT" {%d}\r\n',  # no command at all, a synchronising literal
    ):
        c.sock.sendall(bad % len(inner) + inner + b"\r\n")
        assert c.response()[-1].startswith(b"NO")
        assert c.cmd(b'NOOP "alive"')[-1].startswith(b'OK (TAG "alive")')  # nothing else ran
    assert c.cmd(b"LISTSCRIPTS") == [b'"x"', b"OK"]
    assert c.cmd(b'GETSCRIPT "x"')[0] == script
    c.cmd(b"LOGOUT")


def test_script_names_must_be_valid(srv: Server) -> None:
    c = sieve_login(srv, BOB)
    script = b"keep;"
    for name in (b'""', b'"a\xe2\x80\xa8b"', b'"e\xcc\x81"'):  # empty, U+2028, not NFC
        assert c.cmd(b"PUTSCRIPT " + name + b" {%d+}\r\n" % len(script) + script)[-1].startswith(
            b"NO"
        ), name
    assert c.cmd(b'RENAMESCRIPT "x" ""')[-1].startswith(b"NO")
    assert b'""' not in b"".join(c.cmd(b"LISTSCRIPTS"))
    assert c.cmd(b"NOOP")[-1].startswith(b"OK")
    c.cmd(b"LOGOUT")
    path = srv.data / "keep.sieve"
    path.write_text("keep;\n")
    r = correo(srv.data, "sieve", "put", BOB, "", str(path))
    assert r.returncode != 0 and "empty script name" in r.stderr


def test_a_huge_script_is_refused_before_it_is_parsed(srv: Server) -> None:
    """PUTSCRIPT checks max_script_size before parsing: a 1 MB script once ran the
    parser on the event loop for seconds; other clients are answered meanwhile."""
    c = sieve_login(srv, BOB)
    script = b"if " + b"anyof(" * 60 + b"true" + b")" * 60 + b" { keep; }\r\n"
    script = script * (1_000_000 // len(script))
    other = RawSmtp(srv.ports["smtp"])
    other.cmd("EHLO other.test")
    answer: list[list[bytes]] = []
    done = threading.Event()

    def put() -> None:
        answer.append(c.cmd(b'PUTSCRIPT "big" {%d+}\r\n' % len(script) + script))
        done.set()

    thread = threading.Thread(target=put)
    thread.start()
    while not done.is_set():
        assert other.cmd("NOOP")[0] == 250  # answered meanwhile (10 s socket timeout)
    thread.join()
    other.cmd("QUIT")
    assert answer[0][-1].startswith(b"NO (QUOTA/MAXSIZE)"), answer
    assert c.cmd(b"NOOP")[-1].startswith(b"OK")
    c.cmd(b"LOGOUT")
    srv.assert_loop_never_blocked()  # no parse on the loop: the watchdog saw no stall


def test_a_command_dribbled_a_byte_at_a_time_times_out(start_server: object) -> None:
    """command_timeout counts from a command's first octet, not from the last read:
    a client sending one byte every 0.2 s no longer holds its session for ever."""
    srv: Server = start_server({"command_timeout": "1.0"})  # type: ignore[operator]
    c = Client(srv.ports["sieve"])
    c.response()
    c.sock.settimeout(10)
    got = b""
    # Dribbled whole, the command takes 12 s, twelve times the timeout: a server that
    # timed from the last read would never cut it off, so a BYE before its end is the
    # proof, however much a loaded machine stretches each 0.2 s.
    for byte in b'NOOP "and on and on and on and on and on and on and on and on"':
        c.sock.sendall(bytes([byte]))  # every byte well inside the per-read timeout
        time.sleep(0.2)
        if select.select([c.sock], [], [], 0)[0]:
            got = c.sock.recv(1000)
            break
    assert got.startswith(b"BYE"), got
