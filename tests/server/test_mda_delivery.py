"""Sieve at delivery end to end, over SMTP and LMTP; ManageSieve; junk training.

Every test talks to a real ``correo serve`` over real sockets and checks the effect
where a user would see it (IMAP folders, POP3, SMTP/LMTP replies, the queue).
"""

from __future__ import annotations

import imaplib
import socket
import time

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo
from tests.server.helpers import RawSmtp

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PORTS = {"sieve": '["127.0.0.1:0"]', "lmtp": '["127.0.0.1:0"]'}


def put_script(srv: Server, user: str, text: str, name: str = "main") -> None:
    path = srv.data / f"{name}.sieve"
    path.write_text(text)
    r = correo(srv.data, "sieve", "put", user, name, str(path), "--activate")
    assert r.returncode == 0, r.stderr


def message(subject: str, body: str = "Hello.\r\n", extra: str = "") -> bytes:
    return (
        f"From: Dave <dave@remote.test>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n{extra}\r\n{body}"
    ).encode()


def smtp_send(srv: Server, sender: str, rcpts: list[str], data: bytes) -> tuple[int, str]:
    c = RawSmtp(srv.ports["smtp"])
    c.cmd("EHLO client.test")
    c.cmd(f"MAIL FROM:<{sender}>")
    for r in rcpts:
        code, _ = c.cmd(f"RCPT TO:<{r}>")
        assert code == 250
    assert c.cmd("DATA")[0] == 354
    c.send(data + b"\r\n.\r\n")
    reply = c.reply()
    c.cmd("QUIT")
    c.close()
    return reply


