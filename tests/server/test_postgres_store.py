"""correo on PostgreSQL end to end: ``correo init --store``, then SMTP in, IMAP and POP3 out.

The database is a private cluster started by the tests (tests/pg.py), never a mock.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from pathlib import Path

import pytest

from correo.config import SERVICES
from tests.conftest import PASSWORDS, Server, client_tls, correo, quiet_dns
from tests.server.cluster_helpers import init_node
from tests.server.helpers import mailbox, wait_count

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")
from correo.store.postgres_schema import MIGRATIONS  # noqa: E402  (needs psycopg)

ALICE = "alice@example.test"


def pg_node(data: Path, url: str, *, users: bool = True) -> Server:
    """An initialised node on ``url``: every listener on port 0, the tests' users."""
    result = init_node(data, url)
    assert result.returncode == 0, result.stderr
    config = (data / "correo.toml").read_text()
    for service in SERVICES:
        config = re.sub(
            rf"^{service} = \[.*\]$", f'{service} = ["127.0.0.1:0"]', config, flags=re.M
        )
    config = re.sub(r"^nameservers = .*$", f'nameservers = ["{quiet_dns()}"]', config, flags=re.M)
    (data / "correo.toml").write_text(config)
    for address, password in PASSWORDS.items() if users else ():
        added = correo(data, "user", "add", address, stdin=password + "\n")
        assert added.returncode == 0, added.stderr
    return Server(data)


def rows(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0])


def test_init_writes_the_store_url_and_creates_the_schema(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "node1"
    result = init_node(data, pg_url)
    assert result.returncode == 0, result.stderr
    config = (data / "correo.toml").read_text()
    assert f'[store]\nurl = "{pg_url}"' in config
    assert rows(pg_url, "SELECT count(*) FROM schema_version") == len(MIGRATIONS)
    assert not (data / "store" / "mail.db").exists()  # no embedded store beside it
    # A second node joins what is there: same command, its own folder.
    second = init_node(tmp_path / "node2", pg_url, hostname="mx2.example.test")
    assert second.returncode == 0, second.stderr
    assert rows(pg_url, "SELECT count(*) FROM schema_version") == len(MIGRATIONS)


def test_init_refuses_a_store_that_is_not_a_postgresql_url(tmp_path: Path) -> None:
    result = init_node(tmp_path / "node", "mysql://root@localhost/mail")
    assert result.returncode == 1
    assert "postgresql://" in result.stderr


def test_smtp_in_imap_and_pop3_out_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    server = pg_node(tmp_path / "node1", pg_url)
    server.start()
    try:
        small = b"Subject: small\r\nMessage-ID: <small@test>\r\n\r\nHello over PostgreSQL.\r\n"
        line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n"
        large = b"Subject: large\r\nMessage-ID: <large@test>\r\n\r\n" + line * 12_000  # ~850 KB
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("sender@elsewhere.test", [ALICE], small)
            smtp.sendmail("sender@elsewhere.test", [ALICE], large)
        assert wait_count(server.ports["pop3s"], ALICE, 2) == 2

        popped = mailbox(server.ports["pop3s"], ALICE)
        assert popped[0].endswith(b"Hello over PostgreSQL.")
        assert popped[1].endswith(line.rstrip(b"\r\n")) and len(popped[1]) > len(large) - 100

        client = imaplib.IMAP4_SSL(
            "127.0.0.1", server.ports["imaps"], ssl_context=client_tls(), timeout=10
        )
        client.login(ALICE, PASSWORDS[ALICE])
        client.select("INBOX")
        typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK"
        bodies = [part[1] for part in data if isinstance(part, tuple)]
        assert len(bodies) == 2
        assert bodies[0].endswith(small) and bodies[1].endswith(large)
        client.logout()

        # The mail is in the database, the large body in chunks; nothing local, not
        # even from `correo user add` (every command goes to the shared store).
        assert rows(pg_url, "SELECT count(*) FROM messages") == 2
        assert rows(pg_url, "SELECT count(*) FROM blob_chunks") >= 4
        assert rows(pg_url, "SELECT count(*) FROM accounts") == len(PASSWORDS)
        assert not (tmp_path / "node1" / "store" / "mail.db").exists()
    finally:
        assert server.stop() == 0, server.log()[-3000:]
