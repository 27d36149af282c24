"""``correo init``, ``correo serve`` and ``correo demo``."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path

from correo.config import ConfigError, load_config, render_default_config
from correo.config_rules import email, hostname_problem, serve_problems
from correo.directory import DirectoryError
from correo.directory.factory import directory_for_data, open_directory
from correo.log import configure
from correo.mailauth.keys import ensure_domain_keys
from correo.server.app import MailServer, run_server
from correo.server.tls import TlsConfigError, generate_self_signed
from correo.store.api import StoreError
from correo.store.factory import open_store

__all__ = ["cmd_demo", "cmd_init", "cmd_serve", "init_data_dir"]

DEMO_DOMAIN = "example.test"
DEMO_USERS = ("alice", "bob")


class InitError(Exception):
    pass


def init_data_dir(
    data: Path,
    domain: str,
    hostname: str | None,
    force: bool = False,
    store: str | None = None,
    acme_email: str = "",
) -> None:
    """Create DATA/correo.toml, a self-signed certificate and an empty store.

    ``store``: a PostgreSQL URL written as ``[store] url``; its schema is created when the
    database is empty, and joined as it is otherwise (another node of the same cluster).
    """
    if store and not store.startswith(("postgresql://", "postgres://")):
        raise InitError("--store takes a URL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")
    config_path = data / "correo.toml"
    if data.exists() and any(data.iterdir()) and not force:
        raise InitError(
            f"{data} already exists and is not empty; use --force to overwrite its config"
        )
    hostname = hostname or f"mail.{domain}"
    problem = hostname_problem(hostname)  # before it is written into correo.toml
    if problem is not None:
        raise InitError(f"--hostname {hostname!r} {problem}")
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    if acme_email and email(acme_email) is not None:
        raise InitError(f"--acme {acme_email!r} {email(acme_email)}")
    text = render_default_config(hostname, acme_email=acme_email)
    if store:
        text += (
            "\n# Mail lives in PostgreSQL, shared by every node (docs/cluster.md).\n"
            f"[store]\nurl = {_toml_string(store)}\n"
        )
    config_path.write_text(text, encoding="utf-8")
    config = load_config(data)
    cert, key = config.path(config.tls.certificate), config.path(config.tls.key)
    cert.parent.mkdir(parents=True, exist_ok=True)
    if force or not (cert.exists() and key.exists()):
        generate_self_signed(cert, key, hostname)

    async def make_store() -> None:
        opened = open_store(load_config(data))  # creates the schema, or joins it
        await opened.open()
        await opened.close()

    asyncio.run(make_store())
    # The directory (with [store] url: the cluster's, in the same database): the domain
    # is added only if it is new, and keeps the DKIM keys it has.
    directory = open_directory(load_config(data))
    try:
        if not directory.is_local_domain(domain):
            directory.add_domain(domain)
        ensure_domain_keys(directory.dkim, domain)  # DKIM keys for outbound signing
    finally:
        directory.close()


def _toml_string(text: str) -> str:
    """A TOML basic string (a password may hold quotes or backslashes)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def cmd_init(args: argparse.Namespace) -> int:
    try:
        init_data_dir(
            args.data_dir, args.domain, args.hostname, args.force, args.store, args.acme or ""
        )
    except (InitError, DirectoryError, StoreError) as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 1
    print(f"Created {args.data_dir}/correo.toml for {args.domain}.")
    print(f"Next: correo --data {args.data_dir} user add postmaster@{args.domain}")
    print(f"Then: correo --data {args.data_dir} serve")
    return 0


def _print_where(server: MailServer) -> None:
    names = {
        "smtp": "SMTP (MX, no auth)",
        "submission": "Submission (STARTTLS + AUTH)",
        "submissions": "Submission (implicit TLS + AUTH)",
        "pop3": "POP3 (STLS)",
        "pop3s": "POP3 (implicit TLS)",
        "imap": "IMAP (STARTTLS)",
        "imaps": "IMAP (implicit TLS)",
        "lmtp": "LMTP (from another MTA)",
        "sieve": "ManageSieve",
        "http": "HTTP (ACME http-01, else to HTTPS)",
        "https": "HTTPS (JMAP, MTA-STS, autoconfig)",
        "metrics": "Metrics and health (Prometheus)",
    }
    print(f"correo is running for {server.config.hostname}; connect to:", flush=False)
    for service, addresses in server.bound.items():
        for host, port in addresses:
            print(f"  {names.get(service, service):34} {host}:{port}")
    if server.config.lmtp.socket:
        print(f"  {names['lmtp']:34} {server.config.path(server.config.lmtp.socket)}")
    for host, port in server.bound.get("https", [])[:1]:
        print(f"  {'Webmail (in a browser)':34} https://{host}:{port}/")
    print("Stop with Ctrl-C (or SIGTERM). Logs follow on standard error.", flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args.data_dir)
    problem = next(serve_problems(config), None)  # one line, before anything starts
    if problem is not None:
        raise ConfigError(f"config error: {problem}")
    configure(config.log.level, config.log.file or None)
    ready = False

    def on_ready(server: MailServer) -> None:
        nonlocal ready
        ready = True
        _print_where(server)

    try:
        import uvloop  # optional extra: correo[fast]
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(run_server(config, on_ready=on_ready))
    except TlsConfigError as exc:  # the [tls] files exist but do not load
        raise ConfigError(f"config error: [tls] certificate/key: {exc}") from None
    except OSError as exc:
        if ready:
            raise
        # a port in use, an address this host does not have: say so in one line
        raise ConfigError(f"cannot start: {exc}") from None
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Quick start: a demo domain and two users with printed passwords, then serve."""
    data: Path = args.data_dir
    secrets_file = data / "demo-passwords.txt"
    if not (data / "correo.toml").exists():
        init_data_dir(data, DEMO_DOMAIN, "localhost")
        directory = directory_for_data(data)
        lines = []
        try:
            for user in DEMO_USERS:
                password = secrets.token_urlsafe(12)
                directory.add_user(f"{user}@{DEMO_DOMAIN}", password)
                lines.append(f"{user}@{DEMO_DOMAIN} {password}\n")
        finally:
            directory.close()
        fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(lines)
    print(f"Demo data folder: {data}")
    if secrets_file.exists():
        print("Demo accounts (address password):")
        for line in secrets_file.read_text().splitlines():
            print(f"  {line}")
    print(
        "TLS uses a self-signed certificate: tell clients to accept it "
        "(swaks does not verify unless asked: swaks --tls …)."
    )
    return cmd_serve(args)
