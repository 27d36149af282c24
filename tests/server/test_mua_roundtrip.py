"""§4 round trips: ``correo mail`` composes and submits, the server stores, IMAP FETCH
returns it, the stdlib parser reads it back identical — plus every IMAP action and fetch."""

from __future__ import annotations

import email
import imaplib
import json
import mailbox
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from correo.cli.main import main
from correo.mua.mailfile import read_maildir, read_mbox
from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.helpers import wait_count

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BLOB = bytes(range(256)) * 300 + b"\r\n.\r\nFrom x\r\n"


def write_config(path: Path, srv: Server, user: str) -> Path:
    cfg = path / f"{user.split('@')[0]}.toml"
    cfg.write_text(
        f"""
default = "main"
[accounts.main]
email = "Zoë Ünïcode <{user}>"
user = "{user}"
imap = {{ host = "127.0.0.1", port = {srv.ports["imaps"]}, tls = "implicit" }}
smtp = {{ host = "127.0.0.1", port = {srv.ports["submission"]}, tls = "starttls" }}
pop3 = {{ host = "127.0.0.1", port = {srv.ports["pop3s"]}, tls = "implicit" }}
password_command = "printf %s {PASSWORDS[user]}"
tls_verify = false
"""
    )
    return cfg


def mail(cfg: Path, *args: str) -> int:
    return main(["mail", "--config", str(cfg), *args])


def imap_for(srv: Server, user: str) -> imaplib.IMAP4_SSL:
    conn = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=client_tls())
    conn.login(user, PASSWORDS[user])
    return conn


