"""Running under systemd: the unit in contrib/, sd_notify readiness, SIGHUP reload."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from correo.server.tls import generate_self_signed
from tests.conftest import Server, client_tls, make_data_dir
from tests.server.imap_helpers import imap

UNIT = Path(__file__).parents[2] / "contrib" / "correo.service"


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_hardened() -> None:
    """Its own user, one capability, a read-only system but for the data folder."""
    unit = _directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["User"] == ["correo"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ProtectHome"] == ["yes"]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["ReadWritePaths"] == ["/var/lib/correo"]
    assert "/var/lib/correo" in unit["ExecStart"][0]
    assert "-HUP" in unit["ExecReload"][0]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt: systemd)"
)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds no error (ExecStart pointed at this correo)."""
    program = Path(sys.executable).with_name("correo")
    assert program.exists()
    unit = tmp_path / "correo.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/correo", str(program)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if "correo.service" in line]
    assert result.returncode == 0 and not problems, result.stderr


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    """A datagram socket like systemd's, named in NOTIFY_SOCKET for the server."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "abstract":
        name = f"correo-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        path = Path("/tmp") / f"correo-notify-{uuid.uuid4().hex[:12]}"
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    sock.settimeout(30)
    yield sock
    sock.close()
    if request.param == "path":
        path.unlink(missing_ok=True)


def test_ready_reloading_and_stopping_are_notified(
    notify_socket: socket.socket, tmp_path: Path
) -> None:
    """READY=1 once the listeners accept; RELOADING=1 then READY=1 on SIGHUP; STOPPING=1."""
    data = tmp_path / "data"
    make_data_dir(data)
    srv = Server(data)
    srv.start()
    try:
        assert notify_socket.recv(4096) == b"READY=1"
        with socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10) as smtp:
            assert smtp.recv(100).startswith(b"220 ")  # bound before READY=1 was sent
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGHUP)
        reloading = notify_socket.recv(4096).decode()
        assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", reloading), reloading
        assert notify_socket.recv(4096) == b"READY=1"
    finally:
        assert srv.stop() == 0
    assert notify_socket.recv(4096) == b"STOPPING=1"


def _fingerprint(port: int) -> str:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with client_tls().wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def test_sighup_replaces_certificate_and_keeps_sessions(
    start_server: Callable[..., Server],
) -> None:
    """New handshakes get the new certificate; an open IMAP session still answers."""
    srv = start_server()
    assert srv.proc is not None
    before = _fingerprint(srv.ports["imaps"])
    session = imap(srv)
    tls_dir = srv.data / "tls"
    generate_self_signed(tls_dir / "cert.pem", tls_dir / "key.pem", "localhost")
    start = len(srv.log_lines)
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_log("event=server.reloaded", start=start), srv.log()[-2000:]
    assert _fingerprint(srv.ports["imaps"]) != before
    assert _fingerprint(srv.ports["imaps"]) == _fingerprint(srv.ports["submissions"])
    assert session.noop()[0] == "OK"
    session.logout()


def test_sighup_applies_live_keys_and_names_the_others(
    start_server: Callable[..., Server],
) -> None:
    """A limit applies to new sessions at once; a listen address needs a restart."""
    srv = start_server()
    assert srv.proc is not None
    config = srv.data / "correo.toml"
    text = config.read_text()
    text, n = re.subn(r"^recipients = .*$", "recipients = 1", text, flags=re.M)
    assert n == 1
    text, n = re.subn(r"^imap = \[.*\]$", 'imap = ["127.0.0.1:1"]', text, flags=re.M)
    assert n == 1
    config.write_text(text)
    start = len(srv.log_lines)
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_log("event=server.reloaded", start=start), srv.log()[-2000:]
    assert srv.wait_log("event=server.reload_needs_restart key=listen.imap", start=start)
    with socket.create_connection(("127.0.0.1", srv.ports["smtp"]), timeout=10) as raw:
        f = raw.makefile("rwb")
        assert f.readline().startswith(b"220")
        for line in (b"EHLO x.example\r\n", b"MAIL FROM:<a@x.example>\r\n"):
            f.write(line)
            f.flush()
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
        for rcpt in (b"alice@example.test", b"bob@example.test"):
            f.write(b"RCPT TO:<" + rcpt + b">\r\n")
            f.flush()
            reply = f.readline()
        assert reply.startswith(b"452"), reply  # RFC 5321 §4.5.3.1.10: too many recipients


def test_bad_config_on_sighup_keeps_the_old_one(
    start_server: Callable[..., Server],
) -> None:
    """A broken correo.toml is reported in one line; the server runs on as it was."""
    srv = start_server()
    assert srv.proc is not None
    before = _fingerprint(srv.ports["imaps"])
    session = imap(srv)
    (srv.data / "correo.toml").write_text("[limits\nthis is not toml\n")
    start = len(srv.log_lines)
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_log("event=server.reload_failed", start=start), srv.log()[-2000:]
    assert srv.proc.poll() is None
    assert session.noop()[0] == "OK"
    assert _fingerprint(srv.ports["imaps"]) == before
    session.logout()
    assert not any("event=server.reloaded" in line for line in srv.log_lines[start:])


def test_unreadable_new_certificate_keeps_the_old_one(
    start_server: Callable[..., Server],
) -> None:
    """A key that does not match its certificate: logged, the old pair stays in service."""
    srv = start_server()
    assert srv.proc is not None
    before = _fingerprint(srv.ports["imaps"])
    tls_dir = srv.data / "tls"
    key = (tls_dir / "key.pem").read_bytes()
    generate_self_signed(tls_dir / "cert.pem", tls_dir / "key.pem", "localhost")
    (tls_dir / "key.pem").write_bytes(key)  # the old key with the new certificate
    start = len(srv.log_lines)
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_log("event=server.reload_failed", start=start), srv.log()[-2000:]
    assert _fingerprint(srv.ports["imaps"]) == before


def test_sighup_applies_a_new_log_level(start_server: Callable[..., Server]) -> None:
    """``[log] level`` set to warning on reload: a session's info and debug lines stop."""
    srv = start_server()
    assert srv.proc is not None
    start = len(srv.log_lines)
    imap(srv).logout()
    assert srv.wait_log("event=imap.", start=start)  # sessions log below warning
    config = srv.data / "correo.toml"
    config.write_text(config.read_text().replace('level = "debug"', 'level = "warning"'))
    start = len(srv.log_lines)
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_log("event=server.reloaded", start=start)
    after = len(srv.log_lines)
    imap(srv).logout()
    config.write_text("[log\n")  # a reload that fails logs an error: the next line
    srv.proc.send_signal(signal.SIGHUP)
    assert srv.wait_log("event=server.reload_failed", start=after)
    quiet = [
        line for line in srv.log_lines[after:] if "level=info" in line or "level=debug" in line
    ]
    assert not quiet, quiet
