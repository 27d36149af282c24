"""Interop with Debian's msmtp, getmail6 and mutt: real clients nobody here wrote.

Each test drives the client as a subprocess against the module's correo server (self-signed
certificate, trusted through its PEM file) and asserts the effect on the server side or in
the client's own files. Skipped when a tool is absent (``.ci/run`` installs them).
"""

from __future__ import annotations

import contextlib
import email
import imaplib
import itertools
import os
import pwd
import shlex
import shutil
import smtplib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo
from tests.server.helpers import mailbox

pytestmark = pytest.mark.interop

msmtp = pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp not installed")
getmail = pytest.mark.skipif(shutil.which("getmail") is None, reason="getmail6 not installed")
mutt = pytest.mark.skipif(shutil.which("mutt") is None, reason="mutt not installed")

_ids = itertools.count(1)


def new_user(server: Server, prefix: str) -> tuple[str, str]:
    """A fresh account, so each test sees a mailbox nobody else touches."""
    address = f"{prefix}{next(_ids)}x{uuid.uuid4().hex[:6]}@example.test"
    password = f"pw-{uuid.uuid4().hex}"
    r = correo(server.data, "user", "add", address, stdin=password + "\n")
    assert r.returncode == 0, r.stderr
    return address, password


def cert(server: Server) -> Path:
    return server.data / "tls" / "cert.pem"


def deliver(server: Server, to: str, subjects: list[str]) -> None:
    """Inbound mail over port 25, as another MTA would hand it over."""
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        for subject in subjects:
            smtp.sendmail(
                "sender@outside.example",
                [to],
                f"From: sender@outside.example\r\nTo: {to}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{uuid.uuid4().hex}@outside.example>\r\n\r\n{subject} body\r\n",
            )


def imap_login(server: Server, user: str, password: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", server.ports["imaps"], ssl_context=client_tls(), timeout=10
    )
    client.login(user, password)
    return client


def imap_subjects(server: Server, user: str, password: str, folder: str) -> list[tuple[str, str]]:
    """(subject, flags) of every message in ``folder``."""
    client = imap_login(server, user, password)
    try:
        typ, data = client.select(folder)
        assert typ == "OK", data
        if data[0] == b"0":
            return []
        _, fetched = client.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = []
        for item in fetched:
            if isinstance(item, tuple):
                flags = imaplib.ParseFlags(item[0])
                subject = email.message_from_bytes(item[1])["Subject"]
                out.append((str(subject), " ".join(f.decode() for f in flags)))
        return sorted(out)
    finally:
        client.logout()


def parsed(raw: bytes) -> Message:
    return email.message_from_bytes(raw)


# --- msmtp -----------------------------------------------------------------------------


def msmtprc(tmp_path: Path, server: Server, service: str, user: str, password: str) -> Path:
    starttls = "on" if service == "submission" else "off"
    rc = tmp_path / "msmtprc"
    rc.write_text(
        f"""defaults
tls on
tls_starttls {starttls}
tls_trust_file {cert(server)}
auth on

account correo
host 127.0.0.1
port {server.ports[service]}
from {user}
user {user}
password {password}

account default : correo
"""
    )
    rc.chmod(0o600)  # msmtp refuses a readable file holding a password
    return rc


