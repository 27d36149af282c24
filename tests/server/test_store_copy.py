"""``correo store copy``: an embedded store moved into PostgreSQL, as IMAP clients see it.

A store is filled through a real server (SMTP, IMAP APPEND with flags and dates, COPY,
STORE, EXPUNGE, folders and subscriptions, a Sieve vacation script whose reply waits in
the queue, junk-filter training), then copied into a database of the private cluster;
a second copy is killed midway and run again; the node is switched to the database and
served; IMAP shows every mailbox exactly as before (UIDVALIDITY, UIDs, flags, MODSEQs,
INTERNALDATEs, HIGHESTMODSEQ, UIDNEXT, the QRESYNC expunge history), and mbsync, synced
before the switch, finds nothing to transfer after it.
"""

from __future__ import annotations

import imaplib
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir
from tests.pg import PgCluster

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

ALICE, CAROL = "alice@example.test", "carol@example.test"
SMALL = 1_200  # messages in INBOX: more than two pages of the copy
LARGE = 12  # 1 MB messages (stored in chunks on both sides)
FOLDERS = ("Old", "Work/Projects", "Large", "Spammy")


def _message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        f"From: dave@remote.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n"
    ).encode() + body


def _imap(server: Server, user: str = ALICE) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls(), timeout=60
    )
    client.login(user, PASSWORDS[user])
    return client


def _ok(answer: tuple[str, list[object]]) -> list[object]:
    typ, data = answer
    assert typ == "OK", data
    return data


