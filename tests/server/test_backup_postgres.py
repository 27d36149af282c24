"""``correo backup`` and ``verify`` with the mail in PostgreSQL (a private cluster).

The backup is ``pg_dump`` of the shared database plus the data folder's own files; the
restore loads the dump into a new database and serves the backup folder pointed at it.
"""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Server, correo
from tests.pg import PgCluster
from tests.server.helpers import mailbox, wait_count

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")
pytestmark = pytest.mark.skipif(
    shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
    reason="pg_dump and pg_restore are not installed (Debian: postgresql-client)",
)

ALICE = "alice@example.test"
LINE = "y" * 70 + "\r\n"
BIG = LINE * (600 * 1024 // len(LINE))  # stored in 256 KiB chunks


def node(data: Path, url: str) -> Server:
    from tests.server.test_postgres_store import pg_node

    return pg_node(data, url)


def test_backup_dumps_the_database_and_verify_checks_it(
    pg_cluster: PgCluster, pg_url: str, tmp_path: Path
) -> None:
    srv = node(tmp_path / "node", pg_url)
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as smtp:
            for n, text in enumerate((LINE * 4, BIG)):
                smtp.sendmail(
                    "far@remote.test",
                    [ALICE],
                    f"From: far@remote.test\r\nSubject: pg-{n}\r\n\r\n{text}",
                )
        assert wait_count(srv.ports["pop3s"], ALICE, 2) == 2
        out = tmp_path / "backup"
        made = correo(srv.data, "backup", str(out))
        assert made.returncode == 0, made.stderr
        assert "PostgreSQL" in made.stdout
    finally:
        assert srv.stop() == 0
    manifest = json.loads((out / "backup.json").read_text())
    assert manifest["store"] == "postgresql" and manifest["dump"] == "store.pgdump"
    assert (out / "store.pgdump").is_file() and (out / "correo.toml").is_file()
    assert pg_url not in (out / "backup.json").read_text()

    # restore: the dump into a new database, the backup folder pointed at it
    restored_url = pg_cluster.new_database()
    loaded = subprocess.run(
        ["pg_restore", "--no-owner", f"--dbname={restored_url}", str(out / "store.pgdump")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    config = (out / "correo.toml").read_text()
    (out / "correo.toml").write_text(re.sub(r'(?m)^url = ".*"$', f'url = "{restored_url}"', config))
    checked = correo(out, "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checked 2 message bodies" in checked.stdout

    restored = Server(out)
    restored.start()
    try:
        got = mailbox(restored.ports["pop3s"], ALICE)
        assert len(got) == 2 and any(BIG.encode() in m + b"\r\n" for m in got)
    finally:
        assert restored.stop() == 0

    with psycopg.connect(restored_url, autocommit=True) as conn:  # one octet of a chunk
        conn.execute(
            "UPDATE blob_chunks SET data = overlay(data PLACING '\\x00'::bytea FROM 100 FOR 1)"
            " WHERE blob_id = (SELECT min(blob_id) FROM blob_chunks) AND seq = 1"
        )
    damaged = correo(out, "verify")
    assert damaged.returncode == 1, damaged.stdout
    problems = [line for line in damaged.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and "SHA-256" in problems[0], damaged.stdout
