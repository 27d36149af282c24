"""``correo mail`` profiles: a display name in ``email`` is not part of the login, and a
dry run with ``--from`` needs no profile at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from correo.cli.main import main
from correo.mua.profile import load_account
from tests.conftest import PASSWORDS, Server


def _profile(path: Path, srv: Server, user: str) -> Path:
    """A profile with ``email = "Name <address>"`` and no ``user`` key."""
    path.write_text(
        f"""
[accounts.main]
email = "Alice Example <{user}>"
imap = {{ host = "127.0.0.1", port = {srv.ports["imaps"]}, tls = "implicit" }}
smtp = {{ host = "127.0.0.1", port = {srv.ports["submission"]}, tls = "starttls" }}
password_command = "printf %s {PASSWORDS[user]}"
tls_verify = false
"""
    )
    return path


def test_display_name_is_not_part_of_the_login(server: Server, tmp_path: Path, capsys: Any) -> None:
    """The IMAP login uses the address alone; the whole string stays the From: line."""
    cfg = _profile(tmp_path / "client.toml", server, "alice@example.test")
    account = load_account(None, cfg)
    assert account.user == "alice@example.test"
    assert account.email == "Alice Example <alice@example.test>"
    code = main(["mail", "--config", str(cfg), "list", "--limit", "1"])
    assert code == 0, capsys.readouterr().err


def test_dry_run_with_from_needs_no_profile(tmp_path: Path, capsys: Any) -> None:
    missing = tmp_path / "none.toml"
    code = main(
        ["mail", "--config", str(missing), "send", "--dry-run",
         "--from", "Alice <alice@example.test>", "--to", "bob@example.test",
         "--subject", "hi", "--body", "hello"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "From: Alice <alice@example.test>" in captured.out
    assert "hello" in captured.out


def test_email_without_address_is_refused(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "client.toml"
    cfg.write_text('[accounts.main]\nemail = "Alice Example"\n')
    assert main(["mail", "--config", str(cfg), "list"]) == 1
    assert "holds no address" in capsys.readouterr().err
