"""A full disk under every write path: each client gets an answer, service resumes after.

The server's data folder sits on a 4 MiB tmpfs; a filler file takes the rest of its
space. Every write path (SMTP DATA, LMTP, IMAP APPEND, STORE and LOGIN, POP3 UPDATE,
the outbound queue, the Sieve vacation memory) must answer with a temporary error
while the disk is full and work again on the same server once the filler is gone;
sessions that failed must give their connection slots back.
"""

from __future__ import annotations

import poplib
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir
from tests.server.helpers import RawSmtp, pop3
from tests.server.imap_helpers import imap
from tests.tmpfs import full_disk, mounted_tmpfs, needs_tmpfs

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
SLOTS = 8  # [limits] connections: small, so hung sessions would exhaust it
TEMPORARY = {(451, "4.3.0"), (452, "4.3.1")}  # RFC 5321 §4.2.3, RFC 3463 X.3.0/X.3.1

pytestmark = needs_tmpfs


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at the end."""
    with mounted_tmpfs(tmp_path_factory.mktemp("tmpfs")) as root:
        yield root


@pytest.fixture(scope="module")
def srv(disk: Path) -> Iterator[Server]:
    data = disk / "data"
    make_data_dir(data, {"connections": str(SLOTS)})
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def message(
    subject: str, to: str = ALICE, sender: str = "dave@remote.test", size: int = 0
) -> bytes:
    body = ("y" * 78 + "\r\n") * (size // 80) if size else "Hello.\r\n"
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\n\r\n{body}"
    ).encode()


def transaction(
    c: RawSmtp, rcpts: list[str], data: bytes, replies: int = 1
) -> list[tuple[int, str]]:
    """MAIL, RCPT…, DATA on an open session; the replies to the final dot."""
    assert c.cmd("MAIL FROM:<dave@remote.test>")[0] == 250
    for rcpt in rcpts:
        assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(data + b"\r\n.\r\n")
    return [c.reply() for _ in range(replies)]


def temporary(reply: tuple[int, str]) -> bool:
    return (reply[0], reply[1][:5]) in TEMPORARY


def subjects(srv: Server, user: str, mailbox: str = "INBOX") -> list[str]:
    client = imap(srv, user)
    try:
        client.select(mailbox, readonly=True)
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [
            part[1].decode().split(":", 1)[1].strip() for part in data if isinstance(part, tuple)
        ]
    finally:
        client.logout()


def test_smtp_data_on_a_full_disk_is_451_and_the_session_goes_on(srv: Server, disk: Path) -> None:
    c = RawSmtp(srv.ports["smtp"])
    assert c.cmd("EHLO client.test")[0] == 250
    with full_disk(disk):
        (reply,) = transaction(c, [ALICE], message("smtp small on full"))
        assert temporary(reply), reply
        # over the in-memory spool limit: the spool file itself cannot be written
        (reply,) = transaction(c, [ALICE], message("smtp large on full", size=600_000))
        assert temporary(reply), reply
        assert list((srv.data / "store" / "tmp").iterdir()) == []  # no partial spool file
    (reply,) = transaction(c, [ALICE], message("smtp after full"))
    assert reply[0] == 250, reply
    assert c.cmd("QUIT")[0] == 221
    got = subjects(srv, ALICE)
    assert "smtp after full" in got
    assert "smtp small on full" not in got and "smtp large on full" not in got


def test_lmtp_on_a_full_disk_defers_each_recipient(srv: Server, disk: Path) -> None:
    c = RawSmtp(srv.ports["lmtp"])
    assert c.cmd("LHLO client.test")[0] == 250
    with full_disk(disk):
        replies = transaction(c, [ALICE, BOB], message("lmtp on full"), replies=2)
        assert all(temporary(r) for r in replies), replies  # RFC 2033 §4.2: one per RCPT
    replies = transaction(c, [ALICE, BOB], message("lmtp after full"), replies=2)
    assert [r[0] for r in replies] == [250, 250], replies
    c.cmd("QUIT")
    for user in (ALICE, BOB):
        got = subjects(srv, user)
        assert "lmtp after full" in got and "lmtp on full" not in got


def test_imap_append_on_a_full_disk_is_no(srv: Server, disk: Path) -> None:
    client = imap(srv, ALICE)
    with full_disk(disk):
        typ, data = client.append("INBOX", None, None, message("append on full"))
        assert typ == "NO" and (b"[LIMIT]" in data[0] or b"[SERVERBUG]" in data[0]), data
    typ, data = client.append("INBOX", None, None, message("append after full"))
    assert typ == "OK", data
    client.logout()
    got = subjects(srv, ALICE)
    assert "append after full" in got and "append on full" not in got


def test_imap_store_on_a_full_disk_is_no(srv: Server, disk: Path) -> None:
    client = imap(srv, ALICE)
    assert client.append("INBOX", None, None, message("to flag"))[0] == "OK"
    client.select("INBOX")
    _, found = client.uid("SEARCH", "SUBJECT", '"to flag"')
    uid = found[0].split()[-1].decode()
    with full_disk(disk):
        typ, data = client.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
        assert typ == "NO", data
        typ, data = client.noop()  # the session is still there
        assert typ == "OK"
    typ, data = client.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
    assert typ == "OK" and b"\\Flagged" in data[0], data
    client.logout()


def test_imap_login_that_writes_answers_on_a_full_disk(srv: Server, disk: Path) -> None:
    """LOGIN re-creates missing special-use folders: a full disk must not stall it."""
    client = imap(srv, CAROL)
    assert client.delete("Drafts")[0] == "OK"
    client.logout()
    with full_disk(disk):
        client = imap(srv, CAROL)  # answered (imaplib raises on NO or a timeout)
        typ, _ = client.select("INBOX", readonly=True)
        assert typ == "OK"
        client.logout()
    client = imap(srv, CAROL)
    _, boxes = client.list('""', "Drafts")
    assert boxes and boxes[0] is not None and b"Drafts" in boxes[0], boxes
    client.logout()


def test_pop3_update_on_a_full_disk_is_err(srv: Server, disk: Path) -> None:
    c = RawSmtp(srv.ports["smtp"])
    c.cmd("EHLO client.test")
    (reply,) = transaction(c, [BOB], message("pop3 victim", to=BOB))
    assert reply[0] == 250
    c.cmd("QUIT")
    client = pop3(srv.ports["pop3s"], BOB)
    count, _ = client.stat()
    with full_disk(disk):
        client.dele(count)
        with pytest.raises(poplib.error_proto, match=r"-ERR"):
            client.quit()
    client = pop3(srv.ports["pop3s"], BOB)
    assert client.stat()[0] == count  # nothing was removed
    client.dele(count)
    assert client.quit().startswith(b"+OK")
    client = pop3(srv.ports["pop3s"], BOB)
    assert client.stat()[0] == count - 1
    client.quit()


def submit(srv: Server, user: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10)
    smtp.ehlo("client.test")
    smtp.starttls(context=client_tls())
    smtp.ehlo("client.test")
    smtp.login(user, PASSWORDS[user])
    return smtp


def test_queueing_for_a_remote_domain_on_a_full_disk_is_451(srv: Server, disk: Path) -> None:
    smtp = submit(srv, ALICE)
    body = message("queued", to="far@remote.example", sender=ALICE)
    with full_disk(disk):
        with pytest.raises(smtplib.SMTPDataError) as failed:
            smtp.sendmail(ALICE, ["far@remote.example"], body)
        assert temporary((failed.value.smtp_code, failed.value.smtp_error.decode())), failed.value
    assert smtp.sendmail(ALICE, ["far@remote.example"], body) == {}
    smtp.quit()


def test_sieve_vacation_memory_on_a_full_disk_does_not_stall_delivery(
    srv: Server, disk: Path
) -> None:
    """Carol's script discards and answers: the vacation memory is the only write."""
    script = srv.data / "away.sieve"
    script.write_text(
        'require ["vacation"];\r\n'
        'vacation :days 1 :subject "Away now" "I am away.";\r\n'
        "discard;\r\n"
    )
    r = correo(srv.data, "sieve", "put", CAROL, "away", str(script), "--activate")
    assert r.returncode == 0, r.stderr
    smtp = submit(srv, BOB)
    with full_disk(disk):
        # answered; the message is discarded by the owner's script, the reply is skipped
        assert smtp.sendmail(BOB, [CAROL], message("to carol 1", to=CAROL, sender=BOB)) == {}
    assert smtp.sendmail(BOB, [CAROL], message("to carol 2", to=CAROL, sender=BOB)) == {}
    smtp.quit()
    assert subjects(srv, BOB).count("Away now") == 1  # the first one's reply was skipped
    assert correo(srv.data, "sieve", "deactivate", CAROL).returncode == 0


def test_sessions_on_a_full_disk_give_their_connection_slots_back(srv: Server, disk: Path) -> None:
    with full_disk(disk):
        for _ in range(SLOTS):  # each client sends a message, then leaves without a reply
            c = RawSmtp(srv.ports["smtp"])
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<dave@remote.test>")
            c.cmd(f"RCPT TO:<{ALICE}>")
            c.cmd("DATA")
            c.send(message("dropped") + b"\r\n.\r\n")
            c.close()
        client = imap(srv, ALICE)  # an IMAP LOGIN with the disk still full
        client.logout()
    deadline = time.monotonic() + 15
    while True:  # SLOTS connections at once: every slot is free again
        clients = [RawSmtp(srv.ports["smtp"]) for _ in range(SLOTS)]
        codes = [c.greeting[0] for c in clients]
        if codes == [220] * SLOTS:
            break
        for c in clients:
            c.close()
        assert time.monotonic() < deadline, codes
        time.sleep(0.1)
    clients[0].cmd("EHLO client.test")
    (reply,) = transaction(clients[0], [ALICE], message("slots after full"))
    assert reply[0] == 250
    for c in clients:
        c.close()
