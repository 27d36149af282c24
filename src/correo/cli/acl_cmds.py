"""``correo acl set|delete|list``: share mailboxes with other accounts (RFC 4314 rights).

The same store entries IMAP's SETACL and GETACL read and write; works while the server
runs.  Rights are the RFC 4314 letters: l lookup, r read, s seen, w write, i insert,
p post, k create, x delete mailbox, t delete messages, e expunge, a administer.
"""

from __future__ import annotations

import argparse

from correo.cli.admin import AdminError, _directory, _with_store
from correo.imap.acl import ALL_RIGHTS, apply_rights, parse_rights
from correo.imap.errors import ParseError
from correo.store.api import MailboxError, MailStore

__all__ = ["register"]

_ANYONE = "anyone"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "acl",
        help="share a user's mailboxes with other users (IMAP ACL, RFC 4314)",
        description="Rights: l lookup, r read, s keep \\Seen, w write flags, i insert, "
        "p post, k create below, x delete mailbox, t delete messages, e expunge, "
        "a administer.  Shared mailboxes appear to the others under 'Other Users/OWNER/'.",
    )
    asub = p.add_subparsers(dest="acl_command", metavar="ACTION")
    asub.required = True
    a = asub.add_parser("set", help="grant rights: replace them, or add (+lr) or remove (-w)")
    a.add_argument("owner", help="the mailbox owner's address")
    a.add_argument("mailbox", help="the owner's mailbox, e.g. INBOX or Projects/2026")
    a.add_argument("identifier", help="the address of the user to share with, or 'anyone'")
    a.add_argument("rights", help="letters of lrswipkxtea; a leading + adds, - removes")
    a.set_defaults(func=cmd_acl_set)
    a = asub.add_parser("delete", help="take every right away from one user")
    a.add_argument("owner", help="the mailbox owner's address")
    a.add_argument("mailbox", help="the owner's mailbox")
    a.add_argument("identifier", help="the address of the user, or 'anyone'")
    a.set_defaults(func=cmd_acl_delete)
    a = asub.add_parser("list", help="who holds which rights on a mailbox (or on each)")
    a.add_argument("owner", help="the mailbox owner's address")
    a.add_argument("mailbox", nargs="?", help="one mailbox (default: every shared one)")
    a.set_defaults(func=cmd_acl_list)


def _user(args: argparse.Namespace, address: str, *, anyone: bool = False) -> str:
    if anyone and address.lower() == _ANYONE:
        return _ANYONE
    directory = _directory(args)
    try:
        if not directory.user_exists(address):
            raise AdminError(f"no user {address}")
        return directory.account_name(address)
    finally:
        directory.close()


def _mailbox(name: str) -> str:
    head, sep, rest = name.partition("/")
    return ("INBOX" + sep + rest) if head.upper() == "INBOX" else name


def cmd_acl_set(args: argparse.Namespace) -> int:
    owner = _user(args, args.owner)
    who = _user(args, args.identifier, anyone=True)
    if who == owner:
        raise AdminError("the owner always holds every right")
    try:
        mode, rights = parse_rights(args.rights)
    except ParseError as exc:
        raise AdminError(f"RIGHTS: {exc} (use letters of {ALL_RIGHTS})") from None
    mailbox = _mailbox(args.mailbox)

    async def act(store: MailStore) -> str:
        try:
            current = (await store.acl_get(owner, mailbox)).get(who, "")
            new = apply_rights(current, mode, rights)
            await store.acl_set(owner, mailbox, who, new)
        except MailboxError:
            raise AdminError(f"{owner} has no mailbox {mailbox}") from None
        return new

    new = _with_store(args, act)
    if new:
        print(f"{owner} {mailbox}: {who} now holds {new}")
    else:
        print(f"{owner} {mailbox}: {who} holds no rights now")
    return 0


def cmd_acl_delete(args: argparse.Namespace) -> int:
    owner = _user(args, args.owner)
    who = str(args.identifier)
    if who.lower() == _ANYONE:
        who = _ANYONE
    else:  # an entry may outlive nobody, but take the directory's spelling when it can
        try:
            who = _user(args, who)
        except AdminError:
            pass
    mailbox = _mailbox(args.mailbox)

    async def act(store: MailStore) -> bool:
        try:
            had = who in await store.acl_get(owner, mailbox)
            await store.acl_set(owner, mailbox, who, "")
        except MailboxError:
            raise AdminError(f"{owner} has no mailbox {mailbox}") from None
        return had

    if _with_store(args, act):
        print(f"{owner} {mailbox}: removed the rights of {who}")
    else:
        print(f"{owner} {mailbox}: {who} held no rights; nothing changed")
    return 0


def cmd_acl_list(args: argparse.Namespace) -> int:
    owner = _user(args, args.owner)

    async def act(store: MailStore) -> list[tuple[str, dict[str, str]]]:
        if args.mailbox is not None:
            names = [_mailbox(args.mailbox)]
        else:
            names = [m.name for m in await store.list_mailboxes(owner)]
        out = []
        for name in names:
            try:
                entries = await store.acl_get(owner, name)
            except MailboxError:
                raise AdminError(f"{owner} has no mailbox {name}") from None
            if entries or args.mailbox is not None:
                out.append((name, entries))
        return out

    found = _with_store(args, act)
    if not found:
        print(f"{owner} shares no mailbox")
    for name, entries in found:
        print(f"{name}: {owner} {ALL_RIGHTS} (owner)")
        for who, rights in sorted(entries.items()):
            print(f"{name}: {who} {rights}")
    return 0