def _large_body(i: int) -> bytes:
    line = f"large message {i:02d} " + "0123456789abcdef" * 4 + "\r\n"
    return line.encode() * (1_000_000 // len(line))


def populate(server: Server) -> None:
    vacation = server.data / "away.sieve"
    vacation.write_text('require "vacation";\nvacation :days 3 "I am away.";\n')
    put = correo(server.data, "sieve", "put", CAROL, "away", str(vacation), "--activate")
    assert put.returncode == 0, put.stderr
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        for i in range(10):
            smtp.sendmail("dave@remote.test", [ALICE], _message(f"smtp {i}"))
        to_carol = _message("for carol").replace(f"To: {ALICE}".encode(), f"To: {CAROL}".encode())
        smtp.sendmail("dave@remote.test", [CAROL], to_carol)  # RFC 5230 §4.5: a reply

    client = _imap(server)
    for folder in FOLDERS:
        _ok(client.create(f'"{folder}"'))
    for i in range(SMALL):
        flags = "(\\Seen $Important)" if i % 7 == 0 else None
        date = '"14-Jul-2023 02:44:25 +0200"' if i % 11 == 0 else None
        _ok(client.append("INBOX", flags, date, _message(f"small {i}")))  # type: ignore[arg-type]
    for i in range(LARGE):
        _ok(client.append("Large", None, None, _message(f"large {i}", _large_body(i))))
    for i in range(3):
        spam = _message(f"cheap pills {i}", b"Buy cheap pills now, viagra casino winner!\r\n")
        _ok(client.append("Spammy", None, None, spam))
    client.select("INBOX")
    _ok(client.uid("COPY", "1:5", "Old"))
    _ok(client.uid("STORE", "20:40", "+FLAGS", "(\\Flagged $Label1)"))
    _ok(client.uid("STORE", "50:52", "+FLAGS", "(\\Deleted)"))
    _ok(client.expunge())
    _ok(client.uid("STORE", "60", "-FLAGS", "($Important)"))
    _ok(client.subscribe('"Work/Projects"'))
    _ok(client.subscribe("Ghost"))  # a subscription outlives (or precedes) its mailbox
    client.logout()
    trained = correo(server.data, "junk", "train", "--user", ALICE, "--spam", "--folder", "Spammy")
    assert trained.returncode == 0, trained.stderr


def imap_state(server: Server) -> dict[str, object]:
    """Everything a synchronising client keeps about each of ALICE's mailboxes."""
    client = _imap(server)
    _ok(client.enable("QRESYNC"))
    state: dict[str, object] = {"LSUB": sorted(str(x) for x in _ok(client.lsub()))}
    names = []
    for line in _ok(client.list()):
        found = re.match(rb'\([^)]*\) (?:"[^"]*"|NIL) (.*)$', line)  # type: ignore[arg-type]
        assert found is not None, line
        names.append(found.group(1).strip(b'"').decode())
    for name in sorted(names):
        status = _ok(client.status(f'"{name}"', "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"))
        uidvalidity = re.search(rb"UIDVALIDITY (\d+)", status[0]).group(1).decode()  # type: ignore[union-attr, arg-type]
        # RFC 7162 §3.2.5: what a client that knew the mailbox at MODSEQ 1 is told
        qresync = f"(QRESYNC ({uidvalidity} 1))"
        typ, data = client._simple_command("SELECT", f'"{name}"', qresync)  # type: ignore[attr-defined]
        assert typ == "OK", data
        client.state = "SELECTED"  # imaplib's own select() takes no parameters
        vanished = client.untagged_responses.pop("VANISHED", [])
        highest = client.untagged_responses.pop("OK", [])
        client.untagged_responses.clear()
        fetched = client.uid("FETCH", "1:*", "(FLAGS MODSEQ INTERNALDATE RFC822.SIZE)")
        lines = sorted(x for x in _ok(fetched) if isinstance(x, bytes))
        state[name] = (status, vanished, sorted(h for h in highest if b"HIGHESTMODSEQ" in h), lines)
    client.logout()
    return state


def _no_age(listing: str) -> str:
    """``correo queue list`` without its age column (the same queue, read later)."""
    return re.sub(r" +\d+[smhd] ", " ", listing)


def store_copy(data: Path, url: str) -> subprocess.CompletedProcess[str]:
    return correo(data, "store", "copy", "--to", url)


def count(url: str, sql: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(sql.encode()).fetchone()
    except psycopg.Error:
        return 0  # the schema is not there yet
    return int(row[0]) if row else 0


def mbsync_config(server: Server, local: Path) -> Path:
    cert = next(server.data.rglob("*.crt"), None) or next(server.data.rglob("*cert*.pem"))
    rc = local.parent / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount correo\nHost 127.0.0.1\nPort {server.ports['imaps']}\nUser {ALICE}\n"
        f"Pass {PASSWORDS[ALICE]}\nSSLType IMAPS\nCertificateFile {cert}\n"
        "SSLVersions TLSv1.2 TLSv1.3\nAuthMechs PLAIN\n\nIMAPStore remote\nAccount correo\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        "Channel all\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nRemove Both\n"
        "Expunge Both\nSyncState *\nSync All\n"
    )
    return rc


def mbsync(rc: Path) -> str:
    result = subprocess.run(
        ["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def maildir(local: Path) -> dict[str, bytes]:
    """Every file under the Maildir (messages and mbsync's state) with its content."""
    return {str(p.relative_to(local)): p.read_bytes() for p in local.rglob("*") if p.is_file()}


def test_store_copy_moves_a_store_imap_clients_need_not_resync(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    make_data_dir(data)
    with open(data / "correo.toml", "a") as fh:  # remote mail waits in the queue
        fh.write('\n[outbound]\nrelayhost = "[127.0.0.1]:1"\nrelayhost_tls = "none"\n')
    server = Server(data)
    server.start()
    local = tmp_path / "maildir"
    local.mkdir()
    with_mbsync = shutil.which("mbsync") is not None  # CI installs isync; else IMAP only
    try:
        populate(server)
        rc = mbsync_config(server, local)
        if with_mbsync:
            mbsync(rc)
            mbsync(rc)  # settled: the second run has nothing left to do
        before = imap_state(server)
    finally:
        assert server.stop() == 0, server.log()[-3000:]
    synced = maildir(local)
    queued = correo(data, "queue", "list").stdout
    assert "carol" in queued or "dave@remote.test" in queued, queued  # the vacation reply

    # One copy, then an idempotent second run.
    first = pg_cluster.new_database()
    done = store_copy(data, first)
    assert done.returncode == 0, done.stderr
    total = SMALL - 3 + 10 + 5 + LARGE + 3 + 1  # what each mailbox holds
    assert f"{total} messages copied" in done.stdout, done.stdout
    again = store_copy(data, first)
    assert again.returncode == 0, again.stderr
    assert "0 messages copied (0.0 MB), 0 updated, 0 removed, 0 new mailboxes" in again.stdout
    assert "0 queued messages, 0 other rows" in again.stdout, again.stdout

    # Another copy, killed midway and run again.
    url = pg_cluster.new_database()
    command = ["store", "copy", "--to", url]
    proc = subprocess.Popen(
        [sys.executable, "-m", "correo.cli.main", "--data", str(data), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while count(url, "SELECT count(*) FROM messages") < 500:  # a first page committed
        assert proc.poll() is None, "the copy ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert count(url, "SELECT count(*) FROM messages") < total
    resumed = store_copy(data, url)
    assert resumed.returncode == 0, resumed.stderr
    assert "messages copied" in resumed.stdout and f"{total} messages" not in resumed.stdout
    assert count(url, "SELECT count(*) FROM messages") == total
    assert count(url, "SELECT count(*) FROM sieve_scripts WHERE active") == 1
    assert count(url, "SELECT count(*) FROM vacation_seen") == 1
    assert count(url, "SELECT count(*) FROM junk_tokens") > 10
    assert count(url, "SELECT count(*) FROM queue") >= 1
    assert count(url, "SELECT count(*) FROM users") == len(PASSWORDS)  # with their hashes
    assert count(url, "SELECT count(*) FROM dkim_keys") == len(list((data / "dkim").rglob("*.key")))
    third = store_copy(data, url)
    assert "0 messages copied (0.0 MB), 0 updated, 0 removed" in third.stdout, third.stdout

    # The node switches over and serves the same mailboxes.
    config = (data / "correo.toml").read_text()
    (data / "correo.toml").write_text(config + f'\n[store]\nurl = "{url}"\n')
    server = Server(data)
    server.start()
    try:
        after = imap_state(server)
        assert after.keys() == before.keys()
        for name in before:
            assert after[name] == before[name], name
        client = _imap(server)
        client.select("Large", readonly=True)
        body = _ok(client.uid("FETCH", "7", "(BODY.PEEK[TEXT])"))
        assert body[0][1] == _large_body(6)  # type: ignore[index]
        client.logout()
        scripts = correo(data, "sieve", "list", CAROL)
        assert "away" in scripts.stdout, scripts.stdout + scripts.stderr
        assert _no_age(correo(data, "queue", "list").stdout) == _no_age(queued)
        if with_mbsync:
            rc = mbsync_config(server, local)  # the node's new ports; the same mail
            mbsync(rc)
            now = maildir(local)
            assert now.keys() == synced.keys()
            changed = [p for p in now if now[p] != synced[p] and "mbsyncstate" not in p]
            assert not changed, changed
    finally:
        assert server.stop() == 0, server.log()[-3000:]
