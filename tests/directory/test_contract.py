"""The Directory contract, run against every implementation: SQLite and PostgreSQL.

The PostgreSQL runs use a private cluster (tests/pg.py), a fresh database per test; they
are skipped only where no PostgreSQL binaries are installed.  Two directories opened on
one database stand for two processes: the CLI and a server, or two nodes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import argon2
import pytest

from correo.directory import (
    Directory,
    DirectoryError,
    PasswordScheme,
    Resolution,
    SqliteDirectory,
)
from correo.mailauth.keys import ensure_domain_keys, load_domain_keys, load_signer, rotate_keys
from correo.sasl import ScramVerifier, make_verifier
from tests.argon import FAST

IMPLEMENTATIONS = ("sqlite", "postgresql")
SECRET = "correct horse battery staple"


class Impl:
    """Opens directories of one implementation on one database; closes them at the end."""

    def __init__(self, name: str, tmp_path: Path, url: str = "") -> None:
        self.name = name
        self.path = tmp_path / "data" / "directory.db"
        self.url = url
        self.opened: list[Directory] = []

    def open(
        self, *, server: bool = False, passwords: PasswordScheme | None = None, **kw: Any
    ) -> Directory:
        """``server``: the view a running server keeps (it sees other writers' changes)."""
        scheme = passwords or PasswordScheme(FAST)
        directory: Directory
        if self.name == "sqlite":
            directory = SqliteDirectory(self.path, passwords=scheme, **kw)
        else:
            from correo.directory.postgres import PostgresDirectory

            directory = PostgresDirectory(self.url, passwords=scheme, watch=server, **kw)
        self.opened.append(directory)
        return directory

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Raw rows, read past the directory (as a backup or an attacker would)."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.path)
            try:
                return list(conn.execute(sql).fetchall())
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url) as conn:
            return list(conn.execute(sql.encode()).fetchall())

    def close(self) -> None:
        for directory in self.opened:
            directory.close()


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Impl]:
    url = ""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").new_database(schema=True)
    made = Impl(request.param, tmp_path, url)
    yield made
    made.close()


@pytest.fixture
def directory(impl: Impl) -> Directory:
    return impl.open()


