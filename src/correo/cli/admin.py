"""Account, alias, domain and queue administration commands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from correo.config import AuthSettings
from correo.directory import Directory, DirectoryError
from correo.directory.factory import directory_for_data
from correo.mailauth.keys import ensure_domain_keys
from correo.store.api import MailStore, StoreError
from correo.store.factory import store_for_data

__all__ = [
    "AdminError",
    "cmd_alias_add",
    "cmd_alias_del",
    "cmd_alias_list",
    "cmd_domain_add",
    "cmd_domain_list",
    "cmd_queue_delete",
    "cmd_queue_flush",
    "cmd_queue_list",
    "cmd_queue_show",
    "cmd_user_add",
    "cmd_user_admin",
    "cmd_user_del",
    "cmd_user_list",
    "cmd_user_passwd",
]


T = TypeVar("T")


class AdminError(Exception):
    """An administration command failed; the message says why."""


def _directory(args: argparse.Namespace) -> Directory:
    if not (args.data_dir / "correo.toml").exists():
        raise AdminError(
            f"{args.data_dir} is not a correo data folder; "
            "create it with: correo init --data DIR --domain DOMAIN"
        )
    try:
        return directory_for_data(args.data_dir)  # DATA/directory.db, or the cluster's
    except DirectoryError as exc:
        raise AdminError(str(exc)) from None


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


def _min_password_length(data_dir: Path) -> int:
    """``[auth] min_password_length``, read alone: fixing a password must not wait for a
    config error elsewhere in the file to be fixed."""
    default = AuthSettings().min_password_length
    try:
        with open(data_dir / "correo.toml", "rb") as fh:
            auth = tomllib.load(fh).get("auth", {})
    except FileNotFoundError:
        return default
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AdminError(f"cannot read {data_dir / 'correo.toml'}: {exc}") from None
    value = auth.get("min_password_length", default) if isinstance(auth, dict) else default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AdminError(
            f"config error: [auth] min_password_length: must be a whole number, not {value!r}"
        )
    return value


def _new_password(args: argparse.Namespace) -> str:
    """The password to set, refused when shorter than ``[auth] min_password_length``."""
    password = _read_password(args.address)
    minimum = _min_password_length(args.data_dir)
    if len(password) < minimum:
        raise AdminError(
            f"password refused: {len(password)} characters, fewer than"
            f" [auth] min_password_length = {minimum}"
        )
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
    password = _new_password(args)
    directory = _directory(args)
    try:
        name = directory.account_name(args.address)
        exists = directory.user_exists(name)
    except DirectoryError as exc:
        raise AdminError(str(exc)) from None
    finally:
        directory.close()
    if exists:
        raise AdminError(f"user {name} already exists")

    async def set_aside(store: MailStore) -> str | None:
        # Data under a name nobody holds (left by an older correo's `user del`, or written
        # by a session still open when the account went) must not go to the new owner.
        return await store.set_aside_account(name)

    kept = _with_store(args, set_aside)
    if kept is not None:
        print(f"data left under {name} by an earlier account was set aside as {kept!r}")
    _run(args, lambda d: d.add_user(args.address, password))

    async def create(store: MailStore) -> None:
        await store.create_account(name)

    _with_store(args, create)
    print(f"added {args.address}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password = _new_password(args)
    _run(args, lambda d: d.set_password(args.address, password))
    print(f"password changed for {args.address}")
    return 0


def cmd_user_admin(args: argparse.Namespace) -> int:
    on = args.state == "on"
    _run(args, lambda d: d.set_admin(args.address, on))
    print(f"{args.address} is {'an' if on else 'no longer an'} administrator")
    return 0


def cmd_user_del(args: argparse.Namespace) -> int:
    """Remove the login first (no new session or delivery reaches the account), then
    its data: deleted, or with ``--keep-data`` set aside where no new account finds it."""
    directory = _directory(args)
    try:
        name = directory.account_name(args.address)
        directory.del_user(args.address)
        aliases = [alias for alias, target in directory.aliases() if target == name]
    except DirectoryError as exc:
        raise AdminError(str(exc)) from None
    finally:
        directory.close()

    async def remove(store: MailStore) -> str | None:
        if args.keep_data:
            return await store.set_aside_account(name)
        await store.delete_account(name)
        return None

    try:
        kept = _with_store(args, remove)
    except (StoreError, AdminError) as exc:
        raise AdminError(
            f"removed {name} from the directory, but not its data ({exc}); "
            "it is set aside if the address is added again"
        ) from None
    if args.keep_data:
        where = f"kept as {kept!r}" if kept is not None else "there was no data to keep"
        print(f"removed {name} ({where})")
    else:
        print(f"removed {name} and its data")
    for alias in aliases:
        print(f"note: alias {alias} still points to {name}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    if args.kept:
        return _with_store(args, _list_kept)
    directory = _directory(args)
    try:
        users = list(directory.users())
    finally:
        directory.close()
    if getattr(args, "quota", False):
        from correo.cli.quota_cmds import list_quotas

        return _with_store(args, lambda store: list_quotas(args, store, users))
    for user in users:
        print(user)
    return 0


async def _list_kept(store: MailStore) -> int:
    """Data set aside by ``user del --keep-data``: name and message count."""
    for name, messages in await store.kept_accounts():
        print(f"{name}  {messages} message(s)")
    return 0


def cmd_alias_add(args: argparse.Namespace) -> int:
    _run(args, lambda d: d.add_alias(args.alias, args.target))
    print(f"added alias {args.alias} -> {args.target}")
    return 0


def cmd_alias_del(args: argparse.Namespace) -> int:
    _run(args, lambda d: d.del_alias(args.alias))
    print(f"removed alias {args.alias}")
    return 0


def cmd_alias_list(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        for alias, target in directory.aliases():
            print(f"{alias} {target}")
    finally:
        directory.close()
    return 0


def cmd_domain_add(args: argparse.Namespace) -> int:

    def add(directory: Directory) -> None:
        directory.add_domain(args.domain)
        ensure_domain_keys(directory.dkim, args.domain)  # DKIM keys for outbound signing

    _run(args, add)
    print(f"added domain {args.domain} (its DNS records: correo dns {args.domain})")
    return 0


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
        store = store_for_data(args.data_dir)
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


def _with_store(args: argparse.Namespace, action: Callable[[MailStore], Awaitable[T]]) -> T:
    """Open the store (also while the server runs: SQLite WAL), run, close."""
    _directory(args).close()

    async def run() -> T:
        try:
            store = store_for_data(args.data_dir)
            await store.open()
        except StoreError as exc:
            raise AdminError(f"cannot open the mail store: {exc}") from None
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def cmd_queue_show(args: argparse.Namespace) -> int:
    async def show(store: MailStore) -> int:
        msg = await store.queue_get(args.id)
        if msg is None:
            raise AdminError(f"no queued message {args.id}")
        now = time.time()
        print(f"id: {msg.id}\nsender: <{msg.sender}>\nsize: {msg.size}")
        print(f"age: {_age(int(now - msg.created))}\nbody: {msg.body or '7BIT'}")
        for label, value in (
            ("envid", msg.envid),
            ("ret", msg.ret),
            ("authenticated", msg.authenticated),
        ):
            if value:
                print(f"{label}: {value}")
        if msg.smtputf8:
            print("smtputf8: yes")
        for r in msg.recipients:
            due = (
                ""
                if r.status != "queued"
                else f" next in {_age(max(0, int(r.next_attempt - now)))}"
            )
            print(f"  {r.address} [{r.status}] attempts={r.attempts}{due}")
            if r.last_error:
                print(f"      {r.last_error}")
        header = bytearray()
        async for chunk in store.queue_read(args.id):
            header += chunk
            if b"\r\n\r\n" in header or len(header) > 65536:
                break
        end = header.find(b"\r\n\r\n")
        print("--")
        print(bytes(header[: end if end >= 0 else 65536]).decode("utf-8", "replace"))
        return 0

    return _with_store(args, show)


def cmd_queue_flush(args: argparse.Namespace) -> int:
    """``flush [ID]`` and ``retry ID``: due now; a running server picks it up at its next poll."""

    async def flush(store: MailStore) -> int:
        count = await store.queue_retry(args.id, time.time())
        if args.id is not None and count == 0:
            raise AdminError(f"no queued recipient in message {args.id}")
        print(f"{count} recipient(s) due now")
        return 0

    return _with_store(args, flush)


def cmd_queue_delete(args: argparse.Namespace) -> int:
    async def delete(store: MailStore) -> int:
        if not await store.queue_delete(args.id):
            raise AdminError(f"no queued message {args.id}")
        print(f"deleted {args.id}")
        return 0

    return _with_store(args, delete)


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