def imap(srv: Server, user: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.starttls(client_tls())
    m.login(user, PASSWORDS[user])
    return m


def folder(srv: Server, user: str, name: str) -> list[bytes]:
    """Every message in ``name`` (empty if the folder does not exist)."""
    m = imap(srv, user)
    try:
        typ, _ = m.select(f'"{name}"', readonly=True)
        if typ != "OK":
            return []
        _, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        m.logout()


def wait_for(fn, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture(scope="module")
def mda(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.conftest import make_data_dir

    data = tmp_path_factory.mktemp("mda") / "data"
    make_data_dir(data, PORTS)
    srv = Server(data)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def test_fileinto_with_create_and_flags_seen_over_imap(mda: Server) -> None:
    put_script(
        mda,
        ALICE,
        'require ["fileinto", "mailbox", "imap4flags"];\n'
        'if header :contains "subject" "invoice" {\n'
        '  fileinto :create :flags "\\\\Flagged" "Bills"; stop; }\n',
    )
    assert smtp_send(mda, "dave@remote.test", [ALICE], message("your invoice 42"))[0] == 250
    bills = folder(mda, ALICE, "Bills")
    assert len(bills) == 1 and b"invoice 42" in bills[0]
    m = imap(mda, ALICE)
    m.select("Bills")
    _, flags = m.fetch("1", "(FLAGS)")
    m.logout()
    assert b"\\Flagged" in flags[0]
    assert smtp_send(mda, "dave@remote.test", [ALICE], message("lunch"))[0] == 250
    assert any(b"Subject: lunch" in x for x in folder(mda, ALICE, "INBOX"))


def test_reject_is_550_over_smtp_and_discard_keeps_nothing(mda: Server) -> None:
    put_script(
        mda,
        BOB,
        'require ["reject"];\nif header :is "subject" "buy now" { reject "No ads, thanks."; }\n'
        'if header :is "subject" "drop me" { discard; }\n',
    )
    code, text = smtp_send(mda, "dave@remote.test", [BOB], message("buy now"))
    assert code == 550 and "No ads" in text
    assert smtp_send(mda, "dave@remote.test", [BOB], message("drop me"))[0] == 250
    inbox = folder(mda, BOB, "INBOX")
    assert not any(b"buy now" in x or b"drop me" in x for x in inbox)


def test_redirect_is_queued(mda: Server) -> None:
    put_script(mda, CAROL, 'redirect "someone@elsewhere.test";\n')
    assert smtp_send(mda, "dave@remote.test", [CAROL], message("forward me"))[0] == 250
    # The queue runner takes it at once (and bounces it: elsewhere.test does not exist).
    assert wait_for(lambda: "rcpt=someone@elsewhere.test" in mda.log()), mda.log()[-2000:]
    assert "redirects=1" in mda.log()
    assert not any(b"forward me" in x for x in folder(mda, CAROL, "INBOX"))
    correo(mda.data, "sieve", "deactivate", CAROL)


def test_vacation_once_per_sender_within_days(mda: Server) -> None:
    put_script(
        mda,
        CAROL,
        'require ["vacation"];\nvacation :days 3 :subject "Away" "I am away until Monday.";\n',
        name="away",
    )
    before = folder(mda, BOB, "INBOX")
    start = len(mda.log_lines)
    for i in range(2):  # bob (local) writes twice: one reply only
        data = (
            f"From: {BOB}\r\nTo: {CAROL}\r\nSubject: hi {i}\r\nMessage-ID: <v{i}@t>\r\n\r\nhi\r\n"
        ).encode()
        assert smtp_send(mda, BOB, [CAROL], data)[0] == 250
    after = wait_for(lambda: [x for x in folder(mda, BOB, "INBOX") if b"Subject: Away" in x])
    # RFC 5230 §4.1: the second message finds bob already answered within :days.
    assert mda.wait_log("event=delivery.vacation_suppressed", start=start), mda.log()[-2000:]
    replies = [x for x in folder(mda, BOB, "INBOX") if b"Subject: Away" in x]
    assert len(replies) == 1 == len(after), len(before)
    assert b"Auto-Submitted: auto-replied" in replies[0]
    assert b"Return-Path: <>" in replies[0] and b"In-Reply-To: <v0@t>" in replies[0]
    correo(mda.data, "sieve", "deactivate", CAROL)


def test_broken_script_means_implicit_keep(mda: Server) -> None:
    # Stored directly (bypassing validation) to stand for a script broken by an upgrade.
    put_script(mda, CAROL, 'require "fileinto";\nfileinto "Nowhere";\n', name="bad")
    assert smtp_send(mda, "dave@remote.test", [CAROL], message("still here"))[0] == 250
    assert any(b"still here" in x for x in folder(mda, CAROL, "INBOX"))
    assert "delivery.no_mailbox" in mda.log()
    correo(mda.data, "sieve", "deactivate", CAROL)


def test_subaddress_folder(mda: Server) -> None:
    m = imap(mda, BOB)
    m.create("lists")
    m.logout()
    correo(mda.data, "sieve", "deactivate", BOB)
    assert (
        smtp_send(mda, "dave@remote.test", ["bob+lists@example.test"], message("tagged"))[0] == 250
    )
    assert (
        smtp_send(mda, "dave@remote.test", ["bob+nope@example.test"], message("untagged"))[0] == 250
    )
    assert any(b"tagged" in x for x in folder(mda, BOB, "lists"))
    assert any(b"untagged" in x for x in folder(mda, BOB, "INBOX"))


def lmtp(srv: Server) -> RawSmtp:
    c = RawSmtp(srv.ports["lmtp"])
    assert c.cmd("LHLO mta.test")[0] == 250
    return c


def test_lmtp_per_recipient_replies(mda: Server) -> None:
    put_script(mda, BOB, 'require "reject";\nreject "not from you";\n', name="rej")
    correo(mda.data, "sieve", "deactivate", ALICE)
    c = lmtp(mda)
    assert c.cmd("MAIL FROM:<dave@remote.test>")[0] == 250
    assert c.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{BOB}>")[0] == 250
    assert c.cmd("RCPT TO:<nobody@example.test>")[0] == 550
    assert c.cmd("DATA")[0] == 354
    c.send(message("via lmtp") + b"\r\n.\r\n")
    first, second = c.reply(), c.reply()
    assert first[0] == 250 and ALICE in first[1]
    assert second[0] == 550 and "not from you" in second[1]
    c.cmd("QUIT")
    assert any(b"via lmtp" in x and b"with LMTP" in x for x in folder(mda, ALICE, "INBOX"))
    correo(mda.data, "sieve", "deactivate", BOB)


def test_lmtp_unix_socket(mda: Server) -> None:
    path = mda.data / "lmtp.sock"
    assert path.stat().st_mode & 0o777 == 0o660
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(path))
    s.settimeout(10)
    f = s.makefile("rwb")
    assert f.readline().startswith(b"220")
    script = ["LHLO mta\r\n", "MAIL FROM:<>\r\n", f"RCPT TO:<{ALICE}>\r\n", "DATA\r\n"]
    for line in script:
        f.write(line.encode())
        f.flush()
        while True:
            reply = f.readline()
            if reply[3:4] != b"-":
                break
    f.write(message("over the socket") + b"\r\n.\r\n")
    f.flush()
    assert f.readline().startswith(b"250")
    s.close()
    assert any(b"over the socket" in x for x in folder(mda, ALICE, "INBOX"))


SPAMMY = "Cheap pills, casino bonus, claim your prize now at http://pills.test/ winner winner\r\n"
HAMMY = "The quarterly planning meeting moved to Thursday; agenda attached as before.\r\n"


def test_junk_training_moves_the_verdict(start_server) -> None:  # type: ignore[no-untyped-def]
    srv: Server = start_server({**PORTS, "bayes_min_messages": "1"})
    assert smtp_send(srv, "dave@remote.test", [ALICE], message("meeting", HAMMY))[0] == 250
    r = correo(srv.data, "junk", "train", "--user", ALICE, "--ham", "--folder", "INBOX")
    assert r.returncode == 0 and "trained 1" in r.stdout, r.stderr
    assert smtp_send(srv, "dave@remote.test", [ALICE], message("prize", SPAMMY))[0] == 250
    [first] = [x for x in folder(srv, ALICE, "INBOX") if b"Subject: prize" in x]
    assert b"X-Spam: no" in first
    m = imap(srv, ALICE)  # the user moves it to Junk: trains it as spam
    m.create("Junk")
    m.select("INBOX")
    _, ids = m.search(None, "SUBJECT", "prize")
    typ, _ = m._simple_command("MOVE", ids[0].decode(), "Junk")  # type: ignore[attr-defined]
    assert typ == "OK"
    m.logout()
    assert wait_for(lambda: "event=junk.trained" in srv.log())
    assert smtp_send(srv, "dave@remote.test", [ALICE], message("prize again", SPAMMY))[0] == 250
    junk = [x for x in folder(srv, ALICE, "Junk") if b"Subject: prize again" in x]
    assert len(junk) == 1 and b"X-Spam: yes" in junk[0], junk
