"""The web admin flag of users, on both directory implementations: set, cleared, seen by
another handle on the same data, and refused for an unknown user; an old SQLite
directory (schema 1) gains the column."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from correo.directory import Directory, DirectoryError, SqliteDirectory
from tests.directory.test_contract import SECRET, Impl, eventually, impl, populated  # noqa: F401
from tests.directory.test_contract import directory as directory


def test_admin_flag(populated: Directory, impl: Impl) -> None:  # noqa: F811
    d = populated
    assert not d.is_admin("alice@example.com")
    d.set_admin("Alice@Example.com", True)
    assert d.is_admin("alice@example.com") and not d.is_admin("bob@example.com")
    other = impl.open(server=True)  # a running server, in another process or node
    assert eventually(lambda: other.is_admin("alice@example.com"))
    d.set_admin("alice@example.com", False)
    assert not d.is_admin("alice@example.com")
    assert eventually(lambda: not other.is_admin("alice@example.com"))
    with pytest.raises(DirectoryError, match="does not exist"):
        d.set_admin("nobody@example.com", True)
    assert not d.is_admin("not an address")


def test_schema_1_directory_gains_the_flag(tmp_path: Path) -> None:
    path = tmp_path / "directory.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE domains (name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE users (address TEXT PRIMARY KEY NOT NULL,"
        " domain TEXT NOT NULL REFERENCES domains(name),"
        " password_hash TEXT NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE aliases (alias TEXT PRIMARY KEY NOT NULL,"
        " domain TEXT NOT NULL REFERENCES domains(name), target TEXT NOT NULL) WITHOUT ROWID;"
        "INSERT INTO domains VALUES ('example.com');"
        "INSERT INTO users VALUES ('old@example.com', 'example.com', 'x');"
        "PRAGMA user_version = 1;"
    )
    conn.close()
    d = SqliteDirectory(path)
    try:
        assert d.users() == ["old@example.com"] and not d.is_admin("old@example.com")
        d.set_admin("old@example.com", True)
        assert d.is_admin("old@example.com")
    finally:
        d.close()
