"""Interoperability with Debian's swaks and fetchmail (installed by .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server
from tests.server.helpers import RawSmtp, mailbox

pytestmark = pytest.mark.interop

swaks = pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
fetchmail = pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")


def run_swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["swaks", "--hide-informational", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@swaks
def test_swaks_submission_with_auth(server: Server) -> None:
    before = len(mailbox(server.ports["pop3s"], "bob@example.test"))
    result = run_swaks(
        "--server",
        "127.0.0.1",
        "--port",
        str(server.ports["submission"]),
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice@example.test",
        "--auth-password",
        PASSWORDS["alice@example.test"],
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--header",
        "From: alice@example.test",
        "--header",
        "Subject: via swaks",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stored = mailbox(server.ports["pop3s"], "bob@example.test")
    assert len(stored) == before + 1 and b"Subject: via swaks" in stored[-1]


@swaks
def test_swaks_pipelining(server: Server) -> None:
    result = run_swaks(
        "--server",
        "127.0.0.1",
        "--port",
        str(server.ports["smtp"]),
        "--pipeline",
        "--from",
        "someone@outside.example",
        "--to",
        "carol@example.test",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<** " not in result.stdout  # no error replies in the dialogue


@swaks
def test_swaks_relay_denied(server: Server) -> None:
    result = run_swaks(
        "--server",
        "127.0.0.1",
        "--port",
        str(server.ports["smtp"]),
        "--from",
        "spammer@outside.example",
        "--to",
        "victim@elsewhere.example",
    )
    assert result.returncode != 0
    assert "554 5.7.1" in result.stdout


@swaks
def test_swaks_implicit_tls_wrong_password(server: Server) -> None:
    result = run_swaks(
        "--server",
        "127.0.0.1",
        "--port",
        str(server.ports["submissions"]),
        "--tlsc",
        "--auth",
        "LOGIN",
        "--auth-user",
        "carol@example.test",
        "--auth-password",
        "not-it",
        "--from",
        "carol@example.test",
        "--to",
        "bob@example.test",
    )
    assert result.returncode != 0 and "535 5.7.8" in result.stdout


@fetchmail
def test_fetchmail_retrieves_many_messages(server: Server, tmp_path: Path) -> None:
    user = "carol@example.test"
    raw = RawSmtp(server.ports["smtp"])
    raw.cmd("EHLO fetch.test")
    for i in range(40):
        raw.send(b"MAIL FROM:<f@fetch.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n")
        assert [raw.reply()[0] for _ in range(3)] == [250, 250, 354]
        raw.send(
            b"Subject: fetch %d\r\nMessage-ID: <fetch-%d@fetch.test>\r\n\r\nbody %d\r\n.\r\n"
            % (i, i, i)
        )
        assert raw.reply()[0] == 250
    raw.cmd("QUIT")
    expected = len(mailbox(server.ports["pop3s"], user))
    out = tmp_path / "out"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {server.ports['pop3s']} protocol POP3 auth password\n"
        f'  user "{user}" password "{PASSWORDS[user]}" is root here\n'
        f'  ssl sslproto "TLS1.2+" fetchall nokeep\n'
        f"  no sslcertck\n"
        f'  mda "cat > {out}/msg.$$.$(date +%N)"\n'
    )
    rc.chmod(0o600)
    result = subprocess.run(
        [
            "fetchmail",
            "-f",
            str(rc),
            "--nodetach",
            "--nosyslog",
            "-v",
            "--pidfile",
            str(tmp_path / "pid"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    files = list(out.iterdir())
    assert len(files) == expected
    bodies = b"".join(f.read_bytes() for f in files)
    for i in range(40):
        assert b"Subject: fetch %d\n" % i in bodies or b"Subject: fetch %d\r\n" % i in bodies
    assert mailbox(server.ports["pop3s"], user) == []  # nokeep: deleted at QUIT