def fetch_all(srv: Server, user: str, folder: str = "INBOX") -> list[EmailMessage]:
    conn = imap_for(srv, user)
    try:
        conn.select(f'"{folder}"', readonly=True)
        _, data = conn.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, got = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = got[0][1]  # type: ignore[index]
            msg = email.message_from_bytes(raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out
    finally:
        conn.logout()


@pytest.fixture(scope="module")
def configs(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mua")
    return {u: write_config(base, server, u) for u in PASSWORDS}


def test_send_every_composition_feature_round_trips(
    server: Server, configs: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    (tmp_path / "page.html").write_text(
        '<html><body><p>Grüße <b>mundo</b></p><img src="cid:logo.png"></body></html>'
    )
    (tmp_path / "logo.png").write_bytes(PNG)
    (tmp_path / "données €.bin").write_bytes(BLOB)
    (tmp_path / "notes.txt").write_bytes("línea 1\r\nlínea 2\n".encode())
    subject = "Réunion 東京 — " + "long subject words " * 8
    code = mail(
        configs["alice@example.test"], "send",
        "--to", "Bob Bøb <bob@example.test>", "--bcc", "carol@example.test",
        "--subject", subject, "--html", str(tmp_path / "page.html"),
        "--inline", str(tmp_path / "logo.png"),
        "--attach", str(tmp_path / "données €.bin"), str(tmp_path / "notes.txt"),
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert wait_count(server.ports["pop3s"], "bob@example.test", 1) >= 1
    (msg,) = [m for m in fetch_all(server, "bob@example.test") if m["Subject"] == subject]
    assert msg["From"].addresses[0].display_name == "Zoë Ünïcode"
    assert msg["To"].addresses[0].display_name == "Bob Bøb"
    assert msg["Bcc"] is None  # hidden from the recipients
    assert msg.get_content_type() == "multipart/mixed"
    alt = msg.get_body(("related", "alternative", "plain"))
    assert alt is not None
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and "Grüße" in plain.get_content()  # derived from the HTML
    assert html is not None and "cid:logo.png" in html.get_content()
    parts = {p.get_filename(): p for p in msg.walk() if p.get_filename()}
    assert parts["logo.png"].get_content() == PNG
    assert parts["logo.png"]["Content-ID"] == "<logo.png>"
    assert parts["logo.png"].get_content_type() == "image/png"
    assert parts["données €.bin"].get_payload(decode=True) == BLOB
    assert parts["notes.txt"].get_payload(decode=True) == "línea 1\r\nlínea 2\n".encode()
    assert parts["notes.txt"].get_content_type() == "text/plain"
    assert wait_count(server.ports["pop3s"], "carol@example.test", 1) >= 1  # Bcc delivered
    sent = [m for m in fetch_all(server, "alice@example.test", "Sent") if m["Subject"] == subject]
    assert len(sent) == 1 and "carol@example.test" in str(sent[0]["Bcc"])


def test_dry_run_prints_mime_and_sends_nothing(
    server: Server, configs: dict[str, Path], capsys: Any
) -> None:
    before = len(fetch_all(server, "alice@example.test", "Sent"))
    code = mail(
        configs["alice@example.test"], "send", "--dry-run", "--to", "bob@example.test",
        "--subject", "Ça va?", "--body", "hello",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "Subject: =?utf-8?" in out and "MIME-Version: 1.0" in out and "hello" in out
    assert len(fetch_all(server, "alice@example.test", "Sent")) == before


def test_list_read_search_flag_move_delete_save_reply_forward(
    server: Server, configs: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    carol = configs["carol@example.test"]
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4 " + bytes(range(256)))
    assert mail(
        configs["bob@example.test"], "send", "--to", "carol@example.test",
        "--subject", "Première question", "--body", "Ünïcode body line",
        "--attach", str(tmp_path / "a.pdf"),
    ) == 0  # fmt: skip
    wait_count(server.ports["pop3s"], "carol@example.test", 2)
    capsys.readouterr()
    assert mail(carol, "list") == 0
    listing = capsys.readouterr().out
    line = next(x for x in listing.splitlines() if "Première question" in x)
    uid = line.split()[0]
    assert line.split()[1] == "N"  # unseen
    assert mail(carol, "read", uid) == 0
    shown = capsys.readouterr().out
    assert "Subject: Première question" in shown and "Ünïcode body line" in shown
    assert "Attachment: a.pdf (application/pdf" in shown
    assert mail(carol, "search", "--subject", "Première") == 0
    assert "Première question" in capsys.readouterr().out
    assert mail(carol, "search", "--unseen", "--subject", "Première") == 0
    assert capsys.readouterr().out == ""  # read marked it \Seen
    assert mail(carol, "flag", uid, "--set", "flagged", "--set", "$Important") == 0
    conn = imap_for(server, "carol@example.test")
    conn.select("INBOX", readonly=True)
    _, data = conn.uid("FETCH", uid, "(FLAGS)")
    assert b"\\Flagged" in data[0] and b"$Important" in data[0]  # type: ignore[operator]
    conn.logout()
    out_dir = tmp_path / "saved"
    assert mail(carol, "save-attachments", uid, "--dir", str(out_dir)) == 0
    assert (out_dir / "a.pdf").read_bytes() == (tmp_path / "a.pdf").read_bytes()
    assert mail(carol, "reply", uid, "--body", "Yes!") == 0
    assert mail(carol, "forward", uid, "--to", "alice@example.test", "--body", "FYI") == 0
    wait_count(server.ports["pop3s"], "bob@example.test", 2)
    replies = [
        m for m in fetch_all(server, "bob@example.test") if m["Subject"] == "Re: Première question"
    ]
    assert len(replies) == 1
    body = replies[0].get_body(("plain",))
    assert body is not None and "> Ünïcode body line" in body.get_content()
    assert replies[0]["In-Reply-To"] and replies[0]["References"]
    fwd = [
        m
        for m in fetch_all(server, "alice@example.test")
        if m["Subject"] == "Fwd: Première question"
    ]
    assert len(fwd) == 1
    pdf = next(p for p in fwd[0].walk() if p.get_filename() == "a.pdf")
    assert pdf.get_payload(decode=True) == (tmp_path / "a.pdf").read_bytes()
    conn = imap_for(server, "carol@example.test")
    conn.select("INBOX", readonly=True)
    _, data = conn.uid("FETCH", uid, "(FLAGS)")
    assert b"\\Answered" in data[0]  # type: ignore[operator]
    conn.logout()
    assert mail(carol, "move", uid, "--to", "Archive") == 0
    archived = fetch_all(server, "carol@example.test", "Archive")
    assert [m["Subject"] for m in archived] == ["Première question"]
    capsys.readouterr()
    assert mail(carol, "list", "--folder", "Archive") == 0
    new_uid = capsys.readouterr().out.split()[0]
    assert mail(carol, "delete", "--folder", "Archive", new_uid) == 0
    assert fetch_all(server, "carol@example.test", "Archive") == []
    assert [m["Subject"] for m in fetch_all(server, "carol@example.test", "Trash")] == [
        "Première question"
    ]


def test_errors_are_reported_not_raised(tmp_path: Path, capsys: Any) -> None:
    missing = tmp_path / "none.toml"
    assert mail(missing, "list") == 1
    assert "no client configuration" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[accounts.x]\nuser = "u@x"\npassword = "plain"\n')
    assert mail(bad, "list") == 1
    assert "plain-text passwords are refused" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
@pytest.mark.parametrize("dest", ["maildir", "mbox"])
def test_fetch_resumable_keep_then_delete(
    start_server: Any, tmp_path: Path, protocol: str, dest: str, capsys: Any
) -> None:
    srv = start_server()
    cfg = write_config(tmp_path, srv, "bob@example.test")
    sender = write_config(tmp_path, srv, "alice@example.test")
    for i in range(3):
        assert mail(sender, "send", "--no-save", "--to", "bob@example.test",
                    "--subject", f"n°{i}", "--body", f"From body {i}\n.\n") == 0  # fmt: skip
    assert wait_count(srv.ports["pop3s"], "bob@example.test", 3) == 3
    target = tmp_path / ("Maildir" if dest == "maildir" else "bob.mbox")

    def run(*extra: str) -> str:
        capsys.readouterr()
        assert mail(cfg, "fetch", f"--{protocol}", f"--{dest}", str(target), *extra) == 0
        return str(capsys.readouterr().out)

    def local() -> list[bytes]:
        if dest == "maildir":
            return [b"".join(m.chunks) for m in read_maildir(target)]
        with open(target, "rb") as fh:
            return [b"".join(m.chunks) for m in read_mbox(fh)]

    assert "fetched 3, already had 0" in run()
    assert "fetched 0, already had 3" in run()  # resumable: nothing twice
    assert mail(sender, "send", "--no-save", "--to", "bob@example.test",
                "--subject", "late", "--body", "x") == 0  # fmt: skip
    wait_count(srv.ports["pop3s"], "bob@example.test", 4)
    assert "fetched 1, already had 3, deleted on server 4" in run("--delete")
    msgs = local()
    assert len(msgs) == 4
    parsed = [email.message_from_bytes(m, policy=policy.default) for m in msgs]
    assert sorted(str(p["Subject"]) for p in parsed) == ["late", "n°0", "n°1", "n°2"]
    body0 = next(p for p in parsed if p["Subject"] == "n°0").get_body(("plain",))
    assert body0 is not None and body0.get_content().splitlines() == ["From body 0", "."]
    assert wait_count(srv.ports["pop3s"], "bob@example.test", 0, timeout=0) == 0
    if dest == "maildir":
        assert len(mailbox.Maildir(target, create=False)) == 4  # the stdlib reads it too
        state = json.loads((target / ".correo-fetch.json").read_text())
    else:
        assert len(mailbox.mbox(target)) == 4
        state = json.loads(target.with_name("bob.mbox.correo-fetch.json").read_text())
    assert all(entry["seen"] == [] for entry in state.values())  # deleted: forgotten
