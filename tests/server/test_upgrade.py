"""Every earlier data folder opens, migrates and serves with this correo.

``tests/data/releases/*/data`` are data folders written by earlier commits, one per
store schema (made by ``tests/data/releases/make_fixture.py``): ``correo init``, a
user, one message over SMTP.  Each is copied, given loopback ports (and an IMAP
listener, which the oldest ones predate), served, and read over IMAP with the password
set by the old code; ``correo verify`` then finds the migrated folder sound.
"""

from __future__ import annotations

import imaplib
import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from correo.config import SERVICES
from correo.store.sqlite import _SCHEMA_VERSION as SCHEMA
from tests.conftest import Server, client_tls, correo, quiet_dns

RELEASES = Path(__file__).resolve().parents[1] / "data" / "releases"
FIXTURES = sorted(p.name for p in RELEASES.iterdir() if (p / "data" / "correo.toml").is_file())


def to_loopback(data: Path) -> None:
    """Every service on a free loopback port, the ones the old config lacks included."""
    config = (data / "correo.toml").read_text()
    listed = set(re.findall(r"(?m)^(\w+) = \[", config.split("[listen]", 1)[1].split("\n[", 1)[0]))
    config = re.sub(r'"127\.0\.0\.1:\d+"', '"127.0.0.1:0"', config)
    missing = [s for s in SERVICES if s not in listed and s != "lmtp"]
    extra = "".join(f'{s} = ["127.0.0.1:0"]\n' for s in missing)
    config = config.replace("[listen]\n", f"[listen]\n{extra}", 1)
    servers = f'nameservers = ["{quiet_dns()}"]'  # no lookups leave the test
    if re.search(r"(?m)^nameservers = ", config):
        config = re.sub(r"(?m)^nameservers = .*$", servers, config)
    else:
        config += f"\n[dns]\n{servers}\n"
    (data / "correo.toml").write_text(config)


def test_there_is_a_fixture_per_store_schema() -> None:
    assert len(FIXTURES) >= 3, FIXTURES
    versions = set()
    for name in FIXTURES:
        # immutable: a read-only open would still leave -wal and -shm files in the fixture
        db = sqlite3.connect(f"file:{RELEASES / name / 'data/store/mail.db'}?immutable=1", uri=True)
        versions.add(db.execute("PRAGMA user_version").fetchone()[0])
        db.close()
    assert {1, 2, 3} <= versions


@pytest.mark.parametrize("name", FIXTURES)
def test_an_earlier_data_folder_migrates_and_serves(name: str, tmp_path: Path) -> None:
    fixture = json.loads((RELEASES / name / "fixture.json").read_text())
    data = tmp_path / "data"
    shutil.copytree(RELEASES / name / "data", data)
    to_loopback(data)
    srv = Server(data)
    srv.start()
    try:
        client = imaplib.IMAP4_SSL(
            "127.0.0.1", srv.ports["imaps"], ssl_context=client_tls(), timeout=10
        )
        client.login(fixture["user"], fixture["password"])
        status, count = client.select("INBOX")
        assert status == "OK" and count == [b"1"], count
        status, parts = client.fetch("1", "(BODY[] BODYSTRUCTURE ENVELOPE)")
        assert status == "OK", parts
        first = parts[0]
        assert isinstance(first, tuple)
        text = first[1]
        assert f"Subject: {fixture['subject']}".encode() in text
        assert f"The body, from {fixture['commit'][:7]}".encode() in text
        status, found = client.search(None, "TEXT", '"before the upgrade"')
        assert status == "OK" and found == [b"1"], found  # SEARCH on the migrated index
        client.logout()
    finally:
        assert srv.stop() == 0
    db = sqlite3.connect(data / "store" / "mail.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA  # migrated in place
    db.close()
    checked = correo(data, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
