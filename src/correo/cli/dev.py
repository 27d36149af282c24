"""``correo dev``: a catch-all mail server for developing applications that send mail.

Every address is accepted (on the MX port without login, on submission with any login)
and lands in one mailbox, readable over IMAP and POP3 with any login and through a JSON
API on the https listener; nothing is relayed, nothing is looked up in the DNS.  Because
any login works, the command listens on loopback unless ``--listen-any`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from correo.config import (
    SERVICES,
    AuthSettings,
    Config,
    ConfigError,
    JunkSettings,
    LmtpSettings,
    OutboundSettings,
    default_listen,
    parse_hostport,
)
from correo.dns import FakeResolver
from correo.log import configure
from correo.server.app import MailServer, run_server
from correo.server.devmode import DEV_ACCOUNT, CatchAllDirectory, Chaos, DevMode
from correo.server.tls import generate_self_signed
from correo.store.factory import open_store
from correo.web.devapi import PREFIX

__all__ = ["build_config", "cmd_dev", "is_loopback", "register"]

#: The services ``correo dev`` runs (ManageSieve and LMTP have no use there).
DEV_SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "https")
MARKER = "correo-dev.txt"
_NAMES = {
    "smtp": "SMTP (MX, no login)",
    "submission": "Submission (any login)",
    "submissions": "Submission (implicit TLS)",
    "pop3": "POP3 (any login)",
    "pop3s": "POP3 (implicit TLS)",
    "imap": "IMAP (any login)",
    "imaps": "IMAP (implicit TLS)",
    "https": "HTTPS",
}


def register(sub: Any) -> None:
    """Add the ``dev`` subcommand to the ``correo`` parser."""
    p = sub.add_parser(
        "dev",
        help="catch-all development server: any address, any login, one mailbox, JSON API",
        description="Accept mail for every address and keep it in one mailbox, readable "
        "over IMAP/POP3 with any login, in the web inbox at https://HOST:PORT/ and at "
        "https://HOST:PORT/api/v1/messages. Nothing is relayed. See docs/testing.md.",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        dest="dev_data",
        default=None,
        help="keep mail in DIR between runs (default: a temporary folder, removed on exit)",
    )
    p.add_argument(
        "--listen",
        metavar="HOST",
        default=None,
        help="address to listen on (default 127.0.0.1; a non-loopback one needs --listen-any)",
    )
    p.add_argument(
        "--listen-any",
        action="store_true",
        help="allow a non-loopback address (default with it: 0.0.0.0); anyone who can "
        "connect can then read all mail",
    )
    p.add_argument(
        "--free-ports",
        action="store_true",
        help="let the system choose free ports (printed at start) instead of 2525, 2587, …",
    )
    p.add_argument(
        "--reject-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="refuse a RCPT or a message with 550 with probability P (0 to 1)",
    )
    p.add_argument(
        "--tempfail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="defer a RCPT or a message with 451 with probability P (0 to 1)",
    )
    p.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait before answering each RCPT and the end of each message",
    )
    p.add_argument(
        "--chaos-stage",
        choices=("rcpt", "data", "both"),
        default="both",
        help="where --reject-rate, --tempfail-rate and --delay apply (default: both)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed the random refusals")
    p.set_defaults(func=cmd_dev)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: where it points is not ours to check


def build_config(data: Path, host: str, *, free_ports: bool, plaintext: bool) -> Config:
    """The dev server's settings, in code: there is no correo.toml to edit."""
    listen: dict[str, tuple[tuple[str, int], ...]] = {}
    for service, addresses in default_listen(host).items():
        if service in DEV_SERVICES:
            bound_host, port = parse_hostport(addresses[0])
            listen[service] = ((bound_host, 0 if free_ports else port),)
    assert set(listen) <= set(SERVICES)
    return Config(
        data_dir=data,
        hostname="localhost",
        listen=listen,
        # any login works anyway: a password cannot be given away, so no TLS is needed
        # for one on loopback; with --listen-any a client's real password might be sent
        auth=AuthSettings(allow_plaintext=plaintext),
        junk=JunkSettings(enabled=False),  # one mailbox: nothing filed into Junk
        lmtp=LmtpSettings(socket=""),
        outbound=OutboundSettings(mta_sts=False),  # every address is local: nothing leaves
    )


