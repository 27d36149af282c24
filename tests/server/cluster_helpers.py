"""Several correo nodes on one PostgreSQL database, and a mail exchanger that records.

Each node is what an administrator makes: ``correo init --store URL`` with a data folder
and host name of its own, then ``correo serve`` in a subprocess.  Users, aliases and
scripts are added through one node's CLI only; the others see them through the database.
"""

from __future__ import annotations

import re
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import DOMAIN, PASSWORDS, SERVICES, Server, correo, quiet_dns

__all__ = ["CaptureMx", "Delivered", "eventually", "init_node", "make_node"]


def init_node(
    data: Path, url: str, hostname: str = "localhost"
) -> subprocess.CompletedProcess[str]:
    """``correo init --store URL`` as an administrator types it."""
    return subprocess.run(
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
            hostname,
            "--store",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def make_node(
    data: Path,
    url: str,
    hostname: str,
    *,
    settings: Mapping[str, str] | None = None,
    outbound: Mapping[str, str] | None = None,
    users: bool = False,
) -> Server:
    """An initialised node: every listener on port 0, ``settings`` replacing keys of
    correo.toml, ``outbound`` as its [outbound] section; ``users``: add the tests' users
    (through this node: the directory is shared, so once for the whole cluster)."""
    result = init_node(data, url, hostname)
    assert result.returncode == 0, result.stderr
    config = (data / "correo.toml").read_text()
    for service in SERVICES:
        config = re.sub(
            rf"^{service} = \[.*\]$", f'{service} = ["127.0.0.1:0"]', config, flags=re.M
        )
    overrides = {"nameservers": f'["{quiet_dns()}"]', **(settings or {})}
    for key, value in overrides.items():
        config, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", config, count=1, flags=re.M)
        assert n == 1, key
    if outbound:
        config += "\n[outbound]\n" + "".join(f"{k} = {v}\n" for k, v in outbound.items())
    (data / "correo.toml").write_text(config)
    if users:
        for address, password in PASSWORDS.items():
            added = correo(data, "user", "add", address, stdin=password + "\n")
            assert added.returncode == 0, added.stderr
    return Server(data)


def eventually(check: Callable[[], bool], timeout: float = 15.0, step: float = 0.02) -> bool:
    """Poll ``check`` until it holds or ``timeout`` runs out (only a failure waits that
    long: generous, for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@dataclass(frozen=True, slots=True)
class Delivered:
    helo: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def message_id(self) -> str:
        found = re.search(rb"^Message-ID: *<([^>]*)>", self.data, re.M | re.I)
        return found.group(1).decode() if found else ""


@dataclass
class _State:
    gate: threading.Event = field(default_factory=threading.Event)  # set: greet at once
    delivered: list[Delivered] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for a relay client: no extensions but 8BITMIME."""

    server: _Server

    def handle(self) -> None:
        state = self.server.state
        if not state.gate.wait(120):
            return
        self.wfile.write(b"220 mx.test ESMTP\r\n")
        helo, sender, rcpts = "", "", []
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                helo = line[5:].strip().decode(errors="replace")
                self.wfile.write(b"250-mx.test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                sender, rcpts = line.decode(errors="replace").strip(), []
                self.wfile.write(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                rcpts.append(line.decode(errors="replace").strip())
                self.wfile.write(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = bytearray()
                while (piece := self.rfile.readline(1 << 20)) not in (b".\r\n", b""):
                    body += piece[1:] if piece.startswith(b"..") else piece
                with state.lock:
                    state.delivered.append(Delivered(helo, sender, tuple(rcpts), bytes(body)))
                self.wfile.write(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 2.0.0 bye\r\n")
                return
            else:  # RSET, NOOP
                self.wfile.write(b"250 2.0.0 ok\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class CaptureMx:
    """A threaded SMTP server on loopback that keeps every message it accepts.

    :meth:`hold` keeps new connections waiting for their greeting (a slow exchanger:
    the nodes' runners hold their leased mail, nothing fails or is retried) until
    :meth:`release`, so a test can fill a queue before letting it drain.
    """

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = _State()
        self._server.state.gate.set()
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def hold(self) -> None:
        self._server.state.gate.clear()

    def release(self) -> None:
        self._server.state.gate.set()

    def delivered(self) -> list[Delivered]:
        with self._server.state.lock:
            return list(self._server.state.delivered)

    def clear(self) -> None:
        with self._server.state.lock:
            self._server.state.delivered.clear()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
