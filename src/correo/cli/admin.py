"""Account, alias, domain and queue administration commands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Callable

from correo.directory import Directory, DirectoryError
from correo.store.sqlite import SqliteStore

__all__ = [
    "AdminError",
    "cmd_alias_add",
    "cmd_alias_del",
    "cmd_alias_list",
    "cmd_domain_add",
    "cmd_domain_list",
    "cmd_queue_list",
    "cmd_user_add",
    "cmd_user_del",
    "cmd_user_list",
    "cmd_user_passwd",
]


class AdminError(Exception):
    """An administration command failed; the message says why."""


def _directory(args: argparse.Namespace) -> Directory:
    if not (args.data_dir / "correo.toml").exists():
        raise AdminError(
            f"{args.data_dir} is not a correo data folder; "
            "create it with: correo init --data DIR --domain DOMAIN"
        )
    return Directory(args.data_dir / "directory.db")


def _read_password(address: str) -> str:
    """Prompt twice on a terminal; otherwise take one line from stdin (scripts)."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"Password for {address}: ")
        if getpass.getpass("Again: ") != first:
            raise AdminError("passwords do not match")
        return first
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise AdminError("no password on standard input")
    return password


def _run(args: argparse.Namespace, action: Callable[[Directory], None]) -> int:
    directory = _directory(args)
    try:
        action(directory)
    except DirectoryError as exc:
        raise AdminError(str(exc)) from None
    finally:
        directory.close()
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _read_password(args.address)
    _run(args, lambda d: d.add_user(args.address, password))

    async def create() -> None:
        store = SqliteStore(args.data_dir / "store")
        await store.open()
        try:
            directory = _directory(args)
            account = directory.resolve(args.address)
            directory.close()
            if account is not None and account.account:
                await store.create_account(account.account)
        finally:
            await store.close()

    asyncio.run(create())
    print(f"added {args.address}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args.address)
    _run(args, lambda d: d.set_password(args.address, password))
    print(f"password changed for {args.address}")
    return 0


def cmd_user_del(args: argparse.Namespace) -> int:
    _run(args, lambda d: d.del_user(args.address))
    print(f"removed {args.address} (stored mail kept)")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        for user in directory.users():
            print(user)
    finally:
        directory.close()
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    return _run(args, lambda d: d.add_alias(args.alias, args.target))


def cmd_alias_del(args: argparse.Namespace) -> int:
    return _run(args, lambda d: d.del_alias(args.alias))


def cmd_alias_list(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        for alias, target in directory.aliases():
            print(f"{alias} {target}")
    finally:
        directory.close()
    return 0


def cmd_domain_add(args: argparse.Namespace) -> int:
    return _run(args, lambda d: d.add_domain(args.domain))


def cmd_domain_list(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        for domain in directory.domains():
            print(domain)
    finally:
        directory.close()
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    _directory(args).close()

    async def read() -> None:
        store = SqliteStore(args.data_dir / "store")
        await store.open()
        try:
            entries = await store.queue_list()
        finally:
            await store.close()
        if not entries:
            print("Mail queue is empty")
            return
        now = time.time()
        for entry in entries:
            age = int(now - entry.created)
            print(f"{entry.id:<10} {entry.size:>9} {_age(age):>6}  <{entry.sender}>")
            for address, status, error in entry.recipients:
                print(f"{'':28}{address}  [{status}]{'  ' + error if error else ''}")
        print(f"-- {len(entries)} message(s)")

    asyncio.run(read())
    return 0


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
