"""Set up and run correo for the bench, through its CLI only (init, user add, serve).

    python bench/correo_server.py run [--data DIR]   # set up, serve until Ctrl-C

The data directory is a fresh temporary one unless --data is given; users are
user1..userK@bench.test with one password; POP3 is read over implicit TLS (pop3s).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DOMAIN", "PASSWORD", "CorreoServer"]

DOMAIN = "bench.test"
PASSWORD = "benchpass-2026"  # [auth] min_password_length is 10


def _correo() -> list[str]:
    exe = shutil.which("correo")
    return [exe] if exe else [sys.executable, "-m", "correo.cli.main"]


@dataclass(slots=True)
class CorreoServer:
    """One correo instance in its own data directory, on the bench's ports."""

    data: Path | None = None
    smtp_port: int = 2525
    pop3s_port: int = 2995
    users: int = 10
    message_size: int | None = None  # raise [limits] message_size (the big-message test)
    store: str | None = None  # a PostgreSQL URL for `correo init --store`; None = SQLite
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_tmp: bool = field(default=False, init=False)

    def setup(self) -> None:
        """`correo init`, move ports if asked, add the users (password on stdin)."""
        if self.data is None:
            self.data = Path(tempfile.mkdtemp(prefix="correo-bench-"))
            self._own_tmp = True
        self.data.mkdir(parents=True, exist_ok=True)
        store = ["--store", self.store] if self.store else []
        self._cli(
            "init", "--data", str(self.data), "--domain", DOMAIN, "--hostname", "localhost", *store
        )
        toml = self.data / "correo.toml"
        text = toml.read_text()
        text = re.sub(r'"127\.0\.0\.1:2525"', f'"127.0.0.1:{self.smtp_port}"', text)
        text = re.sub(r'"127\.0\.0\.1:2995"', f'"127.0.0.1:{self.pop3s_port}"', text)
        if self.message_size is not None:
            text = re.sub(
                r"(?m)^message_size\s*=\s*\d+", f"message_size = {self.message_size}", text
            )
        toml.write_text(text)
        for i in range(1, self.users + 1):
            self._cli("--data", str(self.data), "user", "add", f"user{i}@{DOMAIN}", stdin=PASSWORD)

    def _cli(self, *args: str, stdin: str | None = None) -> None:
        res = subprocess.run(
            [*_correo(), *args],
            input=(stdin + "\n") if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(
                f"correo {' '.join(args)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
            )

    def start(self, timeout: float = 30.0) -> None:
        """`correo serve` in the foreground of a child; wait until SMTP and POP3S answer."""
        assert self.data is not None, "setup() first"
        log = open(self.data / "serve.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            [*_correo(), "--data", str(self.data), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        for port in (self.smtp_port, self.pop3s_port):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"correo serve exited ({self.proc.returncode}); "
                        f"see {self.data / 'serve.log'}"
                    )
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"correo not listening on {port}") from None
                    time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, as the CLI contract says, then wait (kill after 20 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def clean(self) -> None:
        self.stop()
        if self._own_tmp and self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="run correo for the bench")
    p.add_argument("action", choices=["run"])
    p.add_argument("--data", type=Path)
    p.add_argument("--smtp-port", type=int, default=2525)
    p.add_argument("--pop3s-port", type=int, default=2995)
    a = p.parse_args(argv)
    srv = CorreoServer(a.data, a.smtp_port, a.pop3s_port)
    srv.setup()
    srv.start()

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # stop the server too when we are terminated
    print(f"correo pid {srv.pid}, data {srv.data}; Ctrl-C to stop", flush=True)
    try:
        while srv.proc is not None and srv.proc.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
