"""``correo serve`` that cannot start says why in one line and exits non-zero.

Each case is an administrator's common mistake, made for real: a port another program
holds, a second server on the same data folder, a certificate or key that is missing or
unreadable, a data folder the server cannot write.  Permission cases run the server
without root's override (``unshare --user`` when the tests run as root).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, make_data_dir
from tests.server.helpers import RawSmtp


def serve(data: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``correo serve`` expected to fail; a server that starts instead times the test out."""
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "correo.cli.main", "--data", str(data), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``correo:`` line of a failed start (log lines may precede it)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("correo:")]
    assert len(lines) == 1, result.stderr
    assert result.stderr.rstrip().endswith(lines[0]), result.stderr
    return lines[0]


@pytest.fixture
def unprivileged() -> list[str]:
    """A command prefix that runs without root's permission override."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None:
        pytest.skip("running as root and unshare(1) is missing: cannot drop DAC override")
    probe = subprocess.run(["unshare", "--user", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare --user is refused here: {probe.stderr.decode().strip()}")
    return ["unshare", "--user"]


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    make_data_dir(folder)
    yield folder
    for path in [folder, *folder.rglob("*")]:  # undo chmods so tmp_path can be removed
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IRWXU)


def set_listen(data: Path, service: str, address: str) -> None:
    config = (data / "correo.toml").read_text()
    config, n = re.subn(rf"(?m)^{service} = \[.*\]$", f'{service} = ["{address}"]', config)
    assert n == 1
    (data / "correo.toml").write_text(config)


def test_a_port_in_use_names_the_service_and_the_key(data: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        set_listen(data, "imap", f"127.0.0.1:{port}")
        line = one_line(serve(data))
    assert f"imap: cannot listen on 127.0.0.1:{port}: address already in use" in line
    assert "[listen] imap" in line and str(data / "correo.toml") in line
    # nothing was left behind (lock, socket): the folder serves once the port is free
    set_listen(data, "imap", f"127.0.0.1:{port}")
    srv = Server(data)
    srv.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as imap:
            assert imap.recv(100).startswith(b"* OK")
    finally:
        assert srv.stop() == 0


def test_a_second_serve_on_the_same_data_folder_is_refused(
    start_server: Callable[..., Server],
) -> None:
    srv = start_server()
    assert srv.proc is not None
    line = one_line(serve(srv.data))
    assert line == (
        f"correo: another correo serve (pid {srv.proc.pid}) is already running"
        f" on the data folder {srv.data}"
    )
    smtp = RawSmtp(srv.ports["smtp"])  # the first server was not disturbed
    assert smtp.greeting[0] == 220
    smtp.close()


def test_a_missing_certificate_is_one_line(data: Path) -> None:
    (data / "tls" / "cert.pem").unlink()
    line = one_line(serve(data))
    assert str(data / "tls" / "cert.pem") in line and "[tls] certificate" in line


def test_an_unreadable_key_is_one_line(data: Path, unprivileged: list[str]) -> None:
    (data / "tls" / "key.pem").chmod(0)
    line = one_line(serve(data, unprivileged))
    assert str(data / "tls" / "key.pem") in line and "Permission denied" in line


def test_an_unwritable_data_folder_is_one_line(data: Path, unprivileged: list[str]) -> None:
    data.chmod(0o500)
    line = one_line(serve(data, unprivileged))
    assert line.startswith(f"correo: cannot write in the data folder {data}")
