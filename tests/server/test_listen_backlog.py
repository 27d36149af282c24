"""``[limits] listen_backlog``: every listener (mail protocols, HTTPS) asks the kernel to
queue that many connections before accept, so a burst of clients connecting at once is
not dropped at 100 (asyncio's default).  ``ss`` reads each listening socket's backlog
(its Send-Q column) from the kernel."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import Server


def _backlogs() -> dict[int, int]:
    """Listening TCP port -> backlog, from ``ss -ltnH`` (Send-Q of a listening socket)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    found: dict[int, int] = {}
    for line in out.splitlines():
        fields = line.split()  # State Recv-Q Send-Q Local:Port Peer:Port
        port = fields[3].rpartition(":")[2]
        if port.isdigit():
            found[int(port)] = int(fields[2])
    return found


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (Debian's iproute2)")
def test_every_listener_takes_the_configured_backlog(start_server: object) -> None:
    srv: Server = start_server({"listen_backlog": "321"})  # type: ignore[operator]
    got = _backlogs()
    for service in ("smtp", "submission", "imaps", "pop3s", "https"):
        assert got[srv.ports[service]] == 321, (service, got.get(srv.ports[service]))
