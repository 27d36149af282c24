"""Shared fixtures: a real correo server in a subprocess, on ephemeral loopback ports."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from correo.config import SERVICES  # every listener: tests put each on port 0
from tests.server.dnsserver import DnsServer

# The MTA fixtures (``dns_server``, ``instances``), registered once for every module.
pytest_plugins = ["tests.server.conftest_mta", "tests.pg"]  # tests.pg: a private PostgreSQL

DOMAIN = "example.test"
PASSWORDS = {
    "alice@example.test": "alice-secret-1",
    "bob@example.test": "bob-secret-2",
    "carol@example.test": "carol-secret-3",
}


def correo(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the correo CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_QUIET_DNS: DnsServer | None = None


def quiet_dns() -> str:
    """A local DNS server with an empty zone: every lookup is a fast NXDOMAIN.

    Test servers use it unless a test brings its own zone, so SPF/DMARC checks and the
    queue runner never wait on (or depend on) the machine's resolver.
    """
    global _QUIET_DNS
    if _QUIET_DNS is None:
        _QUIET_DNS = DnsServer({})
    return _QUIET_DNS.address


def make_data_dir(data: Path, overrides: dict[str, str] | None = None) -> None:
    """``correo init`` + users, every service on port 0; ``overrides`` sets config keys."""
    overrides = {"nameservers": f'["{quiet_dns()}"]', **(overrides or {})}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "correo.cli.main",
            "init",
            "--data",
            str(data),
            "--domain",
            DOMAIN,
            "--hostname",
            "localhost",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = (data / "correo.toml").read_text()
    for service in SERVICES:
        config = re.sub(
            rf"^{service} = \[.*\]$", f'{service} = ["127.0.0.1:0"]', config, flags=re.M
        )
    config = config.replace('level = "info"', 'level = "debug"')
    for key, value in (overrides or {}).items():
        config, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", config, flags=re.M)
        assert n == 1, key
    (data / "correo.toml").write_text(config)
    for address, password in PASSWORDS.items():
        r = correo(data, "user", "add", address, stdin=password + "\n")
        assert r.returncode == 0, r.stderr


@dataclass
class Server:
    """``correo serve`` in a subprocess; ``ports`` maps each service to its bound port."""

    data: Path
    proc: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    #: Set by a test that stalls the loop on purpose; otherwise a stall fails the test.
    allow_stalls: bool = False
    _pump: threading.Thread | None = None

    def start(self, timeout: float = 90.0) -> None:  # only a failed start waits that long
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "correo.cli.main", "--data", str(self.data), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        lines = self.log_lines

        def pump(stream: object) -> None:
            for line in stream:  # type: ignore[attr-defined]
                lines.append(line)
                if "event=server.ready" in line:
                    self.ports = {
                        m.group(1): int(m.group(3))
                        for m in re.finditer(r"(\w+)=([\d.]+):(\d+)", line)
                    }
                    ready.set()

        self._pump = threading.Thread(target=pump, args=(self.proc.stderr,), daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        if self._pump is not None:
            self._pump.join(5)  # every line the server wrote before it exited
        self.assert_loop_never_blocked()
        return code

    def assert_loop_never_blocked(self) -> None:
        """The server's watchdog logs ``event=loop.blocked`` when a callback ran > 100 ms."""
        stalls = [line for line in self.log_lines if "event=loop.blocked" in line]
        if stalls and not self.allow_stalls:
            raise AssertionError("the event loop was blocked:\n" + "".join(stalls[:5]))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log(self) -> str:
        return "".join(self.log_lines)

    def wait_log(self, text: str, timeout: float = 30.0, start: int = 0) -> bool:
        """Wait until a log line contains ``text``; scans each line once, so a server
        that logs millions of lines (a flood test at debug level) is not re-read."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            upto = len(self.log_lines)
            if any(text in line for line in self.log_lines[seen:upto]):
                return True
            seen = upto
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def client_tls() -> ssl.SSLContext:
    """Our test certificate is self-signed: verification off, TLS 1.2+ still enforced."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def crash_free_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, *also: str
) -> Iterator[Server]:
    """A module's own server, for a fixture to ``yield from``: stopped cleanly at the
    end, and its log free of crashed sessions, tracebacks and the ``also`` markers."""
    data = tmp_path_factory.mktemp(name) / "data"
    make_data_dir(data)
    srv = Server(data)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]
    log = srv.log()
    for marker in ("session_crashed", "Traceback", *also):
        assert marker not in log, log[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("correo") / "data"
    make_data_dir(data)
    srv = Server(data)
    srv.start()
    yield srv
    code = srv.stop()
    assert code == 0, srv.log()[-3000:]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """Factory: start a private server with config overrides (stopped at teardown)."""
    started: list[Server] = []

    def start(overrides: dict[str, str] | None = None) -> Server:
        data = tmp_path / f"data{len(started)}"
        make_data_dir(data, overrides)
        srv = Server(data)
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop()


os.environ.setdefault("PYTHONUNBUFFERED", "1")
