"""``correo user del`` against a running server: a re-created address starts empty.

The old owner's mail, folders and active Sieve script (here a redirect to the old
owner's new address) must not pass to whoever is next given the address, whether the
data was deleted or kept with ``--keep-data``.
"""

from __future__ import annotations

import asyncio
import imaplib
import itertools
import sqlite3
from collections.abc import Iterator

import pytest

from correo.directory import SqliteDirectory
from correo.store.sqlite import SqliteStore
from tests.conftest import Server, client_tls, correo, make_data_dir
from tests.server.helpers import RawSmtp

BOB = "bob@example.test"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("userdel") / "data"
    make_data_dir(data)
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


def add_user(srv: Server, address: str, password: str) -> None:
    r = correo(srv.data, "user", "add", address, stdin=password + "\n")
    assert r.returncode == 0, r.stderr


def send(srv: Server, to: str, subject: str) -> None:
    c = RawSmtp(srv.ports["smtp"])
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<dave@remote.test>")[0] == 250
    assert c.cmd(f"RCPT TO:<{to}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(f"From: dave@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nHi.\r\n.\r\n".encode())
    assert c.reply()[0] == 250
    c.cmd("QUIT")


def subjects(srv: Server, user: str, password: str, mailbox: str = "INBOX") -> list[str]:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", srv.ports["imaps"], ssl_context=client_tls(), timeout=10
    )
    client.login(user, password)
    try:
        typ, _ = client.select(mailbox, readonly=True)
        if typ != "OK":
            return []
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [p[1].decode().split(":", 1)[1].strip() for p in data if isinstance(p, tuple)]
    finally:
        client.logout()


def bob_subjects(srv: Server) -> list[str]:
    return subjects(srv, BOB, "bob-secret-2")


def old_owner(srv: Server) -> tuple[str, str]:
    """An account with mail, a folder, vacation memory and an active redirect to bob."""
    n = next(_ids)
    user, password = f"leaver{n}@example.test", f"old-password-{n}"
    add_user(srv, user, password)
    send(srv, user, f"old secret {n}")
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", srv.ports["imaps"], ssl_context=client_tls(), timeout=10
    )
    client.login(user, password)
    assert client.create("Private")[0] == "OK"
    client.logout()
    script = srv.data / f"redirect{n}.sieve"
    script.write_text(f'require "vacation";\nvacation "I left.";\nredirect "{BOB}";\n')
    r = correo(srv.data, "sieve", "put", user, "fwd", str(script), "--activate")
    assert r.returncode == 0, r.stderr
    send(srv, user, f"forwarded {n}")  # the redirect works while the account lives
    assert f"forwarded {n}" in bob_subjects(srv)
    db = sqlite3.connect(srv.data / "store" / "mail.db")
    seen = db.execute("SELECT count(*) FROM vacation_seen WHERE account=?", (user,)).fetchone()
    db.close()
    assert seen == (1,)  # the vacation memory: one reply sent to dave
    return user, f"old secret {n}"


def assert_starts_empty(srv: Server, user: str, n: int) -> None:
    password = f"new-password-{n}"
    add_user(srv, user, password)
    assert_starts_empty_after_add(srv, user, password, n)


def assert_starts_empty_after_add(srv: Server, user: str, password: str, n: int) -> None:
    assert subjects(srv, user, password) == []
    assert subjects(srv, user, password, "Private") == []  # the folder is gone too
    r = correo(srv.data, "sieve", "list", user)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout
    send(srv, user, f"for the new owner {n}")  # the running server delivers it here
    assert subjects(srv, user, password) == [f"for the new owner {n}"]
    assert f"for the new owner {n}" not in bob_subjects(srv)  # no redirect to the old one


def test_user_del_removes_the_data_and_a_new_account_starts_empty(srv: Server) -> None:
    user, _ = old_owner(srv)
    r = correo(srv.data, "user", "del", user)
    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(srv.data / "store" / "mail.db")
    for table in ("sieve_scripts", "vacation_seen", "junk_totals", "junk_tokens"):
        assert db.execute(f"SELECT count(*) FROM {table} WHERE account=?", (user,)).fetchone() == (
            0,
        ), table
    assert db.execute("SELECT count(*) FROM accounts WHERE name=?", (user,)).fetchone() == (0,)
    db.close()
    assert_starts_empty(srv, user, 101)
    r = correo(srv.data, "user", "list", "--kept")
    assert r.returncode == 0 and user not in r.stdout


def test_user_del_keep_data_sets_it_aside_where_no_new_account_finds_it(srv: Server) -> None:
    user, secret = old_owner(srv)
    r = correo(srv.data, "user", "del", user, "--keep-data")
    assert r.returncode == 0, r.stderr
    assert_starts_empty(srv, user, 102)
    r = correo(srv.data, "user", "list", "--kept")
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stdout.splitlines() if x.startswith(f"{user} (deleted ")]
    assert line.endswith("1 message(s)"), line
    tombstone = line.rsplit("  ", 1)[0]

    async def kept() -> tuple[list[str], list[tuple[str, bool]], list[str]]:
        store = SqliteStore(srv.data / "store")
        await store.open()
        try:
            boxes = [b.name for b in await store.list_mailboxes(tombstone)]
            chunks = store.read_message(tombstone, "INBOX", 1)
            body = b"".join([c async for c in chunks])
            return boxes, await store.sieve_list(tombstone), [body.decode()]
        finally:
            await store.close()

    boxes, scripts, bodies = asyncio.run(kept())
    assert "Private" in boxes and scripts == [("fwd", True)]
    assert secret in bodies[0]


def test_user_add_sets_aside_data_left_under_the_address(srv: Server) -> None:
    """Data under an address nobody holds (removed from the directory alone, as
    ``user del`` did before it removed data) is never handed to a new account."""
    user, _ = old_owner(srv)
    with SqliteDirectory(srv.data / "directory.db") as directory:
        directory.del_user(user)  # the login goes, the store is left as it was
    r = correo(srv.data, "user", "add", user, stdin="new-password-103\n")
    assert r.returncode == 0, r.stderr
    assert "set aside" in r.stdout, r.stdout
    assert_starts_empty_after_add(srv, user, "new-password-103", 103)
    r = correo(srv.data, "user", "list", "--kept")
    (line,) = [x for x in r.stdout.splitlines() if x.startswith(f"{user} (deleted ")]
    assert line.endswith("1 message(s)"), line  # the old owner's mail, kept there
