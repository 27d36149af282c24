"""Tests for correo.directory: addresses, passwords and the SQLite directory."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.directory import (
    AddressError,
    AddressNormalizer,
    Directory,
    DirectoryError,
    PasswordError,
    PasswordScheme,
    Resolution,
)
from correo.directory.addresses import IDNA_BACKEND, domain_to_unicode, normalize_domain
from correo.directory.passwords import check_password
from correo.directory.sqlite import SCHEMA_VERSION

# Cheap parameters so tests that create many users stay fast.
FAST = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=8,
    parallelism=1,
)
SECRET = "correct horse battery staple"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "directory.db"


@pytest.fixture
def directory(db_path: Path) -> Iterator[Directory]:
    d = Directory(db_path, passwords=PasswordScheme(FAST))
    yield d
    d.close()


@pytest.fixture
def populated(directory: Directory) -> Directory:
    directory.add_domain("example.com")
    directory.add_domain("example.org")
    directory.add_user("alice@example.com", SECRET)
    directory.add_user("bob@example.com", "hunter2")
    return directory


# ---- addresses --------------------------------------------------------------

NORMALISE = [
    ("alice@example.com", "alice@example.com", "alice", None),
    ("Alice@EXAMPLE.Com", "alice@example.com", "alice", None),
    ("alice+news@example.com", "alice+news@example.com", "alice", "news"),
    ("alice+@example.com", "alice+@example.com", "alice", None),
    ("+alice@example.com", "+alice@example.com", "+alice", None),
    ("a+b+c@example.com", "a+b+c@example.com", "a", "b+c"),
    ("jörg@bücher.example", "jörg@xn--bcher-kva.example", "jörg", None),
    ("x@XN--BCHER-KVA.example", "x@xn--bcher-kva.example", "x", None),
    ("x@localhost", "x@localhost", "x", None),
    ("o'brien@example.com", "o'brien@example.com", "o'brien", None),
    ('"quoted"@example.com', '"quoted"@example.com', '"quoted"', None),
]


@pytest.mark.parametrize(("raw", "address", "base", "detail"), NORMALISE)
def test_normalise(raw: str, address: str, base: str, detail: str | None) -> None:
    parsed = AddressNormalizer().parse(raw)
    assert (parsed.address, parsed.base, parsed.detail) == (address, base, detail)
    assert parsed.base_address == f"{base}@{parsed.domain}"


BAD_ADDRESSES = [
    ("", "no '@'"),
    ("alice", "no '@'"),
    ("@example.com", "empty local part"),
    ("alice@", "empty domain"),
    ("al ice@example.com", "spaces or control"),
    ("al\tice@example.com", "spaces or control"),
    ("alice\x00@example.com", "spaces or control"),
    ("alice@exa mple.com", "spaces or control"),
    ("alice@example..com", "invalid label"),
    ("alice@-example.com", "invalid label"),
    ("alice@exa_mple.com", "invalid label"),
    ("alice@example.com.", "invalid label"),
    ("alice@1.2.3.4", "IP address"),
    ("alice@[1.2.3.4]", "address literal"),
    ("alice@xn--zz.example", "A-label"),
    ("a" * 65 + "@example.com", "longer than 64"),
    ("a@" + "b" * 64 + ".com", "invalid label"),
    ("a@" + ".".join(["b" * 60] * 5), "longer than 255"),
    ("a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".cc", "longer than 254"),
    ("a@" + "b" * 2000, "too long"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_ADDRESSES)
def test_bad_addresses(raw: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        AddressNormalizer().parse(raw)


def test_strict_requires_dot_atom() -> None:
    norm = AddressNormalizer()
    for raw in ('"quoted"@example.com', "a..b@example.com", ".a@example.com", "a<b@example.com"):
        with pytest.raises(AddressError, match="dot-atom"):
            norm.parse(raw, strict=True)
    assert norm.parse("jörg.o'brien@example.com", strict=True).local == "jörg.o'brien"


def test_delimiter_configurable() -> None:
    assert AddressNormalizer("").parse("a+b@x.example").detail is None
    dash = AddressNormalizer("-+")
    assert dash.parse("a-b@x.example").base == "a"
    assert dash.parse("a+b-c@x.example").detail == "b-c"
    for bad in ("@", ".", " "):
        with pytest.raises(ValueError, match="delimiter"):
            AddressNormalizer(bad)


def test_idna() -> None:
    assert IDNA_BACKEND in {"idna", "stdlib"}
    assert normalize_domain("BÜCHER.example") == "xn--bcher-kva.example"
    assert domain_to_unicode("xn--bcher-kva.example") == "bücher.example"
    assert domain_to_unicode("not..valid") == "not..valid"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9+.\-]{1,20}@[a-zA-Z0-9.\-ü]{1,30}"))
def test_fuzz_normaliser(raw: str) -> None:
    """Invariant: any text yields a ParsedAddress or AddressError, never another
    exception; a normalised address is a fixed point (normalising it again
    gives the same result). (Not a stream parser, so there is no byte-by-byte
    feeding to compare.)"""
    norm = AddressNormalizer()
    try:
        parsed = norm.parse(raw)
    except AddressError:
        return
    assert norm.parse(parsed.address) == parsed
    assert parsed.address == parsed.address.lower()


# ---- passwords --------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "empty"),
        ("a\x00b", "NUL"),
        ("x" * 1025, "longer than 1024"),
        ("é" * 513, "longer than 1024"),
        ("\udcff", "Unicode"),
    ],
)
def test_bad_passwords(password: str, message: str) -> None:
    with pytest.raises(PasswordError, match=message) as info:
        check_password(password)
    if len(password) > 2:
        assert password not in str(info.value)


def test_password_scheme() -> None:
    scheme = PasswordScheme(FAST)
    encoded = scheme.hash(SECRET)
    assert encoded.startswith("$argon2id$")
    assert scheme.verify(encoded, SECRET)
    assert not scheme.verify(encoded, "wrong")
    assert not scheme.verify(encoded, "")
    assert not scheme.verify("not a hash", SECRET)
    assert not scheme.needs_rehash(encoded)
    assert scheme.needs_rehash("not a hash")
    assert PasswordScheme().needs_rehash(encoded)  # default parameters are stronger
    assert "m=8" in repr(scheme)
    scheme.dummy_verify(SECRET)  # no exception, no result


# ---- directory: schema and files -------------------------------------------


def test_schema_and_pragmas(db_path: Path) -> None:
    with Directory(db_path, passwords=PasswordScheme(FAST)):
        pass
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"domains", "users", "aliases"} <= tables
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(DirectoryError, match="upgrade correo"):
        Directory(db_path)


def test_unopenable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DirectoryError, match="cannot create"):
        Directory(blocker / "sub" / "directory.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DirectoryError, match="cannot use"):
        Directory(garbage)


def test_closed(directory: Directory) -> None:
    directory.close()
    directory.close()  # idempotent
    with pytest.raises(DirectoryError, match="closed"):
        directory.domains()
    with pytest.raises(DirectoryError, match="closed"):
        directory.add_domain("example.com")


# ---- domains ----------------------------------------------------------------


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


# ---- users ------------------------------------------------------------------


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


def test_rehash_on_login(db_path: Path) -> None:
    with Directory(db_path, passwords=PasswordScheme(FAST)) as old:
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
        conn = sqlite3.connect(db_path)
        try:
            return str(conn.execute("SELECT password_hash FROM users").fetchone()[0])
        finally:
            conn.close()

    with Directory(db_path, passwords=PasswordScheme(stronger)) as new:
        assert "t=1" in stored()
        assert new.verify_password("alice@example.com", "wrong") is None
        assert "t=1" in stored()  # no rehash on failure
        assert new.verify_password("alice@example.com", SECRET) == "alice@example.com"
        assert "t=2,p=1" in stored() and "m=16" in stored()
        assert new.verify_password("alice@example.com", SECRET) == "alice@example.com"


def test_unknown_user_timing(tmp_path: Path) -> None:
    """An unknown user costs about one real verify, so timing reveals no accounts.

    Medium-cost parameters (~10 ms) keep a clear signal against a dict lookup
    while staying quick; samples are interleaved and the minimum taken, which
    resists noise from other processes on a loaded machine.
    """
    medium = argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=2,
        memory_cost=8192,
        parallelism=1,
    )
    with Directory(tmp_path / "d.db", passwords=PasswordScheme(medium)) as d:
        d.add_domain("example.com")
        d.add_user("alice@example.com", SECRET)
        d.verify_password("nobody@example.com", "x")  # warm: builds the dummy hash

        def timed(address: str) -> float:
            start = time.perf_counter()
            assert d.verify_password(address, "wrong password") is None
            return time.perf_counter() - start

        samples: dict[str, list[float]] = {"known": [], "unknown": [], "other": []}
        for _ in range(7):
            samples["known"].append(timed("alice@example.com"))
            samples["unknown"].append(timed("nobody@example.com"))
            samples["other"].append(timed("nobody@elsewhere.example"))
    known = min(samples["known"])
    assert min(samples["unknown"]) / known > 0.3
    assert min(samples["other"]) / known > 0.3


def test_no_password_leaks(populated: Directory, db_path: Path) -> None:
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
    assert SECRET.encode() not in db_path.read_bytes()


# ---- aliases and resolution -------------------------------------------------


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


# ---- concurrency: the CLI writes while the server reads --------------------


def test_reload_after_other_connection_writes(db_path: Path) -> None:
    server = Directory(db_path, passwords=PasswordScheme(FAST), recheck=0)
    cli = Directory(db_path, passwords=PasswordScheme(FAST), recheck=0)
    try:
        assert server.domains() == []
        cli.add_domain("example.com")
        assert server.is_local_domain("example.com")
        cli.add_user("alice@example.com", SECRET)
        assert server.verify_password("alice@example.com", SECRET) == "alice@example.com"
        cli.add_alias("info@example.com", "alice@example.com")
        assert server.resolve("info@example.com") == Resolution("alice@example.com", (), None)
        assert server.may_send_as("alice@example.com", "info@example.com")
        cli.set_password("alice@example.com", "changed")
        assert server.verify_password("alice@example.com", SECRET) is None
        cli.del_alias("info@example.com")
        cli.del_user("alice@example.com")
        assert server.resolve("info@example.com") is None
        assert not server.user_exists("alice@example.com")
        # A raw sqlite3 writer (e.g. a restore script) is seen too.
        raw = sqlite3.connect(db_path)
        raw.execute("INSERT INTO domains VALUES ('example.org')")
        raw.commit()
        raw.close()
        assert server.domains() == ["example.com", "example.org"]
    finally:
        server.close()
        cli.close()


def test_concurrent_readers_and_writer(db_path: Path) -> None:
    server = Directory(db_path, passwords=PasswordScheme(FAST), recheck=0)
    cli = Directory(db_path, passwords=PasswordScheme(FAST), recheck=0)
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
    assert len(server.users()) == 10
    assert server.resolve("u5@example.com") == Resolution("u5@example.com", (), None)
    server.close()
    cli.close()


def test_lookup_is_cheap(populated: Directory) -> None:
    """Lookups hit only the in-memory snapshot plus one PRAGMA: well under 1 ms."""
    populated.resolve("alice@example.com")
    start = time.perf_counter()
    for _ in range(2000):
        populated.resolve("alice+x@example.com")
    assert (time.perf_counter() - start) / 2000 < 0.001


@pytest.fixture(scope="module")
def fuzz_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    d = Directory(tmp_path_factory.mktemp("fuzz") / "d.db", passwords=PasswordScheme(FAST))
    d.add_domain("example.com")
    d.add_domain("example.org")
    d.add_user("alice@example.com", "pw")
    d.add_alias("a@example.com", "alice@example.com")
    d.add_alias("@example.org", "a@example.com")
    yield d
    d.close()


@settings(max_examples=200, deadline=None)
@given(address=st.text(max_size=60) | st.from_regex(r"[a-z+]{0,8}@example\.(com|org|net)"))
def test_fuzz_resolve(fuzz_directory: Directory, address: str) -> None:
    """Invariant: resolve() of any text returns a Resolution or None and
    may_send_as() a bool; neither raises."""
    res = fuzz_directory.resolve(address)
    assert res is None or isinstance(res, Resolution)
    assert isinstance(fuzz_directory.may_send_as("alice@example.com", address), bool)


class _CountingScheme(PasswordScheme):
    def __init__(self) -> None:
        super().__init__(FAST)
        self.verifications = 0

    def verify(self, encoded_hash: str, password: str) -> bool:
        self.verifications += 1
        return super().verify(encoded_hash, password)


def test_remembered_logins_skip_argon2_until_the_password_changes(db_path: Path) -> None:
    scheme = _CountingScheme()
    d = Directory(db_path, passwords=scheme, remember_logins=60)
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
    d.close()


def test_remembering_is_off_when_ttl_is_zero(db_path: Path) -> None:
    scheme = _CountingScheme()
    d = Directory(db_path, passwords=scheme)
    d.add_domain("example.com")
    d.add_user("alice@example.com", SECRET)
    for _ in range(3):
        assert d.verify_password("alice@example.com", SECRET) == "alice@example.com"
    assert scheme.verifications == 3
    d.close()
