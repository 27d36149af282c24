"""Account profiles for ``correo mail``, from ``~/.config/correo/client.toml``.

Example::

    default = "work"

    [accounts.work]
    email = "Alice Example <alice@example.org>"
    user = "alice@example.org"
    imap = { host = "mail.example.org", port = 993, tls = "implicit" }
    smtp = { host = "mail.example.org", port = 587, tls = "starttls" }
    pop3 = { host = "mail.example.org", port = 995, tls = "implicit" }
    password_command = "pass show mail/work"   # or the system keyring, or a prompt

The password is never read from this file: the system keyring (service
``correo``, the user name as key) when the optional ``keyring`` package is installed,
else the output of ``password_command``, else a prompt on the terminal.
"""

from __future__ import annotations

import getpass
import os
import shlex
import ssl
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any

__all__ = ["Account", "Endpoint", "ProfileError", "config_path", "load_account", "password_for"]

_DEFAULT_PORTS = {
    ("imap", "implicit"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
    ("smtp", "implicit"): 465,
    ("smtp", "starttls"): 587,
    ("smtp", "none"): 587,
    ("pop3", "implicit"): 995,
    ("pop3", "starttls"): 110,
    ("pop3", "none"): 110,
}


class ProfileError(Exception):
    """The client configuration is missing or wrong; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: str  # "implicit" | "starttls" | "none" (plain only for tests on loopback)


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    email: str
    user: str
    imap: Endpoint | None = None
    smtp: Endpoint | None = None
    pop3: Endpoint | None = None
    password_command: str | None = None
    sent_folder: str | None = None  # default: the \Sent special-use mailbox, else "Sent"
    ca_file: str | None = None
    tls_verify: bool = True

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.tls_verify:  # explicit opt-out, e.g. a self-signed test server
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def config_path() -> Path:
    env = os.environ.get("CORREO_CLIENT_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "correo" / "client.toml"


def _endpoint(kind: str, raw: Any) -> Endpoint | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("host"), str):
        raise ProfileError(f"{kind}: expected a table with host (and port, tls)")
    tls = raw.get("tls", "implicit")
    if tls not in ("implicit", "starttls", "none"):
        raise ProfileError(f"{kind}.tls must be implicit, starttls or none, not {tls!r}")
    port = raw.get("port", _DEFAULT_PORTS[(kind, tls)])
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ProfileError(f"{kind}.port must be a port number")
    return Endpoint(raw["host"], port, tls)


def load_account(name: str | None = None, path: Path | None = None) -> Account:
    """The named account (or the default one) from the client configuration."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"no client configuration at {path} (see docs/mua.md)") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    accounts = data.get("accounts")
    if not isinstance(accounts, dict) or not accounts:
        raise ProfileError(f"{path}: no [accounts.NAME] table")
    if "password" in data or any(
        isinstance(a, dict) and "password" in a for a in accounts.values()
    ):
        raise ProfileError(
            f"{path}: plain-text passwords are refused; use the keyring or password_command"
        )
    name = name or data.get("default") or next(iter(accounts))
    raw = accounts.get(name)
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: no account {name!r} (have: {', '.join(accounts)})")
    email = raw.get("email") or raw.get("user")
    if not isinstance(email, str):
        raise ProfileError(f"account {name}: set email and user")
    # "Alice <alice@example.org>" is a From: line; the login is the address alone
    address = parseaddr(email)[1]  # RFC 5322 §3.4 name-addr
    user = raw.get("user") or (address if "@" in address else "")
    if not isinstance(user, str) or not user:
        raise ProfileError(f"account {name}: email {email!r} holds no address; set user")
    command = raw.get("password_command")
    sent = raw.get("sent_folder")
    ca_file = raw.get("ca_file")
    return Account(
        name=str(name),
        email=email,
        user=user,
        imap=_endpoint("imap", raw.get("imap")),
        smtp=_endpoint("smtp", raw.get("smtp")),
        pop3=_endpoint("pop3", raw.get("pop3")),
        password_command=command if isinstance(command, str) else None,
        sent_folder=sent if isinstance(sent, str) else None,
        ca_file=ca_file if isinstance(ca_file, str) else None,
        tls_verify=bool(raw.get("tls_verify", True)),
    )


def password_for(account: Account) -> str:
    """Keyring, then ``password_command``, then a prompt (never a stored plain text)."""
    try:
        import keyring  # type: ignore[import-not-found,unused-ignore]  # optional dependency
    except ImportError:
        keyring = None
    if keyring is not None:
        try:
            secret = keyring.get_password("correo", account.user)
        except Exception:  # any backend failure: fall through to the other sources
            secret = None
        if isinstance(secret, str) and secret:
            return secret
    if account.password_command:
        result = subprocess.run(
            shlex.split(account.password_command),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ProfileError(
                f"password_command failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout.rstrip("\r\n")
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for {account.user}: ")
    raise ProfileError(
        f"no password for {account.user}: install keyring, set password_command, or use a TTY"
    )
