"""``correo sendmail``: the sendmail(8) command line for cron jobs and scripts.

It reads one message on stdin and files it the way the invoking local user would
submit it: envelope sender ``-f`` or ``$USER@<first local domain>``, From/Date/
Message-ID added when missing (RFC 6409 §8), ``-t`` taking recipients from To/Cc/Bcc
and removing Bcc.  It writes to the store directly, so it works whether or not the
server runs; the running server's queue runner finds remote recipients at its next
poll.  Exit codes follow sysexits(3) as sendmail's do.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from typing import BinaryIO

from correo.config import load_config
from correo.delivery.trace import return_path_field
from correo.directory.factory import open_directory
from correo.message.headers import addresses_in, parse_fields
from correo.store.api import DeliveryTarget, Envelope, QueuedRecipient
from correo.store.factory import store_for_data

__all__ = ["add_parser", "cmd_sendmail", "prepare"]

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL = 64, 65, 67, 70, 75


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sendmail",
        help="queue a message from stdin, like sendmail(8) (install as /usr/sbin/sendmail)",
    )
    p.add_argument("-t", action="store_true", help="take recipients from To, Cc and Bcc")
    p.add_argument("-f", "-r", dest="sender", metavar="SENDER", help="envelope sender")
    p.add_argument("-F", dest="fullname", metavar="NAME", help="full name for a new From:")
    p.add_argument("-i", action="store_true", help="a lone '.' line does not end the message")
    p.add_argument("-o", dest="options", action="append", default=[], help="-oi; others ignored")
    p.add_argument("-B", dest="body_type", metavar="TYPE", help="ignored (8BITMIME is detected)")
    p.add_argument("recipients", nargs="*", help="envelope recipients (with -t: added to them)")
    p.set_defaults(func=cmd_sendmail)


def _read_message(stream: BinaryIO, dot_ends: bool, limit: int) -> bytes:
    """stdin to CRLF lines; with ``dot_ends`` a line holding only "." ends the input."""
    raw = stream.read(limit + 1) if limit else stream.read()
    if limit and len(raw) > limit:
        raise ValueError("message too large")
    text = raw.replace(b"\r\n", b"\n")
    if dot_ends:
        if text.startswith(b".\n") or text == b".":
            text = b""
        cut = text.find(b"\n.\n")
        if cut >= 0:
            text = text[: cut + 1]
        elif text.endswith(b"\n."):
            text = text[:-1]
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return text.replace(b"\n", b"\r\n")


def prepare(
    message: bytes, *, sender: str, fullname: str | None, extract: bool, hostname: str
) -> tuple[bytes, list[str]]:
    """Fix up the header section; returns (message, recipients found by ``-t``)."""
    end = message.find(b"\r\n\r\n")
    if message.startswith(b"\r\n"):
        header, body = b"", message
    elif end < 0:
        header, body = message, b"\r\n"
    else:
        header, body = message[: end + 2], message[end + 2 :]
    fields = parse_fields(header)
    names = {n for n, _ in fields}
    found: list[str] = []
    if extract:
        for name, value in fields:
            if name in ("to", "cc", "bcc"):
                found += addresses_in(value)
        # Bcc recipients must not see each other (RFC 5322 §3.6.3): drop the field.
        kept, skipping = [], False
        for line in header.split(b"\r\n"):
            if line[:1] in (b" ", b"\t"):
                if not skipping:
                    kept.append(line)
                continue
            skipping = line.lower().startswith(b"bcc:")
            if not skipping:
                kept.append(line)
        header = b"\r\n".join(kept)
        if header and not header.endswith(b"\r\n"):
            header += b"\r\n"
    extra = []
    if "from" not in names:
        display = f'"{fullname}" ' if fullname else ""
        extra.append(f"From: {display}<{sender}>")
    if "date" not in names:
        extra.append(f"Date: {format_datetime(datetime.now(UTC), usegmt=True)}")
    if "message-id" not in names:
        extra.append(f"Message-ID: {make_msgid(domain=hostname)}")
    added = "".join(line + "\r\n" for line in extra).encode()
    return header + added + body, found


def cmd_sendmail(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.data_dir)
    except Exception as exc:
        print(f"sendmail: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    directory = open_directory(config)  # DATA/directory.db, or the cluster's
    try:
        domains = directory.domains()
        if not domains:
            print("sendmail: no local domain configured", file=sys.stderr)
            return EX_SOFTWARE
        user = os.environ.get("USER") or getpass.getuser()
        sender = args.sender if args.sender is not None else f"{user}@{domains[0]}"
        if sender == "<>":
            sender = ""
        sender = sender.strip("<>")
        dot_ends = not (args.i or "i" in args.options)
        try:
            data = _read_message(sys.stdin.buffer, dot_ends, config.limits.message_size)
        except ValueError as exc:
            print(f"sendmail: {exc}", file=sys.stderr)
            return EX_DATAERR
        message, found = prepare(
            data,
            sender=sender or f"MAILER-DAEMON@{config.hostname}",
            fullname=args.fullname,
            extract=args.t,
            hostname=config.hostname,
        )
        wanted = [*args.recipients, *found]
        if not wanted:
            print("sendmail: no recipients", file=sys.stderr)
            return EX_USAGE
        targets: list[DeliveryTarget] = []
        remote: list[QueuedRecipient] = []
        for rcpt in dict.fromkeys(r.strip().strip("<>") for r in wanted if r.strip()):
            address = rcpt if "@" in rcpt else f"{rcpt}@{domains[0]}"
            domain = address.rpartition("@")[2]
            if directory.is_local_domain(domain):
                res = directory.resolve(address)
                if res is None or (res.account is None and not res.forward):
                    print(f"sendmail: {address}: user unknown", file=sys.stderr)
                    return EX_NOUSER
                if res.account is not None and DeliveryTarget(res.account) not in targets:
                    targets.append(DeliveryTarget(res.account))
                remote += [QueuedRecipient(f) for f in res.forward]
            else:
                remote.append(QueuedRecipient(address))
    finally:
        directory.close()
    uid = os.getuid()
    stamp = format_datetime(datetime.now(UTC))
    # RFC 5321 §4.4: a trace field for the local submission, then Return-Path.
    received = (
        f"Received: by {config.hostname} (correo sendmail, from userid {uid});\r\n\t{stamp}\r\n"
    ).encode()
    return_path = return_path_field(sender)
    eight_bit = not message.isascii()
    envelope = Envelope(
        sender=sender,
        helo=socket.gethostname(),
        peer="127.0.0.1",
        authenticated=user,
        body="8BITMIME" if eight_bit else None,
    )

    async def store_it() -> None:
        store = store_for_data(args.data_dir)
        await store.open()
        try:
            spool = store.new_spool()
            spool.write(return_path)
            spool.write(received)
            spool.write(message)
            await store.deliver(spool, envelope, targets, remote, queue_skip=len(return_path))
        finally:
            await store.close()

    try:
        asyncio.run(store_it())
    except Exception as exc:
        print(f"sendmail: could not queue the message: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    return 0
