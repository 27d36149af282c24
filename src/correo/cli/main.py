"""The ``correo`` command line: set up a data folder, manage accounts, run the server."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from correo import package_version
from correo.cli import (
    acl_cmds,
    admin,
    backup,
    dev,
    dns_cmds,
    importexport,
    junk_cmds,
    mail,
    quota_cmds,
    reports_cmds,
    sendmail,
    setup,
    sieve_cmds,
    status,
    storecopy,
    tls_cmds,
    webhook_cmds,
)
from correo.config import ConfigError
from correo.server.app import StartupError
from correo.server.tls import TlsConfigError

__all__ = ["build_parser", "main"]

DEFAULT_DATA = os.environ.get("CORREO_DATA", "correo-data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="correo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "correo: a complete Internet mail system in one program.\n\n"
            "One process serves SMTP (MX on port 25, submission with AUTH on 587/465),\n"
            "IMAP and POP3 for mail clients, JMAP and MTA-STS over HTTPS, ManageSieve and\n"
            "LMTP; it signs outgoing mail with DKIM, checks SPF, DKIM, DMARC and ARC on\n"
            "incoming mail, filters junk, runs Sieve scripts and delivers to other domains\n"
            "from a retrying queue.  Mail lives in SQLite in the data folder, or in\n"
            "PostgreSQL shared by several nodes.  The commands below set it up, run it,\n"
            "manage accounts, domains, DNS and certificates, and read or send mail."
        ),
        epilog="Start with: correo init --data DIR --domain example.org; "
        "then: correo --data DIR serve",
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="data folder holding correo.toml, the store and the TLS files "
        f"(default: $CORREO_DATA or ./{DEFAULT_DATA})",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "init", help="create a data folder: correo.toml, TLS certificate, empty store"
    )
    p.add_argument(
        "--data", metavar="DIR", dest="init_data", default=None, help="data folder to create"
    )
    p.add_argument("--domain", required=True, help="the first local mail domain, e.g. example.org")
    p.add_argument(
        "--hostname", default=None, help="this server's host name (default: mail.DOMAIN)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing data folder's config and certificate",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help="keep mail in PostgreSQL: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB"
        " (the schema is created, or joined if there); default: SQLite in DIR",
    )
    p.add_argument(
        "--acme",
        metavar="EMAIL",
        default=None,
        help="get certificates from Let's Encrypt (tls-alpn-01 on https, port 443), "
        "with EMAIL as the account's contact; default: ACME off",
    )
    p.set_defaults(func=setup.cmd_init)

    p = sub.add_parser(
        "serve",
        help="run every configured service in the foreground until SIGTERM/SIGINT; "
        "SIGHUP reloads the configuration and certificates",
    )
    p.set_defaults(func=setup.cmd_serve)

    p = sub.add_parser(
        "demo", help="set up a demo folder (example.test, two users) if missing, then serve"
    )
    p.set_defaults(func=setup.cmd_demo)

    p = sub.add_parser("user", help="manage mail accounts")
    usub = p.add_subparsers(dest="action", metavar="ACTION")
    usub.required = True
    a = usub.add_parser(
        "add", help="add an account; the password is prompted for, or read from one line of stdin"
    )
    a.add_argument("address", help="the account's mail address, e.g. alice@example.org")
    a.set_defaults(func=admin.cmd_user_add)
    a = usub.add_parser("passwd", help="change an account's password")
    a.add_argument("address", help="the account's mail address")
    a.set_defaults(func=admin.cmd_user_passwd)
    a = usub.add_parser(
        "del", help="remove an account with its mail, mailboxes, Sieve scripts and filter data"
    )
    a.add_argument("address", help="the account's mail address")
    a.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the data under a deleted-account name instead (see: user list --kept); "
        "a new account of the same address starts empty either way",
    )
    a.set_defaults(func=admin.cmd_user_del)
    a = usub.add_parser("list", help="list accounts")
    a.add_argument(
        "--kept", action="store_true", help="list data kept by 'user del --keep-data' instead"
    )
    a.add_argument("--quota", action="store_true", help="show each account's quota and usage too")
    a.set_defaults(func=admin.cmd_user_list)
    a = usub.add_parser(
        "admin", help="let an account use the web admin page (https://HOST/admin), or not"
    )
    a.add_argument("address", help="the account's mail address")
    a.add_argument("state", choices=("on", "off"), help="on: an administrator; off: not")
    a.set_defaults(func=admin.cmd_user_admin)
    quota_cmds.register(usub)

    p = sub.add_parser(
        "alias", help="manage aliases (ALIAS delivers to TARGET; @domain is a catch-all)"
    )
    asub = p.add_subparsers(dest="action", metavar="ACTION")
    asub.required = True
    a = asub.add_parser("add", help="add an alias")
    a.add_argument("alias", help="the address that forwards, e.g. info@example.org or @domain")
    a.add_argument("target", help="where its mail goes: a local account or any address")
    a.set_defaults(func=admin.cmd_alias_add)
    a = asub.add_parser("del", help="remove an alias")
    a.add_argument("alias", help="the alias to remove")
    a.set_defaults(func=admin.cmd_alias_del)
    a = asub.add_parser("list", help="list aliases")
    a.set_defaults(func=admin.cmd_alias_list)

    p = sub.add_parser("domain", help="manage local domains")
    dsub = p.add_subparsers(dest="action", metavar="ACTION")
    dsub.required = True
    a = dsub.add_parser("add", help="accept mail for another domain")
    a.add_argument("domain", help="the domain, e.g. example.org")
    a.set_defaults(func=admin.cmd_domain_add)
    a = dsub.add_parser("list", help="list local domains")
    a.set_defaults(func=admin.cmd_domain_list)

    p = sub.add_parser("queue", help="inspect and manage the outbound queue and webhook calls")
    qsub = p.add_subparsers(dest="action", metavar="ACTION")
    qsub.required = True
    ref = webhook_cmds.queue_ref  # a message id, or wN: a webhook call
    a = qsub.add_parser("list", help="list queued messages (id, size, age, sender, recipients)")
    a.set_defaults(func=webhook_cmds.cmd_queue_list)
    a = qsub.add_parser("show", help="one message: envelope, recipients, attempts, header")
    a.add_argument("id", type=ref, help="the message's id (queue list; wN: a webhook call)")
    a.set_defaults(func=webhook_cmds.cmd_queue_show)
    a = qsub.add_parser("flush", help="make every queued message (or one) due now")
    a.add_argument("id", type=ref, nargs="?", help="one message's id (default: all)")
    a.set_defaults(func=webhook_cmds.cmd_queue_flush)
    a = qsub.add_parser("retry", help="make one queued message due now")
    a.add_argument("id", type=ref, help="the message's id (queue list; wN: a webhook call)")
    a.set_defaults(func=webhook_cmds.cmd_queue_flush)
    a = qsub.add_parser("delete", help="remove a message from the queue (no bounce)")
    a.add_argument("id", type=ref, help="the message's id (queue list; wN: a webhook call)")
    a.set_defaults(func=webhook_cmds.cmd_queue_delete)
    sendmail.add_parser(sub)

    tls_cmds.register(sub)  # tls status (docs/tls.md)
    reports_cmds.register(sub)  # reports list/show/flush (docs/reports.md)
    dns_cmds.register(sub)  # dns, dns check, dkim rotate, check message
    importexport.register(sub)  # import, export
    mail.register(sub)  # mail send/list/read/… and fetch
    sieve_cmds.register(sub)  # sieve put/get/list/activate/check
    junk_cmds.register(sub)  # junk train
    status.register(sub)  # status of the running server (docs/operations.md)
    dev.register(sub)  # correo dev: catch-all development server (docs/testing.md)
    backup.register(sub)  # backup, verify (docs/operations.md)
    storecopy.register(sub)  # store copy --to postgresql://… (docs/cluster.md)
    acl_cmds.register(sub)  # acl set/delete/list: shared mailboxes (RFC 4314)
    _data_everywhere(sub)
    return parser


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=str(kwargs.get("help"))
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        print(f"correo {package_version()}")
        parser.exit()


def _data_everywhere(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``--data`` after the command too (``correo user add X --data DIR``); given in
    both places, the later one wins."""
    for parser in set(sub.choices.values()):
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            _data_everywhere(action)
        if not nested and "--data" not in parser._option_string_actions:
            parser.add_argument(
                "--data", metavar="DIR", default=argparse.SUPPRESS, help="the data folder"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    data = (
        getattr(args, "init_data", None)
        or args.data
        or os.environ.get("CORREO_DATA")  # read now: main() may run in a long-lived process
        or DEFAULT_DATA
    )
    args.data_dir = Path(data).absolute()
    try:
        result: int = args.func(args)
    except (ConfigError, TlsConfigError, StartupError, admin.AdminError) as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
