"""What only the PostgreSQL directory has: its migration, nodes' snapshots kept current
over LISTEN/NOTIFY (and without it), an unreachable database.

The contract both directories share is tests/directory/test_contract.py.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from correo.directory import DirectoryError, Resolution

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.directory.postgres import PostgresDirectory  # noqa: E402
from correo.store import postgres_schema  # noqa: E402
from tests.pg import PgCluster  # noqa: E402

DIRECTORY_MIGRATION = 4


def eventually(check: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def migrate(url: str, versions: set[int] | None = None) -> None:
    """Run the store's migrations, or only ``versions`` of them (an older correo)."""
    every = dict(postgres_schema.MIGRATIONS)

    async def go() -> None:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            await postgres_schema.migrate(conn)
        finally:
            await conn.close()

    with pytest.MonkeyPatch.context() as patch:
        if versions is not None:
            patch.setattr(
                postgres_schema, "MIGRATIONS", {v: every[v] for v in versions if v in every}
            )
        asyncio.run(go())


@pytest.fixture
def nodes(pg_cluster: PgCluster) -> Iterator[tuple[PostgresDirectory, PostgresDirectory]]:
    url = pg_cluster.new_database(schema=True)
    one, two = PostgresDirectory(url, watch=True), PostgresDirectory(url, watch=True)
    yield one, two
    one.close()
    two.close()


def test_the_directory_migration_applies_to_a_database_of_the_schema_before(
    pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.new_database()
    # Later migrations (admin flag, SCRAM verifiers) alter the directory's tables: the
    # schema before is every migration numbered below the directory's.
    before = {v for v in postgres_schema.MIGRATIONS if v < DIRECTORY_MIGRATION}
    migrate(url, before)  # what the previous correo made, with mail in it
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (name, created) VALUES ('a@x.test', 0)")
    with PostgresDirectory(url) as directory:  # opening migrates
        directory.add_domain("x.test")
        directory.add_user("a@x.test", "a long passphrase")
        assert directory.users() == ["a@x.test"]
    with psycopg.connect(url) as conn:
        versions = {r[0] for r in conn.execute("SELECT version FROM schema_version")}
        assert versions == set(postgres_schema.MIGRATIONS)
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (1,)


def test_a_migration_numbered_below_one_already_applied_still_runs(
    pg_cluster: PgCluster,
) -> None:
    """Two releases merged with neighbouring numbers: a database that has the higher one
    gets the lower one too, instead of skipping it."""
    url = pg_cluster.new_database()
    lower = [v for v in postgres_schema.MIGRATIONS if 1 < v < DIRECTORY_MIGRATION]
    if not lower:
        pytest.skip("no migration between the first and the directory's")
    migrate(url, set(postgres_schema.MIGRATIONS) - {lower[-1]})
    migrate(url)
    with psycopg.connect(url) as conn:
        versions = {r[0] for r in conn.execute("SELECT version FROM schema_version")}
    assert versions == set(postgres_schema.MIGRATIONS)


def test_a_node_follows_another_within_a_second(pg_cluster: PgCluster) -> None:
    """Node two looks at the serial on its own only every 600 s here, so what carries
    each change is node one's NOTIFY.  Timed from each commit, judged on the median of
    three: one round in which a loaded machine deschedules a thread does not fail it."""
    url = pg_cluster.new_database(schema=True)
    with PostgresDirectory(url) as one, PostgresDirectory(url, watch=True, recheck=600) as two:
        assert two.listening.wait(10)
        one.add_domain("example.com")
        one.add_user("alice@example.com", "a long passphrase")
        waits = []
        for n in range(3):
            alias = f"info{n}@example.com"
            one.add_alias(alias, "alice@example.com")
            committed = time.monotonic()
            assert eventually(lambda a=alias: two.resolve(a) is not None, 10.0)
            waits.append(time.monotonic() - committed)
        assert sorted(waits)[1] < 1.0, waits
        assert two.resolve("info0@example.com") == Resolution("alice@example.com", (), None)


def test_a_lost_notification_is_made_up_by_looking_at_the_serial(
    pg_cluster: PgCluster,
) -> None:
    """A write that sent no NOTIFY (a restore script, a lost notification) is still seen."""
    url = pg_cluster.new_database(schema=True)
    with PostgresDirectory(url, watch=True, recheck=0.2) as server:
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("INSERT INTO domains VALUES ('example.org')")
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'directory_serial'")
        # Found by the 0.2 s recheck (no NOTIFY was sent); 10 s only says "not never".
        assert eventually(lambda: server.is_local_domain("example.org"), timeout=10.0)


def test_a_listener_cut_off_reconnects_and_catches_up(
    nodes: tuple[PostgresDirectory, PostgresDirectory], pg_cluster: PgCluster
) -> None:
    one, two = nodes
    assert two.listening.wait(5)
    with psycopg.connect(two.url, autocommit=True) as conn:  # the server drops it
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'correo-directory-listen'"
        ).fetchone()
    assert killed is not None and killed[0] >= 2  # both nodes' listeners
    one.add_domain("example.net")  # possibly while two is not listening
    assert eventually(lambda: two.is_local_domain("example.net"), timeout=10.0)
    assert two.listening.wait(10)


def test_an_unreachable_database_fails_at_once() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(DirectoryError, match="cannot open the directory database"):
        PostgresDirectory(f"postgresql://nobody@127.0.0.1:{port}/mail")
    assert time.monotonic() - started < 5


def test_lookups_never_wait_on_the_database(
    nodes: tuple[PostgresDirectory, PostgresDirectory],
) -> None:
    """A serving node answers from memory: 2,000 lookups in well under a second."""
    one, _ = nodes
    one.add_domain("example.com")
    one.add_user("alice@example.com", "a long passphrase")
    started = time.perf_counter()
    for _ in range(2000):
        assert one.resolve("alice+x@example.com") is not None
    assert (time.perf_counter() - started) / 2000 < 0.001


def test_the_url_with_its_password_never_shows(pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database(schema=True).replace("correo@", "correo:s3cret-pw@")
    with PostgresDirectory(url) as directory:
        assert "s3cret" not in repr(directory)


def test_a_database_restart_is_ridden_out(own_pg_cluster: PgCluster) -> None:
    """While the database is down lookups and logins answer from memory; afterwards the
    pool and the listener reconnect by themselves and changes flow again."""
    url = own_pg_cluster.new_database(schema=True)
    with PostgresDirectory(url, watch=True) as server, PostgresDirectory(url) as cli:
        cli.add_domain("example.com")
        cli.add_user("alice@example.com", "a long passphrase")
        assert server.verify_password("alice@example.com", "a long passphrase")
        own_pg_cluster.stop_server("fast")  # every session is cut
        try:
            started = time.monotonic()
            assert server.verify_password("alice@example.com", "a long passphrase")
            # The snapshot answers after the login's 1 s wait for the database, not the
            # pool's 30 s; 15 s leaves room for a loaded machine's password hashing.
            assert time.monotonic() - started < 15
            assert server.is_local_domain("example.com")
            with pytest.raises(DirectoryError):
                cli.add_user("bob@example.com", "another passphrase")
        finally:
            own_pg_cluster.start_server()
        assert eventually(lambda: _try_add(cli, "bob@example.com"), timeout=15.0)
        assert eventually(lambda: server.user_exists("bob@example.com"), timeout=15.0)
        assert server.verify_password("bob@example.com", "another passphrase")


def _try_add(directory: PostgresDirectory, address: str) -> bool:
    try:
        directory.add_user(address, "another passphrase")
    except DirectoryError:
        return False
    return True