@pytest.fixture
def populated(directory: Directory) -> Directory:
    directory.add_domain("example.com")
    directory.add_domain("example.org")
    directory.add_user("alice@example.com", SECRET)
    directory.add_user("bob@example.com", "hunter2")
    return directory


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """A server's lookups follow another writer within milliseconds; only a failure
    waits the whole timeout, kept generous for a loaded machine."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ---- life cycle ---------------------------------------------------------------------


def test_closed(directory: Directory) -> None:
    directory.close()
    directory.close()  # idempotent
    with pytest.raises(DirectoryError, match="closed"):
        directory.domains()
    with pytest.raises(DirectoryError, match="closed"):
        directory.add_domain("example.com")


def test_a_context_manager_closes(impl: Impl) -> None:
    with impl.open() as d:
        d.add_domain("example.com")
    with pytest.raises(DirectoryError, match="closed"):
        d.add_domain("example.org")
    with impl.open() as again:
        assert again.domains() == ["example.com"]


# ---- domains ------------------------------------------------------------------------


def test_domains(directory: Directory) -> None:
    directory.add_domain("Example.COM")
    directory.add_domain("bücher.example")
    assert directory.domains() == ["example.com", "xn--bcher-kva.example"]
    assert directory.is_local_domain("EXAMPLE.com")
    assert directory.is_local_domain("BÜCHER.example")
    assert directory.is_local_domain("xn--bcher-kva.example")
    assert not directory.is_local_domain("example.net")
    assert not directory.is_local_domain("bad domain")
    with pytest.raises(DirectoryError, match="already exists"):
        directory.add_domain("example.com")
    directory.del_domain("bücher.example")
    assert directory.domains() == ["example.com"]
    with pytest.raises(DirectoryError, match="does not exist"):
        directory.del_domain("bücher.example")
    with pytest.raises(DirectoryError, match="invalid label"):
        directory.add_domain("exa_mple.com")


def test_del_domain_in_use(populated: Directory) -> None:
    with pytest.raises(DirectoryError, match=r"2 user\(s\) and 0 alias"):
        populated.del_domain("example.com")
    populated.add_alias("@example.org", "alice@example.com")
    with pytest.raises(DirectoryError, match=r"0 user\(s\) and 1 alias"):
        populated.del_domain("example.org")


# ---- users --------------------------------------------------------------------------


def test_users(populated: Directory) -> None:
    d = populated
    assert d.users() == ["alice@example.com", "bob@example.com"]
    assert d.user_exists("ALICE@Example.com")
    assert not d.user_exists("carol@example.com")
    assert not d.user_exists("not an address")
    with pytest.raises(DirectoryError, match="already exists"):
        d.add_user("Alice@example.com", "x")
    with pytest.raises(DirectoryError, match="not a local domain"):
        d.add_user("carol@example.net", "x")
    with pytest.raises(DirectoryError, match="recipient delimiter"):
        d.add_user("carol+x@example.com", "x")
    with pytest.raises(DirectoryError, match="invalid user address"):
        d.add_user("carol", "x")
    with pytest.raises(DirectoryError, match="empty"):
        d.add_user("carol@example.com", "")
    d.del_user("bob@EXAMPLE.com")
    assert d.users() == ["alice@example.com"]
    with pytest.raises(DirectoryError, match="does not exist"):
        d.del_user("bob@example.com")
    assert d.account_name("Carol@EXAMPLE.com") == "carol@example.com"


def test_verify_and_set_password(populated: Directory) -> None:
    d = populated
    assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
    assert d.verify_password("ALICE@EXAMPLE.COM", SECRET) == "alice@example.com"
    assert d.verify_password("alice@example.com", "wrong") is None
    assert d.verify_password("alice@example.com", "") is None
    assert d.verify_password("alice@example.com", SECRET + "\x00") is None
    assert d.verify_password("nobody@example.com", SECRET) is None
    assert d.verify_password("garbage", SECRET) is None
    assert d.verify_password("alice+tag@example.com", SECRET) is None  # log in as the account
    d.set_password("Alice@example.com", "new secret")
    assert d.verify_password("alice@example.com", SECRET) is None
    assert d.verify_password("alice@example.com", "new secret") == "alice@example.com"
    with pytest.raises(DirectoryError, match="does not exist"):
        d.set_password("carol@example.com", "x")
    with pytest.raises(DirectoryError, match="NUL"):
        d.set_password("alice@example.com", "a\x00b")


def test_rehash_on_login(impl: Impl) -> None:
    with impl.open() as old:
        old.add_domain("example.com")
        old.add_user("alice@example.com", SECRET)
    stronger = argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=2,
        memory_cost=16,
        parallelism=1,
    )

    def stored() -> str:
        return str(impl.rows("SELECT password_hash FROM users")[0][0])

    with impl.open(passwords=PasswordScheme(stronger)) as new:
        assert "t=1" in stored()
        assert new.verify_password("alice@example.com", "wrong") is None
        assert "t=1" in stored()  # no rehash on failure
        assert new.verify_password("alice@example.com", SECRET) == "alice@example.com"
        assert "t=2,p=1" in stored() and "m=16" in stored()
        assert new.verify_password("alice@example.com", SECRET) == "alice@example.com"


def test_no_password_leaks(populated: Directory, impl: Impl) -> None:
    d = populated
    texts = [repr(d), str(d), repr(d.resolve("alice@example.com")), repr(PasswordScheme())]
    calls: list[Callable[[], None]] = [
        lambda: d.add_user("alice@example.com", SECRET),
        lambda: d.add_user("x@example.net", SECRET),
        lambda: d.set_password("nobody@example.com", SECRET),
        lambda: d.add_user("y@example.com", SECRET + "\x00"),
        lambda: d.set_password("alice@example.com", SECRET * 100),
    ]
    for call in calls:
        with pytest.raises(DirectoryError) as info:
            call()
        texts += [str(info.value), repr(info.value)]
    assert not any(SECRET in text for text in texts)
    assert not any(SECRET in str(row) for row in impl.rows("SELECT * FROM users"))


# ---- aliases and resolution ---------------------------------------------------------


def test_alias_management(populated: Directory) -> None:
    d = populated
    d.add_alias("Postmaster@example.com", "alice@example.com")
    d.add_alias("@example.org", "bob@example.com")
    d.add_alias("ext@example.com", "Someone.Else@Remote.EXAMPLE")
    assert d.aliases() == [
        ("@example.org", "bob@example.com"),
        ("ext@example.com", "Someone.Else@remote.example"),  # remote local part kept as given
        ("postmaster@example.com", "alice@example.com"),
    ]
    for alias, target, message in [
        ("postmaster@example.com", "bob@example.com", "already exists"),
        ("alice@example.com", "bob@example.com", "is a user"),
        ("x@example.net", "bob@example.com", "not a local domain"),
        ("@example.net", "bob@example.com", "not a local domain"),
        ("x+y@example.com", "bob@example.com", "recipient delimiter"),
        ("x@example.com", "not an address", "invalid alias target"),
        ("bad alias@example.com", "bob@example.com", "invalid alias address"),
        ("self@example.com", "SELF@example.com", "itself"),
    ]:
        with pytest.raises(DirectoryError, match=message):
            d.add_alias(alias, target)
    with pytest.raises(DirectoryError, match="is already an alias"):
        d.add_user("postmaster@example.com", "x")
    d.del_alias("POSTMASTER@example.com")
    d.del_alias("@EXAMPLE.org")
    assert d.aliases() == [("ext@example.com", "Someone.Else@remote.example")]
    with pytest.raises(DirectoryError, match="does not exist"):
        d.del_alias("postmaster@example.com")


def test_resolve_table(populated: Directory) -> None:
    d = populated
    d.add_alias("postmaster@example.com", "alice@example.com")
    d.add_alias("abuse@example.com", "postmaster@example.com")  # chain
    d.add_alias("sales@example.com", "bob+sales@example.com")  # alias with its own tag
    d.add_alias("ext@example.com", "Someone@remote.example")
    d.add_alias("chain@example.com", "ext@example.com")
    d.add_alias("loop1@example.com", "loop2@example.com")
    d.add_alias("loop2@example.com", "loop1@example.com")
    d.add_alias("dangling@example.com", "ghost@example.com")
    d.add_alias("@example.org", "bob@example.com")  # catch-all
    d.add_alias("info@example.org", "alice@example.com")  # specific beats catch-all
    alice, bob = "alice@example.com", "bob@example.com"
    table: list[tuple[str, Resolution | None]] = [
        ("alice@example.com", Resolution(alice, (), None)),
        ("ALICE@Example.COM", Resolution(alice, (), None)),
        ("alice+Lists@example.com", Resolution(alice, (), "lists")),
        ("postmaster@example.com", Resolution(alice, (), None)),
        ("abuse+x@example.com", Resolution(alice, (), "x")),
        ("sales@example.com", Resolution(bob, (), "sales")),
        ("sales+eu@example.com", Resolution(bob, (), "sales")),
        ("ext@example.com", Resolution(None, ("Someone@remote.example",), None)),
        ("chain@example.com", Resolution(None, ("Someone@remote.example",), None)),
        ("loop1@example.com", None),
        ("dangling@example.com", None),
        ("nobody@example.com", None),
        ("anything@example.org", Resolution(bob, (), None)),
        ("x+y@example.org", Resolution(bob, (), None)),
        ("info@example.org", Resolution(alice, (), None)),
        ("alice@example.net", None),
        ("not an address", None),
        ("alice@[127.0.0.1]", None),
    ]
    for address, expected in table:
        assert d.resolve(address) == expected, address


def test_alias_depth_limit(populated: Directory) -> None:
    d = populated
    # a0 -> a1 -> ... -> a10 -> alice: 11 hops, one too many; a1 needs 10 hops.
    for i in range(11):
        target = f"a{i + 1}@example.com" if i < 10 else "alice@example.com"
        d.add_alias(f"a{i}@example.com", target)
    assert d.resolve("a1@example.com") == Resolution("alice@example.com", (), None)
    assert d.resolve("a0@example.com") is None


def test_catch_all_cycle(populated: Directory) -> None:
    populated.add_alias("@example.org", "ghost@example.org")
    assert populated.resolve("anyone@example.org") is None
    assert populated.owned_addresses("alice@example.com") == {"alice@example.com"}


def test_idna_and_case_in_aliases(populated: Directory) -> None:
    d = populated
    d.add_domain("bücher.example")
    d.add_user("Jörg@BÜCHER.example", "pw")
    d.add_alias("Info@bücher.example", "JÖRG@xn--bcher-kva.example")
    assert d.users()[-1] == "jörg@xn--bcher-kva.example"
    assert d.resolve("INFO@Bücher.Example") == Resolution("jörg@xn--bcher-kva.example", (), None)
    assert d.verify_password("JÖRG@bücher.example", "pw") == "jörg@xn--bcher-kva.example"


def test_owned_and_may_send_as(populated: Directory) -> None:
    d = populated
    d.add_alias("postmaster@example.com", "alice@example.com")
    d.add_alias("abuse@example.com", "postmaster@example.com")
    d.add_alias("@example.org", "alice@example.com")
    d.add_alias("bobby@example.com", "bob@example.com")
    d.add_alias("ext@example.com", "alice@remote.example")
    assert d.owned_addresses("ALICE@example.com") == {
        "alice@example.com",
        "postmaster@example.com",
        "abuse@example.com",
        "@example.org",
    }
    assert d.owned_addresses("bob@example.com") == {"bob@example.com", "bobby@example.com"}
    assert d.owned_addresses("carol@example.com") == frozenset()
    assert d.owned_addresses("garbage") == frozenset()
    for account, address, allowed in [
        ("alice@example.com", "alice@example.com", True),
        ("alice@example.com", "Alice+News@EXAMPLE.com", True),
        ("alice@example.com", "abuse@example.com", True),
        ("alice@example.com", "whatever@example.org", True),  # catch-all owner
        ("alice@example.com", "bob@example.com", False),
        ("alice@example.com", "bobby+x@example.com", False),
        ("alice@example.com", "ext@example.com", False),  # forwards elsewhere
        ("alice@example.com", "alice@remote.example", False),
        ("alice@example.com", "", False),
        ("garbage", "alice@example.com", False),
        ("bob@example.com", "bobby@example.com", True),
    ]:
        assert d.may_send_as(account, address) is allowed, (account, address)
    # The owner index follows changes.
    d.del_alias("@example.org")
    assert "@example.org" not in d.owned_addresses("alice@example.com")


# ---- another writer: the CLI while a server reads, or another node -------------------


def test_a_server_follows_another_writer(impl: Impl) -> None:
    """Lookups follow within moments; a login counts the change at once."""
    server = impl.open(server=True)
    cli = impl.open()
    assert server.domains() == []
    generation = server.generation
    cli.add_domain("example.com")
    assert eventually(lambda: server.is_local_domain("example.com"))
    assert server.generation > generation  # per-account caches elsewhere start over
    cli.add_user("alice@example.com", SECRET)
    # At once, without waiting: a login asks whether the view is current.
    assert server.verify_password("alice@example.com", SECRET) == "alice@example.com"
    cli.add_alias("info@example.com", "alice@example.com")
    assert eventually(
        lambda: server.resolve("info@example.com") == Resolution("alice@example.com", (), None)
    )
    assert server.may_send_as("alice@example.com", "info@example.com")
    cli.set_password("alice@example.com", "changed")
    assert server.verify_password("alice@example.com", SECRET) is None
    assert server.verify_password("alice@example.com", "changed") == "alice@example.com"
    cli.del_alias("info@example.com")
    cli.del_user("alice@example.com")
    assert server.verify_password("alice@example.com", "changed") is None
    assert eventually(lambda: server.resolve("info@example.com") is None)
    assert not server.user_exists("alice@example.com")


def test_one_look_holds_one_view_and_the_next_lookup_sees_a_deletion(tmp_path: Path) -> None:
    """An SMTP command's lookups share one look at the database; a user another process
    deletes is refused from the next lookup on, without waiting (recheck 0)."""
    path = tmp_path / "data" / "directory.db"
    server = SqliteDirectory(path, passwords=PasswordScheme(FAST))  # the server's default
    cli = SqliteDirectory(path, passwords=PasswordScheme(FAST))
    try:
        cli.add_domain("example.com")
        cli.add_user("alice@example.com", SECRET)
        cli.add_user("bob@example.com", SECRET)
        with server.one_look():
            assert server.is_local_domain("example.com")
            cli.del_user("alice@example.com")
            # one view for the whole look: as when it began
            assert server.resolve("alice@example.com") is not None
            seen: list[object] = []
            other = threading.Thread(
                target=lambda: seen.append(server.resolve("alice@example.com"))
            )
            other.start()
            other.join()
            assert seen == [None]  # another thread is not inside this look
        assert server.resolve("alice@example.com") is None  # at once after the look
        cli.del_user("bob@example.com")
        assert not server.user_exists("bob@example.com")  # and without a look, at once
        with server.one_look():
            assert server.resolve("bob@example.com") is None
    finally:
        server.close()
        cli.close()


def test_concurrent_readers_and_writer(impl: Impl) -> None:
    server = impl.open(server=True)
    cli = impl.open()
    cli.add_domain("example.com")
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                server.resolve("u5@example.com")
                server.users()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            cli.add_user(f"u{i}@example.com", "pw")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert eventually(lambda: len(server.users()) == 10)
    assert server.resolve("u5@example.com") == Resolution("u5@example.com", (), None)


def test_two_writers_never_break_the_rules(impl: Impl) -> None:
    """Preconditions are checked inside the write: of two racing adds, one wins."""
    first, second = impl.open(), impl.open()
    first.add_domain("example.com")
    outcomes: list[str] = []

    def add(d: Directory, address: str) -> None:
        try:
            if address.startswith("u"):
                d.add_user(address, "pw")
            else:
                d.add_alias(address.removeprefix("a:"), "x@remote.example")
            outcomes.append("ok")
        except DirectoryError as exc:
            outcomes.append(str(exc))

    for i in range(5):
        name = f"u{i}@example.com"
        threads = [
            threading.Thread(target=add, args=(first, name)),
            threading.Thread(target=add, args=(second, "a:" + name)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes.count("ok") == 5, outcomes
    users = {a for (a,) in impl.rows("SELECT address FROM users")}
    aliases = {a for (a,) in impl.rows("SELECT alias FROM aliases")}
    assert not users & aliases and len(users | aliases) == 5


# ---- remembered logins --------------------------------------------------------------


class _CountingScheme(PasswordScheme):
    def __init__(self) -> None:
        super().__init__(FAST)
        self.verifications = 0

    def verify(self, encoded_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(encoded_hash, password)


def test_remembered_logins_skip_argon2_until_the_password_changes(impl: Impl) -> None:
    scheme = _CountingScheme()
    d = impl.open(passwords=scheme, remember_logins=60)
    d.add_domain("example.com")
    d.add_user("alice@example.com", SECRET)
    assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
    assert d.verify_password("Alice@Example.com", SECRET) == "alice@example.com"
    assert scheme.verifications == 1  # the second login was remembered
    assert d.verify_password("alice@example.com", "wrong password") is None
    assert scheme.verifications == 2  # failures are never remembered
    d.set_password("alice@example.com", "a new long passphrase")
    assert d.verify_password("alice@example.com", SECRET) is None
    assert d.verify_password("alice@example.com", "a new long passphrase") == "alice@example.com"
    d.del_user("alice@example.com")
    assert d.verify_password("alice@example.com", "a new long passphrase") is None


def test_a_remembered_login_ends_when_another_writer_changes_the_password(impl: Impl) -> None:
    scheme = _CountingScheme()
    server = impl.open(server=True, passwords=scheme, remember_logins=60)
    cli = impl.open()
    cli.add_domain("example.com")
    cli.add_user("alice@example.com", SECRET)
    assert server.verify_password("alice@example.com", SECRET) == "alice@example.com"
    cli.set_password("alice@example.com", "a new long passphrase")
    assert server.verify_password("alice@example.com", SECRET) is None
    cli.del_user("alice@example.com")
    assert server.verify_password("alice@example.com", "a new long passphrase") is None


def test_remembering_is_off_when_ttl_is_zero(impl: Impl) -> None:
    scheme = _CountingScheme()
    d = impl.open(passwords=scheme)
    d.add_domain("example.com")
    d.add_user("alice@example.com", SECRET)
    for _ in range(3):
        assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
    assert scheme.verifications == 3


# ---- DKIM keys ----------------------------------------------------------------------


def test_dkim_keys_are_created_rotated_and_seen_by_another_process(impl: Impl) -> None:
    server = impl.open(server=True)
    cli = impl.open()
    cli.add_domain("example.org")
    before = server.dkim.version()
    first = ensure_domain_keys(cli.dkim, "Example.ORG")
    assert sorted(k.selector[:2] for k in first) == ["ed", "rs"]
    again = ensure_domain_keys(cli.dkim, "example.org")  # idempotent
    assert [k.selector for k in again] == [k.selector for k in first]
    assert eventually(lambda: server.dkim.version() != before)
    assert [k.selector for k in load_domain_keys(server.dkim, "example.org")] == [
        k.selector for k in first
    ]
    rotated = rotate_keys(cli.dkim, "example.org")
    assert len(rotated) == 4
    assert [k.retired for k in rotated] == [False, False, True, True]  # newest first
    assert {k.selector for k in rotated[2:]} == {k.selector for k in first}
    assert eventually(lambda: len(load_domain_keys(server.dkim, "example.org")) == 4)
    signer = load_signer(server.dkim, ["example.org"])["example.org"]
    assert {k.selector for k in signer.keys} == {k.selector for k in rotated[:2]}
    assert load_domain_keys(server.dkim, "example.net") == []


# ---- SCRAM verifiers (RFC 5802 §3) ---------------------------------------------------


def _scram_proves(verifier: ScramVerifier, password: str) -> bool:
    """The verifier is the one ``password`` gives with its salt and count."""
    again = make_verifier(verifier.family, password, verifier.iterations, verifier.salt)
    return again == verifier


def test_scram_verifiers_are_set_with_the_password(populated: Directory, impl: Impl) -> None:
    d = populated
    sha256 = d.scram_verifier("ALICE@example.com", "SCRAM-SHA-256")
    sha1 = d.scram_verifier("alice@example.com", "SCRAM-SHA-1")
    assert sha256 is not None and sha256.iterations == 8192 and _scram_proves(sha256, SECRET)
    assert sha1 is not None and sha1.iterations == 4096 and _scram_proves(sha1, SECRET)
    assert d.scram_verifier("nobody@example.com", "SCRAM-SHA-256") is None
    assert d.scram_verifier("alice@example.com", "SCRAM-MD5") is None
    d.set_password("alice@example.com", "a new secret")
    changed = d.scram_verifier("alice@example.com", "SCRAM-SHA-256")
    assert changed is not None and changed.salt != sha256.salt
    assert _scram_proves(changed, "a new secret") and not _scram_proves(changed, SECRET)
    assert not any(SECRET in str(row) for row in impl.rows("SELECT scram FROM users"))
    d.del_user("alice@example.com")
    assert d.scram_verifier("alice@example.com", "SCRAM-SHA-256") is None


def _forget_scram(impl: Impl) -> None:
    """Drop every verifier behind the directory's back, as before SCRAM existed."""
    if impl.name == "sqlite":
        with sqlite3.connect(impl.path) as conn:
            conn.execute("UPDATE users SET scram = ''")
        return
    import psycopg

    with psycopg.connect(impl.url) as conn:
        conn.execute("UPDATE users SET scram = ''")


