"""Quotas end to end (RFC 9208; RFC 3463 X.2.2), over real sockets to ``correo serve``:
the CLI, SMTP and LMTP per recipient, the queue's local delivery, Sieve fileinto, IMAP
APPEND/COPY/MOVE and the QUOTA commands, racing APPENDs at the limit, POP3's usage
line, and the one warning at 90 %."""

from __future__ import annotations

import imaplib
import poplib
import re
import threading

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir
from tests.server.helpers import RawSmtp
from tests.server.test_mda_delivery import put_script, wait_for

PORTS = {"sieve": '["127.0.0.1:0"]', "lmtp": '["127.0.0.1:0"]'}
DOMAIN = "example.test"
PASSWORD = "quota-secret-9"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("quota") / "data"
    make_data_dir(data, PORTS)
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def user(srv: Server, name: str) -> str:
    address = f"{name}@{DOMAIN}"
    r = correo(srv.data, "user", "add", address, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    return address


def quota(srv: Server, address: str, *args: str) -> str:
    r = correo(srv.data, "user", "quota", address, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def message(size: int, subject: str = "quota test") -> bytes:
    head = f"From: dave@remote.test\r\nSubject: {subject}\r\n\r\n".encode()
    line = b"x" * 70 + b"\r\n"
    body = line * max(0, (size - len(head)) // len(line))
    return head + body


def smtp(
    srv: Server, rcpts: list[str], data: bytes, size: int | None = None
) -> list[tuple[int, str]]:
    """Every reply from MAIL on: one per RCPT, then DATA's (when a RCPT was taken)."""
    c = RawSmtp(srv.ports["smtp"])
    c.cmd("EHLO client.test")
    replies = [c.cmd("MAIL FROM:<dave@remote.test>" + (f" SIZE={size}" if size else ""))]
    replies += [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
    if any(code == 250 for code, _ in replies[1:]):
        assert c.cmd("DATA")[0] == 354
        c.send(data + b"\r\n.\r\n")
        replies.append(c.reply())
    c.cmd("QUIT")
    c.close()
    return replies


def lmtp(srv: Server, rcpts: list[str], data: bytes) -> list[tuple[int, str]]:
    c = RawSmtp(srv.ports["lmtp"])
    c.cmd("LHLO client.test")
    c.cmd("MAIL FROM:<dave@remote.test>")
    replies = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
    assert c.cmd("DATA")[0] == 354
    c.send(data + b"\r\n.\r\n")
    replies += [c.reply() for code, _ in replies if code == 250]
    c.cmd("QUIT")
    c.close()
    return replies


def imap(srv: Server, address: str) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"])
    m.starttls(client_tls())
    m.login(address, PASSWORDS.get(address, PASSWORD))
    return m


def count(srv: Server, address: str, mailbox: str = "INBOX") -> int:
    m = imap(srv, address)
    try:
        typ, data = m.select(f'"{mailbox}"', readonly=True)
        return int(data[0]) if typ == "OK" else 0  # type: ignore[arg-type]
    finally:
        m.logout()


def test_cli_sets_shows_and_lists(srv: Server) -> None:
    a = user(srv, "cli")
    out = quota(srv, a, "10K", "--messages", "5")
    assert out.strip() == (f"quota of {a} set: storage 0 of 10K (0%), messages 0 of 5 (0%)"), out
    assert "storage 0 of 10K" in quota(srv, a)
    assert "storage 0 of 2G" in quota(srv, a, "2G")
    assert "messages 0 of 5" in quota(srv, a)  # --messages left as it was
    listed = correo(srv.data, "user", "list", "--quota")
    assert listed.returncode == 0 and f"{a}  storage 0 of 2G" in listed.stdout
    out = quota(srv, a, "none", "--messages", "default")
    assert "storage 0 (no limit)" in out and "messages 0 (no limit, default)" in out
    bad = correo(srv.data, "user", "quota", a, "lots")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "500M or 2G" in bad.stderr
    missing = correo(srv.data, "user", "quota", f"nobody@{DOMAIN}", "1M")
    assert missing.returncode != 0 and "no user" in missing.stderr


def test_smtp_refuses_the_full_recipient_only(srv: Server) -> None:
    full, bob = user(srv, "full"), f"bob@{DOMAIN}"
    assert smtp(srv, [full], message(3000))[-1][0] == 250
    quota(srv, full, "2K")  # below what it holds already
    before = count(srv, bob)
    replies = smtp(srv, [full, bob], message(1000, "for both"))
    assert replies[1][0] == 452 and replies[1][1].startswith("4.2.2"), replies
    assert replies[2][0] == 250 and replies[3][0] == 250, replies
    assert count(srv, bob) == before + 1 and count(srv, full) == 1
    # SIZE= past the limit itself: permanent (RFC 1870 + RFC 3463 5.2.2)
    quota(srv, full, "1M")
    replies = smtp(srv, [full], message(1000), size=2_000_000)
    assert replies[1][0] == 552 and replies[1][1].startswith("5.2.2"), replies


def test_smtp_after_data_refuses_or_queues(srv: Server) -> None:
    q, bob = user(srv, "late"), f"bob@{DOMAIN}"
    quota(srv, q, "4K")
    code, text = smtp(srv, [q], message(6000))[-1]  # no SIZE=: known at the end of DATA
    assert (code, text[:5]) == (552, "5.2.2"), text
    assert smtp(srv, [q], message(3000))[-1][0] == 250
    code, text = smtp(srv, [q], message(1500))[-1]
    assert (code, text[:5]) == (452, "4.2.2"), text
    # with another recipient the message is accepted: bob has it, the full one's copy
    # waits in the queue, whose local delivery defers it (mailbox full)
    start = len(srv.log_lines)
    assert smtp(srv, [q, bob], message(1500, "queued for later"))[-1][0] == 250
    assert srv.wait_log(f"rcpt={q}", start=start), srv.log()[-3000:]
    assert wait_for(lambda: "status=4.2.2" in "".join(srv.log_lines[start:]))
    assert count(srv, q) == 1
    # room again: the retry (made due now) files it
    m = imap(srv, q)
    m.select("INBOX")
    m.store("1", "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()
    correo(srv.data, "queue", "flush")
    assert wait_for(lambda: count(srv, q) == 1 and "queued for later" in _subjects(srv, q))


def _subjects(srv: Server, address: str) -> str:
    m = imap(srv, address)
    try:
        m.select("INBOX", readonly=True)
        _, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return " ".join(p[1].decode() for p in data if isinstance(p, tuple))
    finally:
        m.logout()


def test_lmtp_answers_each_recipient(srv: Server) -> None:
    q, bob = user(srv, "lmtpq"), f"bob@{DOMAIN}"
    quota(srv, q, "4K")
    assert lmtp(srv, [q], message(3000))[-1][0] == 250
    replies = lmtp(srv, [q, bob], message(1500))
    assert [r[0] for r in replies] == [250, 250, 452, 250], replies
    assert replies[2][1].startswith("4.2.2")
    replies = lmtp(srv, [bob, q], message(5000))
    assert [r[0] for r in replies] == [250, 250, 250, 552], replies
    assert replies[3][1].startswith("5.2.2")


def test_sieve_fileinto_over_quota_defers(srv: Server) -> None:
    """RFC 5228 §2.10.6: a failed fileinto falls back to the implicit keep; with one
    quota for every mailbox of the account, the keep cannot fit either: the recipient
    is deferred (4.2.2), never silently dropped, and nothing half-filed."""
    q = user(srv, "sieveq")
    put_script(
        srv,
        q,
        'require ["fileinto", "mailbox"];\nfileinto :create "Lists";\n'
        'redirect "elsewhere@remote.test";\n',
    )
    quota(srv, q, "4K")
    assert lmtp(srv, [q], message(3000))[-1][0] == 250
    assert count(srv, q, "Lists") == 1
    start = len(srv.log_lines)
    replies = lmtp(srv, [q], message(1500))
    assert replies[-1][0] == 452, replies
    assert count(srv, q, "Lists") == 1 and count(srv, q, "INBOX") == 0
    # the redirect went with the refused copy: only the first message was redirected
    assert "rcpt=elsewhere@remote.test" not in "".join(srv.log_lines[start:])
    correo(srv.data, "sieve", "deactivate", q)


def test_imap_quota_commands_append_copy_move(srv: Server) -> None:
    q = user(srv, "imapq")
    quota(srv, q, "5K", "--messages", "3")
    m = imap(srv, q)
    try:
        caps = m.capability()[1][0].decode()
        assert {"QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"} <= set(caps.split())
        assert m.append("INBOX", None, None, message(2000))[0] == "OK"
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK"
        assert data[0] == [b'"INBOX" ""'] or data[0] == [b'INBOX ""'], data
        assert data[1] == [b'"" (STORAGE 2 5 MESSAGE 1 3)'], data
        typ, data = m.getquota('""')
        assert data == [b'"" (STORAGE 2 5 MESSAGE 1 3)'], data
        typ, data = m.setquota('""', "(STORAGE 100000)")
        assert typ == "NO" and b"[NOPERM]" in data[0], data
        typ, data = m.append("INBOX", None, None, message(4000))
        assert typ == "NO" and b"[OVERQUOTA]" in data[0], data
        m.create("Other")
        m.select("INBOX")
        assert m.copy("1", "Other")[0] == "OK"  # 4000 octets, 2 messages
        typ, data = m.copy("1", "Other")
        assert typ == "NO" and b"[OVERQUOTA]" in data[0], data
        typ, data = m._simple_command("MOVE", "1", "Other")  # type: ignore[attr-defined]
        assert typ == "OK", data  # a MOVE adds nothing
        m.select("Other")
        m.store("1", "+FLAGS", "\\Deleted")
        typ, data = m.status("Other", "(DELETED DELETED-STORAGE MESSAGES)")
        assert re.search(rb"DELETED 1 DELETED-STORAGE \d{4}\b MESSAGES 2", data[0]), data
        assert count(srv, q, "Other") == 2
    finally:
        m.logout()


def test_racing_appends_at_the_limit_from_two_connections(srv: Server) -> None:
    q = user(srv, "race")
    quota(srv, q, "none", "--messages", "6")
    results: list[str] = []
    lock = threading.Lock()

    def appender() -> None:
        m = imap(srv, q)
        try:
            for _ in range(6):
                typ, _data = m.append("INBOX", None, None, message(500))
                with lock:
                    results.append(typ)
        finally:
            m.logout()

    threads = [threading.Thread(target=appender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("OK") == 6 and results.count("NO") == 6, results
    # six APPENDs and the warning at 90 % (a notice of the server's, never refused)
    assert count(srv, q) == 7 and _subjects(srv, q).count("almost full") == 1


def test_pop3_login_shows_usage(srv: Server) -> None:
    q = user(srv, "popq")
    quota(srv, q, "1M")
    assert smtp(srv, [q], message(2000))[-1][0] == 250
    p = poplib.POP3("127.0.0.1", srv.ports["pop3"])
    p.stls(client_tls())
    p.user(q)
    reply = p.pass_(PASSWORD).decode()
    p.quit()
    assert reply.startswith("+OK maildrop has 1 messages") and "quota: storage" in reply
    assert "of 1.0 MB (0%)" in reply, reply


def test_one_warning_at_ninety_percent(srv: Server) -> None:
    q = user(srv, "warn")
    quota(srv, q, "100K")

    def warnings() -> int:
        return _subjects(srv, q).count("almost full")

    assert smtp(srv, [q], message(86000))[-1][0] == 250  # 84 %
    assert smtp(srv, [q], message(7000))[-1][0] == 250  # past 90 %
    assert wait_for(lambda: warnings() == 1)
    assert smtp(srv, [q], message(1000))[-1][0] == 250  # still above: no second one
    m = imap(srv, q)
    m.append("INBOX", None, None, message(100))  # nor by APPEND
    m.select("INBOX")
    m.store("1", "+FLAGS", "\\Deleted")  # the 86000-octet message
    m.expunge()
    m.logout()
    assert warnings() == 1
    assert smtp(srv, [q], message(85000))[-1][0] == 250  # crosses again: one more
    assert wait_for(lambda: warnings() == 2)
    assert srv.log().count(f"event=quota.warning account={q}") == 2


def test_queue_bounces_a_copy_that_can_never_fit(srv: Server) -> None:
    """SMTP has one reply for all: the other recipient gets the message, and the copy
    too large for its quota is bounced by the queue with status 5.2.2 (RFC 3464)."""
    q, bob, carol = user(srv, "tiny"), f"bob@{DOMAIN}", f"carol@{DOMAIN}"
    quota(srv, q, "4K")
    start = len(srv.log_lines)
    c = RawSmtp(srv.ports["smtp"])
    c.cmd("EHLO client.test")
    assert c.cmd(f"MAIL FROM:<{bob}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{q}>")[0] == 250  # no SIZE=: it fits until the data says not
    assert c.cmd(f"RCPT TO:<{carol}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(message(6000, "too big for tiny") + b"\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    c.close()
    assert srv.wait_log("event=queue.bounced queue_id=", start=start), srv.log()[-3000:]
    bounced = [line for line in srv.log_lines[start:] if "queue.bounced" in line]
    assert f"rcpt={q}" in bounced[0] and "5.2.2" in bounced[0], bounced
    assert "too big for tiny" in _subjects(srv, carol)
    assert count(srv, q) == 0

    def dsn() -> bool:
        m = imap(srv, bob)
        try:
            m.select("INBOX", readonly=True)
            typ, data = m.search(None, "TEXT", "5.2.2")
            return typ == "OK" and bool(data[0])
        finally:
            m.logout()

    assert wait_for(dsn)


def test_jmap_import_over_quota(srv: Server) -> None:
    """JMAP answers a write past the quota with the overQuota SetError (RFC 8620 §5.3)."""
    from tests.server.jmap_helpers import Jmap

    carol = f"carol@{DOMAIN}"
    jmap = Jmap(srv, carol)
    got = jmap.http.post(
        f"{jmap.base}/jmap/upload/{jmap.account}/",
        data=message(3000, "imported over quota"),
        headers={"Content-Type": "message/rfc822"},
        timeout=10,
    )
    assert got.status_code == 201, got.text
    blob = got.json()["blobId"]
    quota(srv, carol, "2K")
    try:
        inbox = jmap.mailbox_id("INBOX")
        done = jmap.call(
            "Email/import", emails={"a": {"blobId": blob, "mailboxIds": {inbox: True}}}
        )
        assert done["notCreated"]["a"]["type"] == "overQuota", done
    finally:
        quota(srv, carol, "none")
    done = jmap.call("Email/import", emails={"b": {"blobId": blob, "mailboxIds": {inbox: True}}})
    assert "b" in done["created"], done


def test_the_default_quota_applies_to_accounts_without_their_own(start_server: object) -> None:
    server: Server = start_server({"quota": '"8K"', "quota_messages": "2"})  # type: ignore[operator]
    alice = f"alice@{DOMAIN}"
    assert "storage 0 of 8K (0%, default), messages 0 of 2 (0%, default)" in quota(server, alice)
    assert smtp(server, [alice], message(5000))[-1][0] == 250
    replies = smtp(server, [alice], message(5000))  # fits at RCPT, not after the data
    assert replies[-1][0] == 452, replies
    assert smtp(server, [alice], message(1000))[-1][0] == 250  # and a small one fits
    replies = smtp(server, [alice], message(100))  # two messages: the MESSAGE limit
    assert replies[1][0] == 452 and replies[1][1].startswith("4.2.2"), replies
    # the two messages and the warning sent as the second one reached the limit
    assert wait_for(lambda: _subjects(server, alice).count("almost full") == 1)
    assert "messages 3 of 2 (150%, default)" in quota(server, alice)
