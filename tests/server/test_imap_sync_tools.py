"""Interop with Debian's mbsync (isync) and offlineimap3: two-way sync over real sockets.

Both tools are skipped when not installed (``apt-get install isync offlineimap3``).
Each test syncs several folders (nested and non-ASCII names included) down to a
local Maildir, changes flags and deletes on both sides, syncs again, and checks
both sides agree.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from correo.imap.utf7 import encode_mutf7
from tests.conftest import PASSWORDS, Server
from tests.server.imap_helpers import imap, message

FOLDERS = ("Projects", "Projects/2024", "Reisen/Köln")


def _maildir_messages(root: Path) -> dict[Path, str]:
    """Message file → its Maildir info flags, for every message under ``root``."""
    out: dict[Path, str] = {}
    for path in root.rglob("*"):
        if path.is_file() and path.parent.name in ("cur", "new"):
            out[path] = path.name.rsplit(":2,", 1)[1] if ":2," in path.name else ""
    return out


def _seed(server: Server, user: str) -> None:
    client = imap(server, user)
    for folder in FOLDERS:
        quoted = '"' + encode_mutf7(folder).decode() + '"'
        assert client.create(quoted)[0] == "OK"
        for i in range(2):
            assert client.append(quoted, None, None, message(f"{folder} {i}"))[0] == "OK"
    assert client.append("INBOX", None, None, message("inbox one"))[0] == "OK"
    client.logout()


def _imap_state(server: Server, user: str, folder: str) -> list[bytes]:
    client = imap(server, user)
    typ, _ = client.select('"' + encode_mutf7(folder).decode() + '"')
    assert typ == "OK", folder
    typ, data = client.fetch("1:*", "(FLAGS)")
    client.logout()
    return [d for d in data if isinstance(d, bytes)]


@pytest.mark.skipif(shutil.which("mbsync") is None, reason="isync (mbsync) not installed")
def test_mbsync_two_way(start_server: object, tmp_path: Path) -> None:
    server: Server = start_server()  # type: ignore[operator]
    user = "carol@example.test"
    _seed(server, user)
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        f"""IMAPAccount correo
Host 127.0.0.1
Port {server.ports["imaps"]}
User {user}
Pass {PASSWORDS[user]}
SSLType IMAPS
CertificateFile /dev/null
SSLVersions TLSv1.2 TLSv1.3
AuthMechs PLAIN

IMAPStore remote
Account correo

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
Sync All
"""
    )
    # Our certificate is self-signed: mbsync needs it as a trusted certificate file.
    cert = next(server.data.rglob("*.crt"), None) or next(server.data.rglob("*cert*.pem"))
    rc.write_text(rc.read_text().replace("CertificateFile /dev/null", f"CertificateFile {cert}"))

    def sync() -> None:
        r = subprocess.run(
            ["mbsync", "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stdout + r.stderr

    sync()
    files = _maildir_messages(local)
    assert len(files) == 2 * len(FOLDERS) + 1
    # isync 1.4 keeps the modified UTF-7 name (RFC 3501 §5.1.3) on disk; 1.5 decodes it
    koeln_dir = local / "Reisen" / "Köln"
    if not koeln_dir.is_dir():
        koeln_dir = local / "Reisen" / "K&APY-ln"
    assert koeln_dir.is_dir() and (local / "Projects" / "2024").is_dir()
    # local: flag one message, delete another; remote: flag one, delete one
    koeln = sorted(koeln_dir.rglob("*/*"))
    koeln = [p for p in koeln if p.is_file()]
    koeln[0].rename(koeln[0].parent.parent / "cur" / (koeln[0].name.split(":2,")[0] + ":2,FS"))
    koeln[1].unlink()
    client = imap(server, user)
    client.select('"Projects/2024"')
    client.store("1", "+FLAGS", "(\\Flagged)")
    client.store("2", "+FLAGS", "(\\Deleted)")
    client.expunge()
    client.logout()
    sync()
    state = _imap_state(server, user, "Reisen/Köln")
    assert len(state) == 1 and b"\\Flagged" in state[0] and b"\\Seen" in state[0]
    local_2024 = _maildir_messages(local / "Projects" / "2024")
    assert list(local_2024.values()) == ["F"]
    # a new folder made locally appears on the server
    (local / "Neu" / "cur").mkdir(parents=True)
    (local / "Neu" / "new").mkdir()
    (local / "Neu" / "tmp").mkdir()
    (local / "Neu" / "new" / "1.local").write_bytes(message("from local").replace(b"\r\n", b"\n"))
    sync()
    assert len(_imap_state(server, user, "Neu")) == 1


@pytest.mark.skipif(shutil.which("offlineimap") is None, reason="offlineimap3 not installed")
def test_offlineimap_two_way(start_server: object, tmp_path: Path) -> None:
    server: Server = start_server()  # type: ignore[operator]
    user = "bob@example.test"
    _seed(server, user)
    local = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        f"""[general]
accounts = correo
metadata = {tmp_path}/meta
ui = quiet

[Account correo]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {local}
sep = /

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {server.ports["imaps"]}
remoteuser = {user}
remotepass = {PASSWORDS[user]}
ssl = yes
sslcacertfile = {server.data / "tls" / "cert.pem"}
createfolders = True
"""
    )

    def sync() -> None:
        r = subprocess.run(
            ["offlineimap", "-c", str(rc), "-o", "-u", "quiet"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and "ERROR" not in r.stderr, r.stdout + r.stderr

    sync()
    files = _maildir_messages(local)
    assert len(files) == 2 * len(FOLDERS) + 1, sorted(map(str, files))
    projects = [p for p in (local / "Projects").glob("*/*") if p.is_file()]
    projects[0].rename(
        projects[0].parent.parent / "cur" / (projects[0].name.split(":2,")[0] + ":2,S")
    )
    projects[1].unlink()
    client = imap(server, user)
    client.select("INBOX")
    client.store("1", "+FLAGS", "(\\Answered)")
    client.logout()
    sync()
    state = _imap_state(server, user, "Projects")
    assert len(state) == 1 and b"\\Seen" in state[0]
    inbox = _maildir_messages(local / "INBOX")
    assert list(inbox.values()) == ["R"]
