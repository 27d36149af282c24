"""Make a fixture data folder with an earlier correo, for the upgrade tests.

    .venv/bin/python tests/data/releases/make_fixture.py COMMIT NAME

checks COMMIT out into a temporary git worktree and, with that code (on this venv's
dependencies), runs ``correo init``, ``correo user add`` and ``correo serve``, sends one
message over SMTP, stops the server, and copies the data folder, without SQLite side
files, locks, sockets or spool, to ``tests/data/releases/NAME/data``.
``NAME/fixture.json`` says what the upgrade test expects to find.  Pick the earliest
commit of each store schema (``git log -S_SCHEMA_VERSION -- src/correo/store/sqlite.py``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DOMAIN = "example.test"
USER = f"alice@{DOMAIN}"
PASSWORD = "fixture-password-1"
SUBJECT = "Written before the upgrade"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def correo(src: Path, data: Path, *args: str, stdin: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run(
        [sys.executable, "-m", "correo.cli.main", *args],
        input=stdin,
        text=True,
        check=True,
        env=env,
        cwd=data.parent,
    )


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def make(commit: str, name: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="correo-fixture-"))
    tree = work / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True
    )
    try:
        src, data = tree / "src", work / "data"
        correo(
            src, data, "init", "--data", str(data), "--domain", DOMAIN, "--hostname", "localhost"
        )
        config = (data / "correo.toml").read_text()
        smtp = free_port()
        config = re.sub(r'"127\.0\.0\.1:\d+"', lambda _m: f'"127.0.0.1:{free_port()}"', config)
        config = re.sub(r"(?m)^smtp = \[.*\]$", f'smtp = ["127.0.0.1:{smtp}"]', config)
        (data / "correo.toml").write_text(config)
        correo(src, data, "--data", str(data), "user", "add", USER, stdin=PASSWORD + "\n")
        server = subprocess.Popen(
            [sys.executable, "-m", "correo.cli.main", "--data", str(data), "serve"],
            env={**os.environ, "PYTHONPATH": str(src)},
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(smtp)
            message = (
                f"From: someone@remote.test\r\nTo: {USER}\r\nSubject: {SUBJECT}\r\n"
                f"Message-ID: <{name}@remote.test>\r\n\r\nThe body, from {commit}.\r\n"
            )
            with smtplib.SMTP("127.0.0.1", smtp) as client:
                client.sendmail("someone@remote.test", [USER], message)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        out = HERE / name
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(
            data,
            out / "data",
            ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock", "*.sock", "tmp"),
        )
        (out / "fixture.json").write_text(
            json.dumps(
                {
                    "commit": subprocess.run(
                        ["git", "-C", str(REPO), "rev-parse", commit],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.strip(),
                    "user": USER,
                    "password": PASSWORD,
                    "subject": SUBJECT,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"wrote {out}")
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
        )
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    make(sys.argv[1], sys.argv[2])
