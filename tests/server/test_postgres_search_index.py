"""``correo store search-index on|off|status`` and IMAP SEARCH TEXT/BODY through it.

A node on a real PostgreSQL (tests/pg.py) answers the same UID SEARCH with and without
the trigram index, before and after the operator turns it on with the CLI.
"""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, client_tls, correo
from tests.server.cluster_helpers import eventually

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")
from tests.server.test_postgres_store import ALICE, pg_node  # noqa: E402
from tests.store.test_postgres_search_index import MESSAGES  # noqa: E402

#: (charset, keys, needle): one UID SEARCH each; the needle goes as a literal.
SEARCHES = [
    ("", "TEXT", "phone"),
    ("", "BODY", "QUARTET"),
    ("", "TEXT", "quarterly"),
    ("", "BODY", "quarterly"),  # in the header only: not BODY
    ("UTF-8", "TEXT", "STRASSE"),
    ("UTF-8", "BODY", "ελληνικά"),
    ("UTF-8", "TEXT", "é"),
    ("", "TEXT", "ab"),
    ("", "TEXT", "ord"),
    ("", "TEXT", "nowhere"),
    ("", "TEXT", "ann@x.test"),
    ("", "BODY", "gem"),
    ("", "BODY", "filler699"),
    ("", "TEXT", "zanzibar-quartz"),
]


def index_state(url: str) -> bool | None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            b"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('text_docs_trgm')"
        ).fetchone()
    return None if row is None else bool(row[0])


def search_all(port: int) -> list[bytes]:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_tls(), timeout=30)
    try:
        client.login(ALICE, PASSWORDS[ALICE])
        client.select("INBOX", readonly=True)
        found = []
        for charset, key, needle in SEARCHES:
            client.literal = needle.encode()  # type: ignore[attr-defined]
            args = (["CHARSET", charset] if charset else []) + [key]
            status, data = client.uid("SEARCH", *args)
            assert status == "OK", (key, needle, data)
            found.append(data[0] or b"")
        return found
    finally:
        client.logout()


def test_search_answers_the_same_before_and_after_search_index_on(
    pg_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    node = pg_node(data, pg_url)
    node.start()
    try:
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=30
        )
        client.login(ALICE, PASSWORDS[ALICE])
        for message in MESSAGES:
            status, _ = client.append("INBOX", None, None, message)
            assert status == "OK"
        client.logout()

        def indexed() -> bool:
            with psycopg.connect(pg_url) as conn:
                row = conn.execute(b"SELECT count(*) FROM text_docs").fetchone()
            return row is not None and row[0] == len(MESSAGES)

        assert eventually(indexed, timeout=20)
        without = search_all(node.ports["imaps"])
    finally:
        node.stop()
    assert without[0] == b"1 6" and without[1] == b"1"  # inside words, any case
    assert without[2] == b"1" and without[3] == b""  # TEXT reads the header, BODY not
    assert without[4] == b"2 6" and without[5] == b"2" and without[6] == b"2"  # non-ASCII
    assert without[7] == b"" and without[8] == b"3" and without[9] == b""
    assert without[11] == b"4 6" and without[12] == b"5" and without[13] == b"5"
    assert index_state(pg_url) is None
    made = correo(data, "store", "search-index", "on")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("search index on:"), made.stdout
    assert index_state(pg_url) is True
    node.start()  # a node opened now reads that the index is there
    try:
        assert search_all(node.ports["imaps"]) == without
    finally:
        node.stop()


def test_search_index_on_status_off(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "correo.toml").write_text(f'[store]\nurl = "{pg_url}"\n')
    said = correo(data, "store", "search-index", "status")  # an empty database: migrated
    assert said.returncode == 0 and said.stdout.startswith("search index off:"), said
    for _ in range(2):  # turning it on twice is no error
        said = correo(data, "store", "search-index", "on")
        assert said.returncode == 0 and said.stdout.startswith("search index on:"), said
        assert index_state(pg_url) is True
    said = correo(data, "store", "search-index", "status")
    assert said.stdout.startswith("search index on:"), said
    said = correo(data, "store", "search-index", "off")
    assert said.returncode == 0 and said.stdout.startswith("search index off:"), said
    assert index_state(pg_url) is None


def test_search_index_on_without_pg_trgm_fails_with_one_line(
    pg_cluster: object, tmp_path: Path
) -> None:
    """A role that may not create the extension (as where pg_trgm is not installed)."""
    url: str = pg_cluster.new_database(schema=True)  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute(b"DROP EXTENSION IF EXISTS pg_trgm")
        conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain')"
            f" THEN CREATE ROLE plain LOGIN; END IF; END $$;"
            f" REVOKE CREATE ON DATABASE {database} FROM PUBLIC;"
            " GRANT USAGE, CREATE ON SCHEMA public TO plain;"
            " GRANT ALL ON ALL TABLES IN SCHEMA public TO plain".encode()
        )
    plain = url.replace("://correo@", "://plain@")
    data = tmp_path / "data"
    data.mkdir()
    (data / "correo.toml").write_text(f'[store]\nurl = "{plain}"\n')
    said = correo(data, "store", "search-index", "on")
    assert said.returncode == 2, said
    lines = said.stderr.strip().splitlines()
    assert len(lines) == 1 and "pg_trgm" in lines[0] and "contrib" in lines[0], said.stderr
    assert index_state(url) is None


def test_search_index_refuses_the_embedded_store(tmp_path: Path) -> None:
    said = correo(tmp_path, "store", "search-index", "on")
    assert said.returncode == 2
    assert "embedded" in said.stderr and len(said.stderr.strip().splitlines()) == 1
