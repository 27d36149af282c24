"""Tests for correo.directory: addresses, passwords and the SQLite directory."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.directory import (
    AddressError,
    AddressNormalizer,
    DirectoryError,
    PasswordError,
    PasswordScheme,
    Resolution,
    SqliteDirectory,
)
from correo.directory.addresses import IDNA_BACKEND, domain_to_unicode, normalize_domain
from correo.directory.passwords import check_password
from correo.directory.sqlite import SCHEMA_VERSION
from tests.argon import FAST

SECRET = "correct horse battery staple"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "directory.db"


@pytest.fixture
def directory(db_path: Path) -> Iterator[SqliteDirectory]:
    d = SqliteDirectory(db_path, passwords=PasswordScheme(FAST))
    yield d
    d.close()


@pytest.fixture
def populated(directory: SqliteDirectory) -> SqliteDirectory:
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
    with SqliteDirectory(db_path, passwords=PasswordScheme(FAST)):
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
        SqliteDirectory(db_path)


def test_unopenable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DirectoryError, match="cannot create"):
        SqliteDirectory(blocker / "sub" / "directory.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DirectoryError, match="cannot use"):
        SqliteDirectory(garbage)


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
    with SqliteDirectory(tmp_path / "d.db", passwords=PasswordScheme(medium)) as d:
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


def test_a_raw_sqlite_writer_is_seen(db_path: Path) -> None:
    """A restore script writing with sqlite3 directly is seen by the next lookup."""
    server = SqliteDirectory(db_path, passwords=PasswordScheme(FAST), recheck=0)
    try:
        assert server.domains() == []
        raw = sqlite3.connect(db_path)
        raw.execute("INSERT INTO domains VALUES ('example.org')")
        raw.commit()
        raw.close()
        assert server.domains() == ["example.org"]
    finally:
        server.close()


def test_lookup_is_cheap(populated: SqliteDirectory) -> None:
    """Lookups hit only the in-memory snapshot plus one PRAGMA: well under 1 ms."""
    populated.resolve("alice@example.com")
    start = time.thread_time()  # SQLite runs in this thread: its work counts, waits do not
    for _ in range(2000):
        populated.resolve("alice+x@example.com")
    assert (time.thread_time() - start) / 2000 < 0.001


@pytest.fixture(scope="module")
def fuzz_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteDirectory]:
    d = SqliteDirectory(tmp_path_factory.mktemp("fuzz") / "d.db", passwords=PasswordScheme(FAST))
    d.add_domain("example.com")
    d.add_domain("example.org")
    d.add_user("alice@example.com", "pw")
    d.add_alias("a@example.com", "alice@example.com")
    d.add_alias("@example.org", "a@example.com")
    yield d
    d.close()


@settings(max_examples=200, deadline=None)
@given(address=st.text(max_size=60) | st.from_regex(r"[a-z+]{0,8}@example\.(com|org|net)"))
def test_fuzz_resolve(fuzz_directory: SqliteDirectory, address: str) -> None:
    """Invariant: resolve() of any text returns a Resolution or None and
    may_send_as() a bool; neither raises."""
    res = fuzz_directory.resolve(address)
    assert res is None or isinstance(res, Resolution)
    assert isinstance(fuzz_directory.may_send_as("alice@example.com", address), bool)
