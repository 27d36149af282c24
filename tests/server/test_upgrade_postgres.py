"""Every earlier PostgreSQL schema migrates on open and serves its mail.

For each migration level below the latest, a database is built as that level left it
(the migrations up to it, applied as :func:`correo.store.postgres_schema.migrate` does
and recorded in ``schema_version``), and a message is written into it with SQL that
fits the oldest schema. Then a node of this correo joins it with ``correo init --store``
(which runs the missing migrations), and the message is read over IMAP with its UID and
UIDVALIDITY unchanged; an APPEND gets the next UID.
"""

from __future__ import annotations

import hashlib
import imaplib
import time
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, client_tls

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")
from correo.directory.passwords import PasswordScheme  # noqa: E402
from correo.store.postgres_schema import LATEST, MIGRATIONS  # noqa: E402  (needs psycopg)
from tests.server.cluster_helpers import DOMAIN  # noqa: E402
from tests.server.test_postgres_store import ALICE, pg_node  # noqa: E402

LEVELS = sorted(v for v in MIGRATIONS if v < LATEST)
SUBJECT = "written before the upgrade"


def build_level(url: str, level: int) -> None:
    """The schema as migration ``level`` left it, recorded as :func:`migrate` records it."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE schema_version ("
            " version integer PRIMARY KEY, applied double precision NOT NULL)"
        )
        for version in sorted(v for v in MIGRATIONS if v <= level):
            required, optional = MIGRATIONS[version]
            conn.execute(required.encode())
            for statement in optional:
                try:
                    with conn.transaction():
                        conn.execute(statement.encode())
                except psycopg.Error:
                    break
            conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (%s, %s)",
                (version, time.time()),
            )


def put_message(url: str, uidvalidity: int) -> bytes:
    """One message in ALICE's INBOX with the columns of the first schema only."""
    body = (
        f"From: Old <old@example.test>\r\nTo: {ALICE}\r\nSubject: {SUBJECT}\r\n"
        "Message-ID: <old@example.test>\r\n\r\nThe body, stored by an earlier schema.\r\n"
    ).encode()
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        (account,) = conn.execute(
            "INSERT INTO accounts (name, created) VALUES (%s, %s) RETURNING id", (ALICE, now)
        ).fetchone() or (0,)
        (mailbox,) = conn.execute(
            "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highestmodseq)"
            " VALUES (%s, 'INBOX', %s, 2, 2) RETURNING id",
            (account, uidvalidity),
        ).fetchone() or (0,)
        conn.execute(
            "INSERT INTO subscriptions (account_id, name) VALUES (%s, 'INBOX')", (account,)
        )
        (blob,) = conn.execute(
            "INSERT INTO blobs (digest, size, refs, data) VALUES (%s, %s, 1, %s) RETURNING id",
            (hashlib.sha256(body).digest(), len(body), body),
        ).fetchone() or (0,)
        conn.execute(
            "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags, modseq)"
            " VALUES (%s, 1, %s, %s, %s, '\\Seen', 2)",
            (mailbox, blob, len(body), now),
        )
    return body


def put_user(url: str) -> None:
    """ALICE in the shared directory (its tables came with migration 4), as ``user add``
    leaves her, without ``user add``: that sets aside mail found under a new user's name.
    """
    hashed = PasswordScheme().hash(PASSWORDS[ALICE])
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO domains (name) VALUES (%s) ON CONFLICT DO NOTHING", (DOMAIN,))
        conn.execute(
            "INSERT INTO users (address, domain, password_hash) VALUES (%s, %s, %s)",
            (ALICE, DOMAIN, hashed),
        )
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_serial'")


def test_there_are_earlier_levels() -> None:
    assert LEVELS and LEVELS[0] == 1 and len(LEVELS) == len(MIGRATIONS) - 1


@pytest.mark.parametrize("level", LEVELS)
def test_an_earlier_schema_migrates_and_serves(
    level: int, pg_cluster: object, tmp_path: Path
) -> None:
    url: str = pg_cluster.new_database()  # type: ignore[attr-defined]
    build_level(url, level)
    uidvalidity = 4000 + level
    body = put_message(url, uidvalidity)
    if level >= 4:
        put_user(url)  # the directory was in the database already
    node = pg_node(tmp_path / "node", url, users=False)  # correo init --store: migrates
    if level < 4:
        put_user(url)  # it was in each node's DATA/directory.db then
    with psycopg.connect(url) as conn:
        versions = {int(r[0]) for r in conn.execute("SELECT version FROM schema_version")}
    assert versions == set(MIGRATIONS), sorted(set(MIGRATIONS) - versions)
    node.start()
    try:
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=30
        )
        client.login(ALICE, PASSWORDS[ALICE])
        status, count = client.select("INBOX")
        assert status == "OK" and count == [b"1"], count
        assert client.untagged_responses.get("UIDVALIDITY") == [str(uidvalidity).encode()]
        status, parts = client.uid("FETCH", "1", "(FLAGS BODY.PEEK[] ENVELOPE)")
        assert status == "OK", parts
        first = parts[0]
        assert isinstance(first, tuple) and first[1] == body, parts
        assert b"\\Seen" in first[0], first[0]
        rest = parts[1]  # ENVELOPE, after the literal: computed from the stored bytes
        assert isinstance(rest, bytes) and b"ENVELOPE" in rest and SUBJECT.encode() in rest, rest
        status, appended = client.append("INBOX", None, None, b"Subject: after\r\n\r\nnew\r\n")
        assert status == "OK" and b"APPENDUID %d 2]" % uidvalidity in appended[0], appended
        client.logout()
    finally:
        node.stop()