def run_msmtp(rc: Path, *args: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["msmtp", "-C", str(rc), *args],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@msmtp
@pytest.mark.parametrize("service", ["submission", "submissions"])
def test_msmtp_submits_with_auth(server: Server, tmp_path: Path, service: str) -> None:
    """STARTTLS on 587 and implicit TLS on 465; -t takes To/Bcc from the headers."""
    to, to_pw = new_user(server, "msto")
    hidden, hidden_pw = new_user(server, "msbcc")
    alice = "alice@example.test"
    rc = msmtprc(tmp_path, server, service, alice, PASSWORDS[alice])
    result = run_msmtp(
        rc,
        "-t",
        text=f"From: Alice <{alice}>\nTo: {to}\nBcc: {hidden}\nSubject: msmtp {service}\n\n"
        "Sent by msmtp.\n",
    )
    assert result.returncode == 0, result.stderr
    for user, password in ((to, to_pw), (hidden, hidden_pw)):
        stored = mailbox(server.ports["pop3s"], user, password)
        assert len(stored) == 1
        msg = parsed(stored[0])
        assert msg["From"] == f"Alice <{alice}>" and msg["Subject"] == f"msmtp {service}"
        assert msg["Return-Path"] == f"<{alice}>"
        assert msg["Bcc"] is None  # msmtp strips it; the copy still arrived
        assert "Sent by msmtp." in msg.get_payload()


@msmtp
def test_msmtp_wrong_password_fails(server: Server, tmp_path: Path) -> None:
    to, to_pw = new_user(server, "mswrong")
    rc = msmtprc(tmp_path, server, "submission", "alice@example.test", "not-the-password")
    result = run_msmtp(rc, to, text="Subject: never\n\nnope\n")
    assert result.returncode != 0
    assert "authentication failed" in result.stderr and "535" in result.stderr
    assert mailbox(server.ports["pop3s"], to, to_pw) == []


@msmtp
@pytest.mark.parametrize(
    ("envelope", "header", "reply"),
    [
        ("carol@example.test", "carol@example.test", "553 5.7.1 Sender address rejected"),
        ("alice@example.test", "carol@example.test", "553 5.7.1 From: address"),
    ],
    ids=["envelope", "header"],
)
def test_msmtp_spoofed_sender_refused(
    server: Server, tmp_path: Path, envelope: str, header: str, reply: str
) -> None:
    """Alice may not send as Carol, neither in MAIL FROM nor in the From: header."""
    to, to_pw = new_user(server, "msspoof")
    rc = msmtprc(
        tmp_path, server, "submission", "alice@example.test", PASSWORDS["alice@example.test"]
    )
    result = run_msmtp(rc, "-f", envelope, to, text=f"From: {header}\nSubject: spoof\n\nx\n")
    assert result.returncode != 0
    assert reply in result.stderr
    assert mailbox(server.ports["pop3s"], to, to_pw) == []


@msmtp
def test_msmtp_lmtp_per_recipient_replies(server: Server) -> None:
    """msmtp also speaks LMTP (RFC 2033): LHLO, then one reply per recipient after DATA."""
    first, first_pw = new_user(server, "lmtpa")
    second, second_pw = new_user(server, "lmtpb")
    result = subprocess.run(
        [
            "msmtp",
            "-v",
            "--protocol=lmtp",
            "--host=127.0.0.1",
            f"--port={server.ports['lmtp']}",
            "--auth=off",
            "--tls=off",
            "--from=mta@outside.example",
            first,
            second,
        ],
        input="From: mta@outside.example\nSubject: via lmtp\n\nhanded over\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--> LHLO" in result.stdout  # -v prints the dialogue
    for user, password in ((first, first_pw), (second, second_pw)):
        assert f"<-- 250 2.0.0 Delivered <{user}>" in result.stdout
        stored = mailbox(server.ports["pop3s"], user, password)
        assert len(stored) == 1 and parsed(stored[0])["Subject"] == "via lmtp"


# --- getmail6 --------------------------------------------------------------------------


@contextlib.contextmanager
def maildir() -> Iterator[tuple[Path, str]]:
    """A Maildir getmail may write to, and the ``user =`` line its destination needs.

    getmail refuses to deliver as root; under root (CI containers) it delivers as
    ``nobody``, which needs a directory outside pytest's private (0700) tmp tree.
    """
    with tempfile.TemporaryDirectory(prefix="correo-getmail-") as top:
        root = Path(top) / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (root / sub).mkdir(parents=True)
        user_line = ""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chmod(top, 0o755)
            for path in (root, *root.iterdir()):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            user_line = "user = nobody\n"
        yield root, user_line


def maildir_subjects(root: Path) -> list[str]:
    return sorted(
        str(parsed(p.read_bytes())["Subject"])
        for sub in ("new", "cur")
        for p in (root / sub).iterdir()
    )


@getmail
@pytest.mark.parametrize("retriever", ["SimplePOP3SSLRetriever", "SimpleIMAPSSLRetriever"])
def test_getmail_retrieves_and_deletes(server: Server, tmp_path: Path, retriever: str) -> None:
    user, password = new_user(server, "gm")
    first = [f"getmail {i}" for i in range(4)]
    deliver(server, user, first)
    port = server.ports["pop3s" if "POP3" in retriever else "imaps"]
    gmdir = tmp_path / "getmail"
    gmdir.mkdir()
    with maildir() as (root, user_line):

        def run(delete: bool) -> str:
            (gmdir / "rc").write_text(
                f"""[retriever]
type = {retriever}
server = 127.0.0.1
port = {port}
username = {user}
password = {password}
ca_certs = {cert(server)}

[destination]
type = Maildir
path = {root}/
{user_line}
[options]
delete = {str(delete).lower()}
read_all = false
verbose = 2
"""
            )
            r = subprocess.run(
                ["getmail", f"--getmaildir={gmdir}", "--rcfile=rc"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout

        # keep: everything arrives, the server still has it
        out = run(delete=False)
        assert "4 messages" in out and maildir_subjects(root) == first
        assert len(mailbox(server.ports["pop3s"], user, password)) == 4
        # again: the oldmail state (UIDL / UIDVALIDITY+UID) remembers them all
        out = run(delete=False)
        assert "0 messages" in out and maildir_subjects(root) == first
        assert list(gmdir.glob("oldmail-*"))
        # two new ones, then delete = true: only the new ones fetched, the server emptied
        deliver(server, user, ["getmail new a", "getmail new b"])
        out = run(delete=True)
        assert "2 messages" in out
        assert maildir_subjects(root) == sorted([*first, "getmail new a", "getmail new b"])
        assert mailbox(server.ports["pop3s"], user, password) == []
        assert "0 messages" in run(delete=True)


# --- mutt ------------------------------------------------------------------------------


def muttrc(tmp_path: Path, server: Server, user: str, password: str, smtp_url: str) -> Path:
    certs = tmp_path / "mutt-certs"
    shutil.copy(cert(server), certs)  # a certificate in this file is trusted
    rc = tmp_path / "muttrc"
    rc.write_text(
        f"""set from = "{user}"
set realname = "Mutt User"
set smtp_url = "{smtp_url}"
set smtp_pass = "{password}"
set ssl_force_tls = yes
set certificate_file = "{certs}"
set folder = "imaps://{user.replace("@", "%40")}@127.0.0.1:{server.ports["imaps"]}/"
set imap_pass = "{password}"
set spoolfile = "+INBOX"
set record = ""
set copy = no
set move = no
set delete = yes
set quit = yes
set confirmappend = no
set confirmcreate = no
set mark_old = no
set sleep_time = 0
set header_cache = ""
set message_cachedir = ""
"""
    )
    return rc


def mutt_env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "vt100"}


@mutt
@pytest.mark.parametrize("scheme", ["smtps", "smtp"])
def test_mutt_batch_send(server: Server, tmp_path: Path, scheme: str) -> None:
    """``mutt -s subject rcpt < body`` needs no terminal; smtp:// upgrades via STARTTLS."""
    sender, sender_pw = new_user(server, "muttfrom")
    to, to_pw = new_user(server, "muttto")
    port = server.ports["submissions" if scheme == "smtps" else "submission"]
    url = f"{scheme}://{sender.replace('@', '%40')}@127.0.0.1:{port}/"
    rc = muttrc(tmp_path, server, sender, sender_pw, url)
    result = subprocess.run(
        ["mutt", "-n", "-F", str(rc), "-s", f"via mutt {scheme}", to],
        input="Written in mutt.\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=mutt_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stored = mailbox(server.ports["pop3s"], to, to_pw)
    assert len(stored) == 1
    msg = parsed(stored[0])
    assert msg["From"] == f"Mutt User <{sender}>" and msg["Subject"] == f"via mutt {scheme}"
    assert "Written in mutt." in msg.get_payload()


@mutt
@pytest.mark.skipif(shutil.which("script") is None, reason="script (util-linux) not installed")
def test_mutt_imap_save_and_flag(server: Server, tmp_path: Path) -> None:
    """Mutt's curses UI in a pty (``script``): tag, save to another folder, search, flag."""
    user, password = new_user(server, "muttimap")
    client = imap_login(server, user, password)
    typ, _ = client.create("Kept")
    assert typ == "OK"
    for subject, body in (
        ("foo one", "x"),
        ("bar two", "a needle in it"),
        ("foo three", "needle"),
        ("baz four", "hay"),
    ):
        msg = f"From: x@outside.example\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()
        assert client.append("INBOX", None, None, msg)[0] == "OK"
    client.logout()
    rc = muttrc(tmp_path, server, user, password, "smtps://unused@127.0.0.1:1/")
    keys = (
        "<tag-pattern>~s foo<enter><tag-prefix><save-message>=Kept<enter><sync-mailbox>"
        "<tag-pattern>=b needle<enter><tag-prefix><flag-message><sync-mailbox><quit>"
    )
    command = shlex.join(["mutt", "-n", "-F", str(rc), "-f", "=INBOX", "-e", f'push "{keys}"'])
    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=mutt_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    # =b is mutt's server-side body search (IMAP SEARCH BODY); "foo three" had moved away
    assert imap_subjects(server, user, password, "INBOX") == [
        ("bar two", "\\Flagged"),
        ("baz four", ""),
    ]
    kept = imap_subjects(server, user, password, "Kept")
    assert [s for s, _ in kept] == ["foo one", "foo three"]
