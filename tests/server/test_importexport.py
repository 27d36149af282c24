"""Server-side import/export: thousands of messages, idempotent reruns, exact round trips."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from correo.mua.mailfile import MaildirWriter, MboxWriter
from correo.store.sqlite import SqliteStore
from tests.conftest import PASSWORDS, client_tls, make_data_dir

# Each test runs a dozen CLI processes (two data folders made with users' password
# hashes, imports and exports of thousands of messages): on a loaded two-core machine
# that outlasts the suite's default 120 s, which is a hang detector, not a budget.
pytestmark = pytest.mark.timeout(600)

USER = "alice@example.test"
BASE = 1_600_000_000.0


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sample(i: int) -> bytes:
    """Varied messages: From-lines in bodies, non-ASCII, empty bodies, multipart."""
    body = [b"Subject: message %d\r\nFrom: Sender <s%d@example.org>\r\n" % (i, i % 7)]
    body.append(b"Message-ID: <%d@example.org>\r\n" % i)
    if i % 5 == 0:
        body.append(
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\npart\r\n--b--\r\n"
        )
    elif i % 5 == 1:
        body.append(b"\r\nFrom the start\r\n>From quoted\r\n\r\n")
    elif i % 5 == 2:
        body.append(b"\r\n")
    else:
        body.append("\r\nsé %d\r\n".encode() % i * (1 + i % 3))
    return b"".join(body)


FLAG_SETS: list[tuple[str, ...]] = [
    (),
    ("\\Seen",),
    ("\\Seen", "\\Answered"),
    ("\\Flagged", "$Work"),
    ("\\Draft",),
    ("\\Deleted", "\\Seen"),
]


async def snapshot(data: Path) -> dict[str, list[tuple[bytes, tuple[str, ...], int]]]:
    store = SqliteStore(data / "store")
    await store.open()
    try:
        out = {}
        for box in await store.list_mailboxes(USER):
            rows = []
            for info in await store.list_messages(USER, box.name):
                raw = b"".join([c async for c in store.read_message(USER, box.name, info.uid)])
                rows.append((raw, tuple(sorted(info.flags)), int(info.internal_date)))
            if rows:
                out[box.name] = sorted(rows)
        return out
    finally:
        await store.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    make_data_dir(d)
    return d


def test_mbox_import_thousands_rerun_then_export_reimport(data: Path, tmp_path: Path) -> None:
    n = 2000
    mbox = tmp_path / "in.mbox"
    writer = MboxWriter(mbox)
    for i in range(n):
        writer.add([sample(i)], FLAG_SETS[i % len(FLAG_SETS)], BASE + i * 60)
    writer.close()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = cli(data, "import", "--user", USER, "--mbox", str(mbox), "--folder", "Archive")
    assert r.returncode == 0, r.stderr
    assert f"imported {n} message(s)" in r.stdout
    # The import's own CPU seconds (about 2): a loaded machine stretches its wall time
    # past 20 s, while work that grew with the square of the count would still show.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert cpu < 25, cpu
    r = cli(data, "import", "--user", USER, "--mbox", str(mbox), "--folder", "Archive")
    assert r.returncode == 0 and "imported 0 message(s)" in r.stdout and f"skipped {n}" in r.stdout
    first = asyncio.run(snapshot(data))
    archive = first["Archive"]
    assert len(archive) == n
    assert (sample(1), (), int(BASE + 60)) not in archive  # flags carried:
    assert (sample(1), ("\\Seen",), int(BASE + 60)) in archive
    assert (sample(3), ("$Work", "\\Flagged"), int(BASE + 180)) in archive

    out = tmp_path / "export"
    r = cli(data, "export", "--user", USER, "--mbox", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "Archive.mbox").exists()
    fresh = tmp_path / "fresh"
    make_data_dir(fresh)
    r = cli(fresh, "import", "--user", USER, "--mbox", str(out))
    assert r.returncode == 0, r.stderr
    assert asyncio.run(snapshot(fresh)) == first


def test_maildir_import_keywords_dates_subfolders_and_round_trip(
    data: Path, tmp_path: Path
) -> None:
    n = 1500
    root = tmp_path / "Maildir"
    inbox = MaildirWriter(root)
    sent = MaildirWriter(MaildirWriter.folder(root, "Sent"))
    for i in range(n):
        (inbox if i % 3 else sent).add([sample(i)], FLAG_SETS[i % len(FLAG_SETS)], BASE + i)
    inbox.sync()
    sent.sync()
    # a message delivered by an MTA into new/ (no info, LF line ends)
    (root / "new" / f"{int(BASE)}.M1P1.host").write_bytes(b"Subject: new\n\nfresh\n")
    os.utime(root / "new" / f"{int(BASE)}.M1P1.host", (BASE - 5, BASE - 5))
    assert (root / ".Sent" / "dovecot-keywords").read_text() == "0 $Work\n"
    r = cli(data, "import", "--user", USER, "--maildir", str(root))
    assert r.returncode == 0, r.stderr
    assert f"imported {n + 1} message(s)" in r.stdout
    r = cli(data, "import", "--user", USER, "--maildir", str(root))
    assert "imported 0 message(s)" in r.stdout
    first = asyncio.run(snapshot(data))
    assert sum(len(v) for v in first.values()) == n + 1
    assert (b"Subject: new\r\n\r\nfresh\r\n", (), int(BASE - 5)) in first["INBOX"]
    assert (sample(0), (), int(BASE)) in first["Sent"]
    assert (sample(3), ("$Work", "\\Flagged"), int(BASE + 3)) in first["Sent"]
    assert (sample(1), ("\\Seen",), int(BASE + 1)) in first["INBOX"]

    out = tmp_path / "exported"
    r = cli(data, "export", "--user", USER, "--maildir", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / ".Sent" / "cur").is_dir()
    r = cli(data, "export", "--user", USER, "--maildir", str(out))
    assert r.returncode == 2 and "already holds messages" in r.stderr
    fresh = tmp_path / "fresh"
    make_data_dir(fresh)
    r = cli(fresh, "import", "--user", USER, "--maildir", str(out))
    assert r.returncode == 0, r.stderr
    assert asyncio.run(snapshot(fresh)) == first


def test_import_while_server_runs_is_visible_over_imap(
    start_server: object, tmp_path: Path
) -> None:
    import imaplib

    srv = start_server()  # type: ignore[operator]
    mbox = tmp_path / "one.mbox"
    writer = MboxWriter(mbox)
    for i in range(20):
        writer.add([sample(i)], ("\\Seen",) if i % 2 else (), BASE + i)
    writer.close()
    r = cli(srv.data, "import", "--user", USER, "--mbox", str(mbox), "--folder", "Old/2020")
    assert r.returncode == 0, r.stderr
    imap = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=client_tls())
    try:
        imap.login(USER, PASSWORDS[USER])
        typ, _ = imap.select('"Old/2020"')
        assert typ == "OK"
        typ, found = imap.uid("SEARCH", "UNSEEN")
        assert len(found[0].split()) == 10
        typ, fetched = imap.uid("FETCH", "1", "(INTERNALDATE ENVELOPE BODY[])")
        meta, body = fetched[0]  # type: ignore[misc]
        assert body == sample(0)
        assert b'"message 0"' in meta and b"2020" in meta
    finally:
        imap.logout()


def test_import_errors_are_reported(data: Path, tmp_path: Path) -> None:
    r = cli(data, "import", "--user", "nobody@example.test", "--mbox", str(tmp_path))
    assert r.returncode == 2 and "no such user" in r.stderr
    r = cli(data, "import", "--user", USER, "--maildir", str(tmp_path / "missing"))
    assert r.returncode == 2 and "not a Maildir" in r.stderr
    r = cli(data, "export", "--user", USER, "--mbox", str(tmp_path / "x"), "--folder", "Nope")
    assert r.returncode == 2 and "no mailbox Nope" in r.stderr
