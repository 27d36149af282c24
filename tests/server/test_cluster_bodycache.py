"""Each node's body cache on disk (``[store] body_cache_mb``), two ``correo serve`` nodes on
one PostgreSQL (tests/pg.py): mail delivered through node 1 is written to node 1's cache,
read on node 2 once from the database and then from node 2's own cache, and still served
from a node's folder after that node restarts.

Which path answered is shown by changing the stored body behind the nodes' backs (never
done otherwise: a stored body does not change): a FETCH from a cache keeps the bytes the
message was delivered with.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo
from tests.pg import PgCluster
from tests.server.cluster_helpers import eventually
from tests.server.imap_helpers import message
from tests.server.test_cluster import Pair, _start_pair, _stop_pair

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def pair(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("cachecluster")
    url = pg_cluster.new_database()
    made = _start_pair(root, url)
    yield made
    _stop_pair(made)


def login(node: Server, user: str = ALICE) -> imaplib.IMAP4:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=10
    )
    client.login(user, PASSWORDS[user])
    return client


def fetch(client: imaplib.IMAP4, uid: str) -> bytes:
    typ, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK", data
    return next(item[1] for item in data if isinstance(item, tuple))


def cached(node: Server) -> list[Path]:
    folder = node.data / "cache" / "bodies"
    return [p for p in folder.rglob("*") if p.is_file() and p.name.isdigit()]


def change_stored_bodies(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(b"UPDATE blobs SET data = 'changed' WHERE data IS NOT NULL")


def test_delivered_on_node_1_read_on_node_2_miss_then_hit_and_after_a_restart(
    pair: Pair,
) -> None:
    watcher = login(pair.one)  # a session on node 1 has INBOX open: delivery writes through
    try:
        watcher.select("INBOX")
        data = message("cached across nodes").replace(b"Hello there.\r\n", b"y" * 40_000 + b"\r\n")
        with smtplib.SMTP("127.0.0.1", pair.one.ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("x@remote.test", [ALICE], data)
        assert eventually(lambda: len(cached(pair.one)) == 1), cached(pair.one)
        assert cached(pair.two) == []
        reader = login(pair.two)
        try:
            reader.select("INBOX")
            _, found = reader.uid("SEARCH", None, "ALL")
            uid = found[0].split()[-1].decode()
            first = fetch(reader, uid)  # node 2's miss: from the database, then kept
            assert first.endswith(data)
            assert eventually(lambda: len(cached(pair.two)) == 1), cached(pair.two)
            change_stored_bodies(pair.url)
            assert fetch(reader, uid) == first  # node 2's hit (its memory's or its disk's)
        finally:
            reader.logout()
        watcher.noop()
        assert fetch(watcher, uid) == first  # node 1: written when it was delivered
    finally:
        watcher.logout()
    assert pair.two.stop() == 0
    pair.two.start()
    again = login(pair.two)
    try:
        again.select("INBOX")
        assert fetch(again, uid) == first  # nothing in memory now: the folder's file
    finally:
        again.logout()


def test_a_backup_leaves_the_body_cache_out(pair: Pair, tmp_path: Path) -> None:
    """The cache copies what the database holds: a node's backup would only grow by it."""
    assert cached(pair.two)  # filled by the test above
    out = tmp_path / "backup"
    made = correo(pair.two.data, "backup", str(out))
    assert made.returncode == 0, made.stderr
    assert (out / "correo.toml").is_file() and (out / "store.pgdump").is_file()
    assert not (out / "cache" / "bodies").exists()


def test_an_append_is_kept_without_a_session_having_the_mailbox_open(pair: Pair) -> None:
    """The commit itself names the mailbox id and UIDVALIDITY: a lone APPEND (nothing
    selected, no look at INBOX before it) is written to the node's cache and read back
    from there, not from the database."""
    before = len(cached(pair.one))
    data = message("appended alone").replace(b"Hello there.\r\n", b"z" * 30_000 + b"\r\n")
    client = login(pair.one, "bob@example.test")  # no session of this node opened his INBOX
    try:
        typ, got = client.append("INBOX", None, None, data)
        assert typ == "OK", got
        uid = re.search(rb"APPENDUID \d+ (\d+)", got[0]).group(1).decode()  # type: ignore[union-attr,arg-type]
        assert eventually(lambda: len(cached(pair.one)) == before + 1), cached(pair.one)
        change_stored_bodies(pair.url)
        client.select("INBOX")
        assert fetch(client, uid) == data  # from the cache: the database's copy changed
    finally:
        client.logout()
