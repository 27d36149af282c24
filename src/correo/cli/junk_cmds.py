"""``correo junk train``: teach a user's classifier from a maildir, an mbox or a folder.

The same tokenizer and store counts as automatic training from IMAP moves; a
corpus of a few hundred spam and ham messages each is enough to start with.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from correo.config import load_config
from correo.junk.tokens import tokenize
from correo.store.api import MailStore, StoreError
from correo.store.factory import store_for_data

__all__ = ["register"]


async def _messages(
    args: argparse.Namespace, store: MailStore, account: str, limit: int
) -> AsyncIterator[bytes]:
    if args.maildir:
        box: mailbox.Mailbox[mailbox.Message] = mailbox.Maildir(args.maildir, create=False)
    elif args.mbox:
        box = mailbox.mbox(args.mbox, create=False)
    else:
        for info in await store.list_messages(account, args.folder):
            data = bytearray()
            async for chunk in store.read_message(account, args.folder, info.uid, end=limit):
                data += chunk
            yield bytes(data)
        return
    for key in box.iterkeys():
        with box.get_file(key) as fh:
            raw = fh.read(limit)
        yield raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def _train(args: argparse.Namespace) -> int:
    config = load_config(args.data_dir)
    limit = config.junk.max_size or 512 * 1024
    store = store_for_data(args.data_dir)
    await store.open()
    count = 0
    try:
        async for data in _messages(args, store, args.user, limit):
            await store.junk_learn(args.user, tokenize(data, max_bytes=limit), args.spam)
            count += 1
    finally:
        await store.close()
    print(f"trained {count} messages as {'spam' if args.spam else 'ham'} for {args.user}")
    return 0


def cmd_junk_train(args: argparse.Namespace) -> int:
    if args.maildir and not Path(args.maildir, "cur").is_dir():
        print(f"correo: {args.maildir} is not a maildir", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_train(args))
    except (OSError, StoreError) as exc:
        print(f"correo: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("junk", help="the junk filter's per-user classifier")
    jsub = p.add_subparsers(dest="junk_action", metavar="ACTION")
    jsub.required = True
    a = jsub.add_parser("train", help="learn messages as spam or ham for one user")
    a.add_argument("--user", required=True, help="the account, e.g. alice@example.org")
    kind = a.add_mutually_exclusive_group(required=True)
    kind.add_argument("--spam", action="store_true", dest="spam", help="the messages are spam")
    kind.add_argument("--ham", action="store_false", dest="spam", help="the messages are wanted")
    source = a.add_mutually_exclusive_group(required=True)
    source.add_argument("--maildir", metavar="PATH", help="the messages of a Maildir")
    source.add_argument("--mbox", metavar="PATH", help="the messages of an mbox file")
    source.add_argument("--folder", metavar="NAME", help="a mailbox of the user in the store")
    a.set_defaults(func=cmd_junk_train)
