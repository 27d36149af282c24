"""SMTP smuggling through correo, and DSN reflection on the MX.

One correo server whose remote domains all go to capturing next hops on loopback
(``[outbound] transport``): ``remote.test``, ``victim.test`` and ``good.test`` to one
that offers no CHUNKING (so correo relays with DATA), ``chunk.test`` to one that does
(BDAT).  The next hops record every byte they receive, so a test can check what went
over the wire, not just what arrived.
"""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir
from tests.server.dnsserver import DnsServer
from tests.server.helpers import RawSmtp, mailbox, wait_count

CAROL = "carol@example.test"
ALICE = "alice@example.test"
BARE = (554, "5.6.0 Message contains bare CR or LF; lines must end with CRLF")
PAYLOAD = (
    b"From: <someone@example.test>\r\nSubject: smuggle\r\n\r\nhello\n.\n"
    b"MAIL FROM:<admin@victim.test>\r\nRCPT TO:<target@remote.test>\r\nDATA\r\n"
    b"From: admin@victim.test\r\n\r\nspoofed\r\n.\r\n"
)


def only_crlf(data: bytes) -> bool:
    """RFC 5321 §2.3.8: CR and LF appear only as the pair CRLF."""
    return data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")


@dataclass
class Captured:
    sender: str
    recipients: list[str]
    data: bytes  # the message as the next hop understood it (unstuffed DATA or BDAT)


