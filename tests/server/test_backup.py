"""``correo backup`` while SMTP load runs, ``correo verify``, and serving the copy.

A sender thread records the moment each message got its 250; a second thread makes the
server delete message files meanwhile (POP3 DELE of large messages), so the backup
races both additions and removals.  Every message acknowledged before the backup began
must be in the copy, which a server started on it serves over POP3.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Server, correo
from tests.server.helpers import pop3

ALICE = "alice@example.test"
BOB = "bob@example.test"
BIG = 300 * 1024  # above the store's 256 KiB spool memory: kept as a file of its own


def body(n: int) -> str:
    size = BIG if n % 4 == 0 else 2000
    line = f"message {n} " + "x" * 60 + "\r\n"
    return (line * (size // len(line) + 1))[:size]


def mail(n: int, to: str) -> str:
    return (
        f"From: load@remote.test\r\nTo: {to}\r\nSubject: load-{n}\r\n"
        f"Message-ID: <load-{n}@remote.test>\r\n\r\n{body(n)}"
    )


class Load:
    """SMTP to alice (each 250 timed) and, beside it, large mail to bob deleted at once."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.stop = threading.Event()
        self.acked: list[tuple[int, float]] = []
        self.deleted = 0
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._guard(self._send), daemon=True),
            threading.Thread(target=self._guard(self._churn), daemon=True),
        ]

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # reported by finish()
                self.errors.append(exc)

        return run

    def _send(self) -> None:
        n = 0
        with smtplib.SMTP("127.0.0.1", self.srv.ports["smtp"], timeout=30) as smtp:
            while not self.stop.is_set():
                smtp.sendmail("load@remote.test", [ALICE], mail(n, ALICE))
                self.acked.append((n, time.monotonic()))  # after the 250
                n += 1

    def _churn(self) -> None:
        n = 100_000
        while not self.stop.is_set():
            with smtplib.SMTP("127.0.0.1", self.srv.ports["smtp"], timeout=30) as smtp:
                smtp.sendmail("load@remote.test", [BOB], mail(n * 4, BOB))
            n += 1
            client = pop3(self.srv.ports["pop3s"], BOB)
            count, _ = client.stat()
            for i in range(count):
                client.dele(i + 1)
            client.quit()
            self.deleted += count

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait_for(self, acked: int, deleted: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < acked or self.deleted < deleted:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, "the load did not get going"
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not self.errors, self.errors


def subjects(port: int, user: str) -> dict[str, int]:
    """Subject -> POP3 message number, from the headers only (TOP n 0)."""
    client = pop3(port, user)
    try:
        count, _ = client.stat()
        found = {}
        for i in range(1, count + 1):
            for line in client.top(i, 0)[1]:
                if line.startswith(b"Subject: "):
                    found[line[9:].decode()] = i
        return found
    finally:
        client.quit()


def retr_body(port: int, user: str, number: int) -> bytes:
    client = pop3(port, user)
    try:
        lines = client.retr(number)[1]
    finally:
        client.quit()
    text = b"\r\n".join(lines) + b"\r\n"
    return text.split(b"\r\n\r\n", 1)[1]


def flip_byte(path: Path, offset: int = 1000) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_backup_under_smtp_load_holds_every_acknowledged_message(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = start_server()
    load = Load(srv)
    load.start()
    try:
        load.wait_for(acked=12, deleted=2)
        began = time.monotonic()
        linked = correo(srv.data, "backup", str(tmp_path / "linked"))
        assert linked.returncode == 0, linked.stderr
        copied = correo(srv.data, "backup", "--copy", str(tmp_path / "copied"))
        assert copied.returncode == 0, copied.stderr
        load.wait_for(acked=len(load.acked) + 3, deleted=load.deleted + 1)  # still serving
    finally:
        load.finish()
    before = [n for n, at in load.acked if at < began]
    assert len(before) >= 12
    assert "message file(s) hard-linked" in linked.stdout

    for name in ("linked", "copied"):
        out = tmp_path / name
        manifest = json.loads((out / "backup.json").read_text())
        assert manifest["store"] == "sqlite"
        files = sorted((out / "store" / "blobs").rglob("*"))
        files = [f for f in files if f.is_file()]
        assert files, "the large messages are files"
        if name == "linked":
            assert manifest["blobs"]["linked"] > 0
        else:
            assert all(f.stat().st_nlink == 1 for f in files)  # copies, not links
        checked = correo(out, "verify")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "no problems found" in checked.stdout

    srv.stop()
    restored = Server(tmp_path / "linked")
    restored.start()
    try:
        have = subjects(restored.ports["pop3s"], ALICE)
        missing = [n for n in before if f"load-{n}" not in have]
        assert not missing, f"acknowledged before the backup, not in it: {missing}"
        big = next(n for n in before if n % 4 == 0)
        assert (
            retr_body(restored.ports["pop3s"], ALICE, have[f"load-{big}"])
            == body(big).encode() + b"\r\n"
        )
    finally:
        assert restored.stop() == 0


def test_verify_reports_a_corrupt_a_missing_and_a_changed_body(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = start_server()
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=30) as smtp:
        for n in range(8):
            smtp.sendmail("load@remote.test", [ALICE], mail(n, ALICE))
    out = tmp_path / "backup"
    made = correo(srv.data, "backup", "--copy", str(out))
    assert made.returncode == 0, made.stderr
    assert correo(out, "verify").returncode == 0

    corrupt, gone = sorted(f for f in (out / "store" / "blobs").rglob("*") if f.is_file())[:2]
    flip_byte(corrupt)
    gone.unlink()
    db = sqlite3.connect(out / "store" / "mail.db")
    (inline,) = db.execute("SELECT min(id) FROM blobs WHERE path IS NULL").fetchone()
    with db:  # one octet of an inline body changed, its size kept
        db.execute(
            "UPDATE blobs SET data = CAST(replace(CAST(data AS TEXT), 'Subject: load-',"
            " 'Subject: LOAD-') AS BLOB) WHERE id = ?",
            (inline,),
        )
    db.close()

    checked = correo(out, "verify")
    assert checked.returncode == 1, checked.stdout
    lines = checked.stdout.splitlines()
    problems = [line for line in lines if line.startswith("problem:")]
    assert len(problems) == 3, checked.stdout
    assert any(corrupt.name in p and "SHA-256" in p for p in problems), problems
    assert any(gone.name in p and "missing" in p for p in problems), problems
    assert any(f"body {inline} " in p and "in mail.db" in p for p in problems), problems
    assert all(f"{ALICE} INBOX UID" in p for p in problems), problems  # which mail it hurts
    assert "Traceback" not in checked.stderr


def test_backup_refuses_an_existing_folder_and_one_inside_the_data(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    srv = start_server()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    for target in (taken, srv.data / "backup"):
        r = correo(srv.data, "backup", str(target))
        assert r.returncode == 2, r.stdout
        assert r.stderr.startswith("correo: ") and "Traceback" not in r.stderr
    assert (taken / "x").read_text() == "keep me"
    assert not (srv.data / "backup").exists()