def test_scram_verifiers_come_at_the_next_login(impl: Impl) -> None:
    """Accounts made before SCRAM (no verifiers) get them at a successful password login,
    and so do accounts whose iteration counts are no longer the configured ones."""
    with impl.open() as d:
        d.add_domain("example.com")
        d.add_user("alice@example.com", SECRET)
    _forget_scram(impl)
    with impl.open(scram_iterations={"SCRAM-SHA-1": 5000, "SCRAM-SHA-256": 9000}) as d:
        assert d.scram_verifier("alice@example.com", "SCRAM-SHA-256") is None
        assert d.verify_password("alice@example.com", "wrong") is None
        assert impl.rows("SELECT scram FROM users") == [("",)]  # not on a failure
        assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
        got = d.scram_verifier("alice@example.com", "SCRAM-SHA-256")
        assert got is not None and got.iterations == 9000 and _scram_proves(got, SECRET)
        sha1 = d.scram_verifier("alice@example.com", "SCRAM-SHA-1")
        assert sha1 is not None and sha1.iterations == 5000
    with impl.open() as d:  # back to the defaults: upgraded again at the next login
        assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
        got = d.scram_verifier("alice@example.com", "SCRAM-SHA-256")
        assert got is not None and got.iterations == 8192


def test_password_without_saslprep_form_has_no_verifiers(directory: Directory) -> None:
    """A password SASLprep refuses (RFC 4013 §2.3, a control character) logs in with
    PLAIN only."""
    directory.add_domain("example.com")
    directory.add_user("alice@example.com", "bell\x07password")
    assert directory.scram_verifier("alice@example.com", "SCRAM-SHA-256") is None
    assert directory.verify_password("alice@example.com", "bell\x07password")