@dataclass
class NextHop:
    """A strict SMTP receiver on loopback that records every byte of every session."""

    chunking: bool
    reject: frozenset[str] = frozenset()
    eightbit: bool = True
    messages: list[Captured] = field(default_factory=list)
    transcripts: list[bytearray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        transcript = bytearray()
        with self.cond:
            self.transcripts.append(transcript)
        buf = bytearray()

        def fill() -> None:
            data = conn.recv(65536)
            if not data:
                raise EOFError
            transcript.extend(data)
            buf.extend(data)

        def line() -> bytes:
            while b"\r\n" not in buf:
                fill()
            end = buf.index(b"\r\n")
            out = bytes(buf[:end])
            del buf[: end + 2]
            return out

        sender, rcpts, chunks = "", [], bytearray()
        try:
            conn.sendall(b"220 next.hop ESMTP\r\n")
            while True:
                cmd = line()
                verb = cmd[:4].upper()
                if verb == b"EHLO":
                    ext = b"250-CHUNKING\r\n" if self.chunking else b""
                    ext += b"250-8BITMIME\r\n" if self.eightbit else b""
                    conn.sendall(b"250-next.hop\r\n250-PIPELINING\r\n" + ext + b"250 HELP\r\n")
                elif verb == b"MAIL":
                    sender = cmd.decode().split("<", 1)[1].split(">", 1)[0]
                    rcpts, chunks = [], bytearray()
                    conn.sendall(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    rcpt = cmd.decode().split("<", 1)[1].split(">", 1)[0]
                    if rcpt in self.reject:
                        conn.sendall(b"550 5.1.1 no such user\r\n")
                    else:
                        rcpts.append(rcpt)
                        conn.sendall(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    while (b"\r\n" + buf).find(b"\r\n.\r\n") < 0:  # RFC 5321 §4.1.1.4
                        fill()
                    end = (b"\r\n" + buf).find(b"\r\n.\r\n")
                    body = (b"\r\n" + bytes(buf[:end]))[2:]
                    del buf[: end + 3]
                    self._record(sender, rcpts, body.replace(b"\r\n..", b"\r\n.") + b"\r\n")
                    conn.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"BDAT":
                    parts = cmd.split()
                    size = int(parts[1])
                    while len(buf) < size:
                        fill()
                    chunks += buf[:size]
                    del buf[:size]
                    if len(parts) > 2:  # LAST
                        self._record(sender, rcpts, bytes(chunks))
                    conn.sendall(b"250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:  # RSET, NOOP
                    conn.sendall(b"250 ok\r\n")
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def _record(self, sender: str, rcpts: list[str], data: bytes) -> None:
        with self.cond:
            self.messages.append(Captured(sender, list(rcpts), data))
            self.cond.notify_all()

    def wait_for(self, recipient: str, timeout: float = 20.0) -> Captured:
        """The first message received for ``recipient``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages:
                    if recipient in m.recipients:
                        return m
                left = deadline - time.monotonic()
                assert left > 0, f"nothing for {recipient}: {self.messages!r}"
                self.cond.wait(left)

    def wire(self) -> bytes:
        with self.cond:
            return b"".join(bytes(t) for t in self.transcripts)


@dataclass
class World:
    srv: Server
    data_hop: NextHop
    bdat_hop: NextHop
    plain_hop: NextHop


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    dns = DnsServer({"good.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]}})
    data_hop = NextHop(chunking=False, reject=frozenset({"gone@remote.test"}))
    bdat_hop = NextHop(chunking=True, reject=frozenset({"gone@chunk.test"}))
    plain_hop = NextHop(chunking=False, eightbit=False)
    data: Path = tmp_path_factory.mktemp("smuggling") / "data"
    make_data_dir(data, {"nameservers": f'["{dns.address}"]'})
    hop = f"smtp:[127.0.0.1]:{data_hop.port}"
    transport = [f"{d} {hop}" for d in ("remote.test", "victim.test", "good.test")]
    transport.append(f"chunk.test smtp:[127.0.0.1]:{bdat_hop.port}")
    transport.append(f"plain.test smtp:[127.0.0.1]:{plain_hop.port}")
    with (data / "correo.toml").open("a") as f:
        f.write(
            "\n[outbound]\n"
            f"transport = {json.dumps(transport)}\n"
            "poll_interval = 0.3\nretry_initial = 1.0\n"
        )
    r = correo(data, "alias", "add", "fwd@example.test", "gone@remote.test")
    assert r.returncode == 0, r.stderr
    srv = Server(data)
    srv.start()
    yield World(srv, data_hop, bdat_hop, plain_hop)
    code = srv.stop()
    dns.close()
    assert code == 0, srv.log()[-3000:]
    assert "session_crashed" not in srv.log() and "Traceback" not in srv.log()


# -- 1. BDAT obeys the line rules of DATA -----------------------------------------------


def _mx_transaction(raw: RawSmtp) -> None:
    assert raw.cmd("EHLO client.test")[0] == 250
    assert raw.cmd("MAIL FROM:<anyone@victim.test> RET=FULL")[0] == 250
    assert raw.cmd(f"RCPT TO:<{CAROL}> NOTIFY=SUCCESS")[0] == 250


def test_bdat_with_bare_lf_is_refused_on_the_mx_like_data(world: World) -> None:
    """RFC 5321 §2.3.8: the BDAT payload gets DATA's 554 5.6.0; the session goes on."""
    before = len(mailbox(world.srv.ports["pop3s"], CAROL))
    raw = RawSmtp(world.srv.ports["smtp"])
    _mx_transaction(raw)
    assert raw.cmd("DATA")[0] == 354
    raw.send(PAYLOAD)  # it ends with the real CRLF "." CRLF
    data_reply = raw.reply()
    assert data_reply == BARE
    _mx_transaction(raw)
    half = len(PAYLOAD) // 2  # the bare LF may be in any chunk
    raw.send(b"BDAT %d\r\n" % half + PAYLOAD[:half])
    assert raw.reply()[0] == 250
    rest = PAYLOAD[half:]
    raw.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
    assert raw.reply() == data_reply
    assert raw.cmd("NOOP")[0] == 250  # the session stays in step
    assert raw.cmd("MAIL FROM:<>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{CAROL}>")[0] == 250
    ok = b"Subject: fine\r\n\r\nclean\r\n"
    raw.send(b"BDAT %d LAST\r\n" % len(ok) + ok)
    assert raw.reply()[0] == 250
    raw.cmd("QUIT")
    raw.close()
    box = mailbox(world.srv.ports["pop3s"], CAROL)
    assert len(box) == before + 1 and b"Subject: fine" in box[-1]
    assert not any(b"smuggle" in m for m in box)


def test_bdat_with_bare_lf_is_refused_on_submission(world: World) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", world.srv.ports["submissions"], context=client_tls(), timeout=10
    ) as s:
        s.login(ALICE, PASSWORDS[ALICE])
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt("victim@remote.test")[0] == 250
        body = b"From: <alice@example.test>\r\n" + PAYLOAD.split(b"\r\n", 1)[1]
        s.send(b"BDAT %d LAST\r\n" % len(body) + body)
        code, text = s.getreply()
        assert (code, text.decode()) == BARE
        assert s.noop()[0] == 250
    assert not any(b"smuggle" in m.data for m in world.data_hop.messages)


# -- 1. whatever is stored, the next hop sees CRLF only -----------------------------------

_INJECT = """
import asyncio, sys
from pathlib import Path
from correo.store.api import Envelope, QueuedRecipient
from correo.store.sqlite import SqliteStore

async def main(data, sender, message, *rcpts):
    store = SqliteStore(Path(data) / "store")
    await store.open()
    try:
        spool = store.new_spool()
        rp = f"Return-Path: <{sender}>\\r\\n".encode()
        spool.write(rp + Path(message).read_bytes())
        envelope = Envelope(sender=sender, authenticated="alice@example.test")
        queued = [QueuedRecipient(r) for r in rcpts]
        await store.deliver(spool, envelope, [], queued, queue_skip=len(rp))
    finally:
        await store.close()

asyncio.run(main(*sys.argv[1:]))
"""


def _inject(srv: Server, tmp: Path, sender: str, message: bytes, *rcpts: str) -> None:
    """Queue ``message`` byte for byte, as a local tool writing to the store would."""
    path = tmp / "message.eml"
    path.write_bytes(message)
    args = [sys.executable, "-c", _INJECT, str(srv.data), sender, str(path), *rcpts]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("domain", ["remote.test", "chunk.test"])
def test_stored_bare_lf_reaches_the_next_hop_as_crlf(
    world: World, tmp_path: Path, domain: str
) -> None:
    """DATA (dot-stuffed) and BDAT alike: the smuggled end and commands stay message
    text; the failure DSN that quotes the message is repaired the same way."""
    hop = world.bdat_hop if domain == "chunk.test" else world.data_hop
    sender = f"victim-{domain.split('.')[0]}@remote.test"
    _inject(world.srv, tmp_path, sender, PAYLOAD, f"ok@{domain}", f"gone@{domain}")
    got = hop.wait_for(f"ok@{domain}")
    assert got.sender == sender and got.recipients == [f"ok@{domain}"]
    assert only_crlf(got.data)
    assert b"hello\r\n.\r\nMAIL FROM:<admin@victim.test>\r\n" in got.data
    dsn = world.data_hop.wait_for(sender)  # the 550 for gone@ bounces with the message
    assert dsn.sender == "" and b"Action: failed" in dsn.data
    assert only_crlf(dsn.data) and b"MAIL FROM:<admin@victim.test>" in dsn.data
    assert only_crlf(hop.wire()) and only_crlf(world.data_hop.wire())
    # One transaction each: nothing after the fake end ran as a command.
    assert not any("target@remote.test" in m.recipients for m in hop.messages)


def test_sendmail_bare_cr_reaches_the_next_hop_as_crlf(world: World) -> None:
    """``correo sendmail`` keeps a lone CR (it only turns LF into CRLF); DATA repairs it."""
    message = b"Subject: cr\r\n\r\nhello\r.\rRCPT TO:<target@remote.test>\r\n"
    cli = [sys.executable, "-m", "correo.cli.main", "--data", str(world.srv.data)]
    r = subprocess.run(
        [*cli, "sendmail", "-f", ALICE, "cr@remote.test"],
        input=message,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    got = world.data_hop.wait_for("cr@remote.test")
    assert only_crlf(got.data) and b"hello\r\n.\r\nRCPT TO:<target@remote.test>\r\n" in got.data
    assert only_crlf(world.data_hop.wire())
    assert not any("target@remote.test" in m.recipients for m in world.data_hop.messages)


def test_deeply_nested_8bit_mime_for_a_7bit_peer_fails_cleanly(world: World) -> None:
    """Converting for a peer without 8BITMIME (RFC 6152 §3) runs the stdlib MIME parser,
    which recurses per level: a message thousands deep is "cannot be made 7-bit"
    (5.6.3, a failure notice), not a worker error retried for days."""
    depth = 3000
    opens = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(depth)
    )
    leaf = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\né\r\n"
    closes = "".join(f"--b{i}--\r\n" for i in reversed(range(depth)))
    head = f"From: <{ALICE}>\r\nSubject: deep mime\r\nMIME-Version: 1.0\r\n"
    message = (head + opens + leaf + closes).encode()
    with smtplib.SMTP_SSL(
        "127.0.0.1", world.srv.ports["submissions"], context=client_tls(), timeout=10
    ) as s:
        s.login(ALICE, PASSWORDS[ALICE])
        s.sendmail(ALICE, ["x@plain.test"], message, mail_options=["BODY=8BITMIME"])
    deadline = time.monotonic() + 20
    while not any(b"Status: 5.6.3" in m for m in mailbox(world.srv.ports["pop3s"], ALICE)):
        assert time.monotonic() < deadline, world.srv.log()[-3000:]
        time.sleep(0.2)
    assert not world.plain_hop.messages


# -- 9. DSN reflection on the MX -------------------------------------------------------------


def _send_mx(srv: Server, sender: str, rcpts: list[tuple[str, str]], subject: str) -> None:
    raw = RawSmtp(srv.ports["smtp"])
    assert raw.cmd("EHLO client.test")[0] == 250
    assert raw.cmd(f"MAIL FROM:<{sender}> RET=FULL")[0] == 250
    for rcpt, notify in rcpts:
        assert raw.cmd(f"RCPT TO:<{rcpt}> NOTIFY={notify}")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(f"From: <{sender}>\r\nSubject: {subject}\r\n\r\nSECRET-BODY-LINE\r\n.\r\n".encode())
    code, text = raw.reply()
    assert code == 250, text
    raw.cmd("QUIT")
    raw.close()


def test_forged_sender_on_the_mx_gets_no_success_dsn_and_no_content(world: World) -> None:
    """A forged MAIL FROM with NOTIFY=SUCCESS RET=FULL must not make correo mail the
    message to that address; a failure notice goes out with the header section only."""
    victim = "anyone@victim.test"
    before = wait_count(world.srv.ports["pop3s"], CAROL, 0)
    _send_mx(
        world.srv,
        victim,
        [(CAROL, "SUCCESS"), ("fwd@example.test", "SUCCESS,FAILURE")],
        "reflect",
    )
    assert wait_count(world.srv.ports["pop3s"], CAROL, before + 1) == before + 1
    # The alias's target refuses the mail: one failure DSN to the sender.  The success
    # DSN, had there been one, is filed before it by the same queue task.
    dsn = world.data_hop.wait_for(victim)
    assert dsn.sender == "" and b"Action: failed" in dsn.data
    assert b"Content-Type: text/rfc822-headers" in dsn.data
    assert b"SECRET-BODY-LINE" not in dsn.data and b"Subject: reflect" in dsn.data
    reports = [m for m in world.data_hop.messages if victim in m.recipients]
    assert len(reports) == 1
    dsn_lines = [x for x in world.srv.log_lines if "event=queue.dsn " in x]
    assert not any("action=delivered" in x and victim in x for x in dsn_lines), dsn_lines


def test_spf_authenticated_sender_on_the_mx_gets_a_headers_only_success_dsn(
    world: World,
) -> None:
    """SPF passes for good.test from 127.0.0.1: NOTIFY=SUCCESS is honoured, RET=FULL
    is not (the MX returns headers only, whoever the sender)."""
    sender = "someone@good.test"
    _send_mx(world.srv, sender, [(CAROL, "SUCCESS")], "spf pass")
    dsn = world.data_hop.wait_for(sender)
    assert dsn.sender == "" and b"Action: delivered" in dsn.data
    assert b"Content-Type: text/rfc822-headers" in dsn.data
    assert b"Subject: spf pass" in dsn.data and b"SECRET-BODY-LINE" not in dsn.data


def test_lmtp_bdat_with_bare_lf_is_refused_for_each_recipient(world: World) -> None:
    """LMTP shares the SMTP core: RFC 2033 §4.2 gives the refusal once per recipient."""
    raw = RawSmtp(world.srv.ports["lmtp"])
    assert raw.cmd("LHLO mta.test")[0] == 250
    assert raw.cmd("MAIL FROM:<>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{CAROL}>")[0] == 250
    assert raw.cmd("RCPT TO:<bob@example.test>")[0] == 250
    raw.send(b"BDAT %d LAST\r\n" % len(PAYLOAD) + PAYLOAD)
    assert [raw.reply(), raw.reply()] == [BARE, BARE]
    assert raw.cmd("NOOP")[0] == 250
    raw.cmd("QUIT")
    raw.close()
    assert not any(b"smuggle" in m for m in mailbox(world.srv.ports["pop3s"], CAROL))
