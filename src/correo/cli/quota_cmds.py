"""``correo user quota``: an account's storage and message limits (RFC 9208 resources).

Limits live in the store, beside the usage the store keeps; an account without limits
of its own has the server's ``[delivery] quota`` and ``quota_messages``.
"""

from __future__ import annotations

import argparse

from correo.cli.admin import AdminError, _directory, _with_store
from correo.config import ConfigError, load_config
from correo.config_rules import parse_size
from correo.store.api import MailStore, Quota, QuotaLimit, StoreError

__all__ = [
    "cmd_user_quota",
    "default_quota",
    "describe",
    "format_size",
    "list_quotas",
    "register",
]


def register(usub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = usub.add_parser(
        "quota",
        help="show an account's quota and usage, or set it: SIZE like 500M or 2G, "
        "'none' for no limit, 'default' for [delivery] quota",
    )
    a.add_argument("address", help="the account's mail address")
    a.add_argument("size", nargs="?", metavar="SIZE", help="storage limit: 500M, 2G, none, default")
    a.add_argument("--messages", metavar="N", help="message-count limit: a number, none or default")
    a.set_defaults(func=cmd_user_quota)


def format_size(octets: int) -> str:
    """``500M``-style, exact when it divides evenly, else one decimal."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if octets >= factor:
            whole, rest = divmod(octets, factor)
            return f"{whole}{unit}" if not rest else f"{octets / factor:.1f}{unit}"
    return f"{octets}B" if octets else "0"


def describe(quota: Quota) -> str:
    """One line: usage against each limit."""
    parts = []
    for name, used, limit, shown, default in (
        ("storage", quota.used_storage, quota.storage, format_size, quota.storage_default),
        ("messages", quota.used_messages, quota.messages, str, quota.messages_default),
    ):
        note = ", default" if default else ""
        if limit is None:
            parts.append(f"{name} {shown(used)} (no limit{note})")
        else:
            percent = 100 if limit == 0 else (100 * used) // limit
            parts.append(f"{name} {shown(used)} of {shown(limit)} ({percent}%{note})")
    return ", ".join(parts)


def default_quota(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The server's default limits from DATA/correo.toml; none when it cannot be read."""
    try:
        config = load_config(args.data_dir)
    except (ConfigError, OSError):
        return None, None
    storage = parse_size(config.delivery.quota) if config.delivery.quota else None
    return storage, config.delivery.quota_messages or None


def _limit(value: str, parse: type[int] | None, what: str) -> QuotaLimit:
    word = value.strip().lower()
    if word in ("none", "unlimited"):
        return None
    if word == "default":
        return "default"
    try:
        if parse is None:
            return parse_size(value)
        number = int(value)
    except ValueError as exc:
        raise AdminError(f"{what}: {exc}") from None
    if number < 0:
        raise AdminError(f"{what} must not be negative")
    return number


def cmd_user_quota(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        name = directory.account_name(args.address)
        if not directory.user_exists(name):
            raise AdminError(f"no user {name}")
    finally:
        directory.close()
    storage = None if args.size is None else _limit(args.size, None, "SIZE")
    messages = None if args.messages is None else _limit(args.messages, int, "--messages")
    defaults = default_quota(args)

    async def act(store: MailStore) -> str:
        store.set_default_quota(*defaults)
        try:
            if args.size is None and args.messages is None:
                return f"{name}: {describe(await store.get_quota(name))}"
            now = await store.get_quota(name)
            new_storage = (
                storage
                if args.size is not None
                else ("default" if now.storage_default else now.storage)
            )
            new_messages = (
                messages
                if args.messages is not None
                else ("default" if now.messages_default else now.messages)
            )
            quota = await store.set_quota(name, new_storage, new_messages)
        except StoreError as exc:
            raise AdminError(f"cannot set the quota: {exc}") from None
        return f"quota of {name} set: {describe(quota)}"

    print(_with_store(args, act))
    return 0


async def list_quotas(args: argparse.Namespace, store: MailStore, users: list[str]) -> int:
    """``user list --quota``: every account with its usage and limits."""
    store.set_default_quota(*default_quota(args))
    for user in users:
        print(f"{user}  {describe(await store.get_quota(user))}")
    return 0