def _prepare(data: Path, temporary: bool) -> None:
    """Create (or check) the dev data folder and its self-signed certificate."""
    if not temporary and (data / "correo.toml").exists() and not (data / MARKER).exists():
        raise ConfigError(
            f"{data} is a correo server's data folder; correo dev keeps its mail apart "
            "(use another --data folder)"
        )
    data.mkdir(parents=True, exist_ok=True)
    marker = data / MARKER
    if not marker.exists():
        marker.write_text("A correo dev folder: one catch-all mailbox, any login.\n")
    cert, key = data / "tls" / "cert.pem", data / "tls" / "key.pem"
    if not (cert.exists() and key.exists()):
        generate_self_signed(cert, key, "localhost")


async def _create_account(config: Config) -> None:
    store = open_store(config)
    await store.open()
    try:
        await store.create_account(DEV_ACCOUNT)
    finally:
        await store.close()


def _print_where(server: MailServer, data: Path, temporary: bool, chaos: Chaos) -> None:
    print("correo dev: every address is accepted into one mailbox; any login opens it.")
    https = None
    for service, addresses in server.bound.items():
        for host, port in addresses:
            shown = f"[{host}]" if ":" in host else host
            print(f"  {_NAMES.get(service, service):30} {shown}:{port}")
            if service == "https" and https is None:
                https = f"https://{shown}:{port}"
    if https is not None:
        print(f"  {'Web inbox (any login)':30} {https}/")
        print(f"  {'Messages (JSON API)':30} {https}{PREFIX}")
    print(f"  {'TLS certificate (self-signed)':30} {data / 'tls' / 'cert.pem'}")
    print(f"  {'Data folder':30} {data}{' (removed on exit)' if temporary else ''}")
    if chaos.active:
        print(
            f"  Chaos: reject {chaos.reject_rate:g}, tempfail {chaos.tempfail_rate:g}, "
            f"delay {chaos.delay:g} s at {' and '.join(sorted(chaos.stages))}"
        )
    print("Nothing is relayed. Stop with Ctrl-C (or SIGTERM).", flush=True)


def cmd_dev(args: argparse.Namespace) -> int:
    host = args.listen or ("0.0.0.0" if args.listen_any else "127.0.0.1")
    try:
        parse_hostport(f"[{host}]:0" if ":" in host else f"{host}:0")
    except ConfigError as exc:
        print(f"correo: --listen {host}: {exc}", file=sys.stderr)
        return 2
    loopback = is_loopback(host)
    if not loopback and not args.listen_any:
        print(
            f"correo: correo dev accepts any login and shows all mail to it, so it listens "
            f"on loopback only; add --listen-any to listen on {host}",
            file=sys.stderr,
        )
        return 2
    if not loopback:
        print(
            f"correo: WARNING: dev mode on {host}: anyone who can reach it can send "
            "through it and read every message",
            file=sys.stderr,
            flush=True,
        )
    stages = frozenset({"rcpt", "data"}) if args.chaos_stage == "both" else {args.chaos_stage}
    try:
        chaos = Chaos(
            args.reject_rate,
            args.tempfail_rate,
            args.delay,
            frozenset(stages),
            random.Random(args.seed),
        )
    except ValueError as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 2
    given = args.dev_data or args.data
    temporary = given is None
    data = Path(tempfile.mkdtemp(prefix="correo-dev-")) if given is None else Path(given)
    data = data.absolute()
    try:
        _prepare(data, temporary)
        config = build_config(data, host, free_ports=args.free_ports, plaintext=loopback)
        return _serve(config, chaos, temporary)
    finally:
        if temporary:
            shutil.rmtree(data, ignore_errors=True)


def _serve(config: Config, chaos: Chaos, temporary: bool) -> int:
    configure(config.log.level, None)
    asyncio.run(_create_account(config))
    dev = DevMode(DEV_ACCOUNT, chaos)
    directory = CatchAllDirectory(config.data_dir / "directory.db", DEV_ACCOUNT)
    server = MailServer(config, resolver=FakeResolver(), directory=directory, dev=dev)
    ready = False

    def on_ready(started: MailServer) -> None:
        nonlocal ready
        ready = True
        _print_where(started, config.data_dir, temporary, chaos)

    try:
        asyncio.run(run_server(config, on_ready=on_ready, server=server))
    except OSError as exc:
        if ready:
            raise
        # a port in use (another correo dev?): one line, and the way out
        raise ConfigError(f"cannot start: {exc} (try --free-ports)") from None
    return 0
