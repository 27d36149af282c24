"""Interop with jmap-jam (JavaScript, npm), a JMAP client nobody here wrote, run by node
against a real server over TLS with the webmail's bearer token: session, query, get with
bodyValues, keywords, a move, an upload and a submission that arrives over IMAP.

jmap-jam is installed once per machine with npm into a cache folder; the test is skipped
where node or npm is missing or the registry cannot be reached."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORDS, Server
from tests.server.cluster_helpers import eventually
from tests.server.helpers import RawSmtp
from tests.server.jmap_helpers import Jmap

JAM_VERSION = "0.13.1"
SCRIPT = Path(__file__).parent.parent / "data" / "interop" / "jmap_jam.mjs"
ALICE, BOB = "alice@example.test", "bob@example.test"


def _jam_folder() -> Path:
    """A folder with jmap-jam in its node_modules (installed on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "correo-jmap-jam"
    folder.mkdir(parents=True, exist_ok=True)
    # The folder is shared by every run on the machine: one installs while others wait,
    # rather than two npm runs writing one node_modules at once.
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "node_modules" / "jmap-jam" / "package.json").exists():
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", f"jmap-jam@{JAM_VERSION}"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                pytest.skip(f"npm could not install jmap-jam: {done.stderr[-300:]}")
    return folder


def _bearer(server: Server) -> str:
    """Log in as the webmail does and read the session's bearer token."""
    base = f"https://127.0.0.1:{server.ports['https']}"
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    got = http.post(
        base + "/login",
        data={"username": ALICE, "password": PASSWORDS[ALICE]},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=10,
    )
    assert got.status_code in (302, 303), got.text
    info = http.get(base + "/webmail/session", timeout=10)
    assert info.status_code == 200, info.text
    return str(info.json()["bearer"])


def test_jmap_jam_reads_moves_and_sends(server: Server) -> None:
    folder = _jam_folder()
    smtp = RawSmtp(server.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd("MAIL FROM:<carol@elsewhere.test>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(
        f"From: carol@elsewhere.test\r\nTo: {ALICE}\r\nSubject: jam-interop\r\n\r\n"
        "Body for jam.\r\n.\r\n".encode()
    )
    assert smtp.reply()[0] == 250
    smtp.close()
    script = folder / SCRIPT.name  # node resolves jmap-jam from the script's folder
    shutil.copyfile(SCRIPT, script)
    session_url = f"https://127.0.0.1:{server.ports['https']}/.well-known/jmap"
    ran = subprocess.run(
        ["node", str(script), session_url, _bearer(server), "jam-interop", BOB],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NODE_TLS_REJECT_UNAUTHORIZED": "0"},  # the test certificate
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["subject"] == "jam-interop" and seen["body"].startswith("Body for jam.")
    assert seen["keywords"] == {"$flagged": True} and seen["inArchive"] is True
    assert seen["uploaded"] == len("an attachment\n") and seen["submitted"] == "final"
    bob = Jmap(server, BOB)

    def arrived() -> bool:
        ids = bob.email_ids()
        got = bob.call("Email/get", ids=ids, properties=["subject"])["list"] if ids else []
        return any(e["subject"] == "sent by jam jam-interop" for e in got)

    assert eventually(arrived, 10)
