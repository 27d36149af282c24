"""``correo sieve put|get|list|activate|deactivate|delete|check``: manage Sieve scripts.

The same store methods and validation ManageSieve uses, for administrators and
scripts; works while the server runs (the store is shared through SQLite WAL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from correo.config import load_config
from correo.directory import DirectoryError
from correo.directory.factory import directory_for_data
from correo.managesieve import script_name_error
from correo.sieve import check
from correo.store.api import MailboxError
from correo.store.factory import store_for_data

__all__ = ["register"]


class _Fail(Exception):
    pass


def _account(args: argparse.Namespace) -> str:
    directory = directory_for_data(args.data_dir)
    try:
        for address in directory.users():
            if address.lower() == args.user.lower():
                return str(address)
    finally:
        directory.close()
    raise _Fail(f"no such user: {args.user}")


def _read(path: str) -> str:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Fail("the script is not UTF-8") from None


def _errors(text: str, args: argparse.Namespace | None = None, account: str = "") -> list[str]:
    """Errors in the script; for an account, a literal vacation :from must be one of
    its own addresses (the ManageSieve rule)."""
    if args is None:
        return [str(e) for e in check(text)]
    directory = directory_for_data(args.data_dir)
    try:
        return [
            str(e) for e in check(text, sender_allowed=lambda a: directory.may_send_as(account, a))
        ]
    finally:
        directory.close()


async def _run(args: argparse.Namespace) -> int:
    action: str = args.sieve_action
    if action == "check":
        errors = _errors(_read(args.file))
        for e in errors:
            print(e, file=sys.stderr)
        return 1 if errors else 0
    load_config(args.data_dir)
    account = _account(args)
    store = store_for_data(args.data_dir)
    await store.open()
    try:
        if action == "list":
            for name, active in await store.sieve_list(account):
                print(f"{name}{'  (active)' if active else ''}")
        elif action == "get":
            text = await store.sieve_get(account, args.name)
            if text is None:
                raise _Fail(f"no script {args.name!r}")
            sys.stdout.write(text)
        elif action == "put":
            name_error = script_name_error(args.name)
            if name_error is not None:
                raise _Fail(f"script not stored: {name_error}")
            text = _read(args.file)
            errors = _errors(text, args, account)
            if errors:
                raise _Fail("script not stored:\n  " + "\n  ".join(errors))
            await store.sieve_put(account, args.name, text)
            if args.activate:
                await store.sieve_activate(account, args.name)
            then = " and made it the active script" if args.activate else ""
            print(f"stored script {args.name!r} for {account}{then}")
        elif action == "activate":
            await store.sieve_activate(account, args.name)
            print(f"{args.name!r} is now the active script of {account}")
        elif action == "deactivate":
            await store.sieve_activate(account, None)
            print(f"no active script for {account}: filtering is off")
        elif action == "delete":
            await store.sieve_delete(account, args.name)
            print(f"deleted script {args.name!r} of {account}")
    except MailboxError as exc:
        raise _Fail(str(exc)) from None
    finally:
        await store.close()
    return 0


def cmd_sieve(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (_Fail, OSError, DirectoryError) as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sieve", help="manage users' Sieve filter scripts")
    ssub = p.add_subparsers(dest="sieve_action", metavar="ACTION")
    ssub.required = True
    a = ssub.add_parser("list", help="list a user's scripts (the active one is marked)")
    a.add_argument("user", help="the account, e.g. alice@example.org")
    a = ssub.add_parser("get", help="print a script")
    a.add_argument("user", help="the account, e.g. alice@example.org")
    a.add_argument("name", help="the script's name")
    a = ssub.add_parser("put", help="store a script after checking it (FILE or - for stdin)")
    a.add_argument("user", help="the account, e.g. alice@example.org")
    a.add_argument("name", help="the script's name")
    a.add_argument("file", help="the script's file, or - for standard input")
    a.add_argument("--activate", action="store_true", help="also make it the active script")
    a = ssub.add_parser("activate", help="make a script the active one")
    a.add_argument("user", help="the account, e.g. alice@example.org")
    a.add_argument("name", help="the script's name")
    a = ssub.add_parser("deactivate", help="turn filtering off for a user")
    a.add_argument("user", help="the account, e.g. alice@example.org")
    a = ssub.add_parser("delete", help="delete an inactive script")
    a.add_argument("user", help="the account, e.g. alice@example.org")
    a.add_argument("name", help="the script's name")
    a = ssub.add_parser("check", help="check a script; errors with line and column")
    a.add_argument("file", help="the script's file, or - for standard input")
    p.set_defaults(func=cmd_sieve)