def test_sqlite_schema_2_gains_the_scram_column(tmp_path: Path) -> None:
    path = tmp_path / "directory.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE domains (name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE users (address TEXT PRIMARY KEY NOT NULL,"
        " domain TEXT NOT NULL REFERENCES domains(name), password_hash TEXT NOT NULL,"
        " admin INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
        "CREATE TABLE aliases (alias TEXT PRIMARY KEY NOT NULL,"
        " domain TEXT NOT NULL REFERENCES domains(name), target TEXT NOT NULL) WITHOUT ROWID;"
        "PRAGMA user_version = 2;"
    )
    conn.execute("INSERT INTO domains VALUES ('example.com')")
    hashed = PasswordScheme(FAST).hash(SECRET)
    conn.execute("INSERT INTO users VALUES ('alice@example.com', 'example.com', ?, 0)", (hashed,))
    conn.commit()
    conn.close()
    with SqliteDirectory(path, passwords=PasswordScheme(FAST)) as d:
        assert d.scram_verifier("alice@example.com", "SCRAM-SHA-256") is None
        assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
        assert d.scram_verifier("alice@example.com", "SCRAM-SHA-256") is not None


def test_a_file_key_rotation_shows_to_servers_only_when_complete(tmp_path: Path) -> None:
    """A server watching the key files never loads a rotation halfway (new keys written,
    old ones not yet marked retired): what it watches moves once, when it is complete."""
    from correo.directory.dkim_files import FileKeyStore

    keys = FileKeyStore(tmp_path)
    first = ensure_domain_keys(keys, "example.org")
    stamped = keys.version()
    folder = keys.folder("example.org")
    (folder / "extra.key").write_bytes(b"a new key")  # a rotation's first write
    (folder / f"{first[1].selector}.retired").write_text("retired\n")
    assert keys.version() == stamped
    (folder / "extra.key").unlink()
    (folder / f"{first[1].selector}.retired").unlink()
    rotate_keys(keys, "example.org")
    assert keys.version() != stamped
