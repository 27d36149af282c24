"""``correo mail …``: send, read and fetch mail from the command line.

Every subcommand works on one account of ``~/.config/correo/client.toml`` (see
docs/mua.md); composition is :func:`correo.message.compose`, servers are spoken to with
the standard library (:mod:`correo.mua.client`).
"""

from __future__ import annotations

import argparse
import mimetypes
import sys
from collections.abc import Callable, Sequence
from email.utils import getaddresses, parseaddr
from pathlib import Path

from correo.message import Attachment, compose, parse_structure
from correo.message.headers import drop_fields
from correo.mua.client import ClientError, Imap, connect_imap, submit
from correo.mua.fetch import fetch
from correo.mua.profile import Account, ProfileError, load_account, password_for
from correo.mua.progress import Progress
from correo.mua.render import attachments, body_text, header_value, render

__all__ = ["register", "strip_bcc"]

_UID = "the message's UID (from mail list or mail search)"
_UIDS = "message UIDs (from mail list or mail search)"

_FLAG_NAMES = {
    "seen": "\\Seen",
    "flagged": "\\Flagged",
    "answered": "\\Answered",
    "draft": "\\Draft",
    "deleted": "\\Deleted",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mail", help="command-line mail client: send, read, fetch (docs/mua.md)")
    p.add_argument("--account", default=None, help="account name in client.toml")
    p.add_argument("--config", type=Path, default=None, help="client.toml to use")
    msub = p.add_subparsers(dest="mail_command", metavar="ACTION")
    msub.required = True

    def compose_options(a: argparse.ArgumentParser) -> None:
        a.add_argument("--body", default=None, metavar="TEXT", help="body text")
        a.add_argument(
            "--body-file",
            type=Path,
            default=None,
            metavar="FILE",
            help="body from a file (- stdin)",
        )
        a.add_argument("--html", type=Path, default=None, metavar="FILE", help="HTML body file")
        a.add_argument(
            "--attach",
            nargs="+",
            action="extend",
            type=Path,
            default=[],
            metavar="FILE",
            help="attach files (repeatable)",
        )
        a.add_argument(
            "--inline",
            nargs="+",
            action="extend",
            type=Path,
            default=[],
            metavar="FILE",
            help="images for the HTML (cid: is the file name): multipart/related",
        )
        a.add_argument("--dry-run", action="store_true", help="print the MIME, send nothing")
        a.add_argument("--no-save", action="store_true", help="do not APPEND to Sent")

    a = msub.add_parser("send", help="compose and submit a message")
    a.add_argument(
        "--from",
        dest="from_",
        metavar="ADDRESS",
        default=None,
        help="the From: line, e.g. 'Alice <alice@example.org>' (default: the profile's email)",
    )
    for name, what in (("--to", "To:"), ("--cc", "Cc:"), ("--bcc", "hidden (Bcc)")):
        a.add_argument(
            name,
            action="append",
            default=[],
            metavar="ADDRESS",
            help=f"a {what} recipient (repeatable; commas separate several)",
        )
    a.add_argument("--subject", default="", metavar="TEXT", help="the Subject: line")
    compose_options(a)
    a.set_defaults(func=cmd_send)

    def folder(a: argparse.ArgumentParser) -> None:
        a.add_argument("--folder", default="INBOX", help="the mailbox (default: INBOX)")

    a = msub.add_parser("list", help="list the newest messages of a folder")
    folder(a)
    a.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    a.set_defaults(func=cmd_list)

    a = msub.add_parser("read", help="show a message (marks it seen)")
    folder(a)
    a.add_argument("uid", type=int, help=_UID)
    a.add_argument("--raw", action="store_true", help="print the raw bytes")
    a.set_defaults(func=cmd_read)

    a = msub.add_parser("reply", help="reply to a message")
    folder(a)
    a.add_argument("uid", type=int, help=_UID)
    a.add_argument("--all", action="store_true", help="reply to all recipients")
    compose_options(a)
    a.set_defaults(func=cmd_reply)

    a = msub.add_parser("forward", help="forward a message with its attachments")
    folder(a)
    a.add_argument("uid", type=int, help=_UID)
    a.add_argument(
        "--to", action="append", required=True, metavar="ADDRESS", help="a recipient (repeatable)"
    )
    compose_options(a)
    a.set_defaults(func=cmd_forward)

    a = msub.add_parser("move", help="move messages to another folder")
    folder(a)
    a.add_argument("uids", type=int, nargs="+", metavar="UID", help=_UIDS)
    a.add_argument("--to", required=True, dest="target", metavar="FOLDER", help="the mailbox")
    a.set_defaults(func=cmd_move)

    a = msub.add_parser("flag", help="set or clear flags (seen, flagged, answered, … or keyword)")
    folder(a)
    a.add_argument("uids", type=int, nargs="+", metavar="UID", help=_UIDS)
    a.add_argument(
        "--set", action="append", default=[], dest="set_flags", metavar="FLAG", help="flag to set"
    )
    a.add_argument(
        "--clear",
        action="append",
        default=[],
        dest="clear_flags",
        metavar="FLAG",
        help="flag to clear",
    )
    a.set_defaults(func=cmd_flag)

    a = msub.add_parser("delete", help="move messages to Trash (or --expunge them)")
    folder(a)
    a.add_argument("uids", type=int, nargs="+", metavar="UID", help=_UIDS)
    a.add_argument("--expunge", action="store_true", help="remove for good")
    a.set_defaults(func=cmd_delete)

    a = msub.add_parser("search", help="search a folder")
    folder(a)
    for name, metavar, what in (
        ("--from", "TEXT", "From: contains TEXT"),
        ("--to", "TEXT", "To: contains TEXT"),
        ("--subject", "TEXT", "Subject: contains TEXT"),
        ("--text", "TEXT", "the header or body contains TEXT"),
        ("--since", "DATE", "sent on or after DATE (YYYY-MM-DD)"),
        ("--before", "DATE", "sent before DATE (YYYY-MM-DD)"),
    ):
        a.add_argument(
            name, dest=name[2:].replace("-", "_") + "_", default=None, metavar=metavar, help=what
        )
    a.add_argument("--unseen", action="store_true", help="only messages not yet seen")
    a.add_argument("--flagged", action="store_true", help="only flagged messages")
    a.set_defaults(func=cmd_search)

    a = msub.add_parser("save-attachments", help="write a message's attachments to a folder")
    folder(a)
    a.add_argument("uid", type=int, help=_UID)
    a.add_argument("--dir", type=Path, default=Path(), help="where to write them (default: here)")
    a.set_defaults(func=cmd_save_attachments)

    a = msub.add_parser("fetch", help="retrieve mail (POP3 or IMAP) into a Maildir or mbox")
    proto = a.add_mutually_exclusive_group()
    proto.add_argument(
        "--pop3", action="store_const", const="pop3", dest="protocol", help="fetch over POP3"
    )
    proto.add_argument(
        "--imap", action="store_const", const="imap", dest="protocol", help="fetch over IMAP"
    )
    dest = a.add_mutually_exclusive_group(required=True)
    dest.add_argument("--maildir", type=Path, metavar="PATH", help="store into this Maildir")
    dest.add_argument("--mbox", type=Path, metavar="PATH", help="append to this mbox file")
    a.add_argument("--delete", action="store_true", help="delete on the server once stored")
    folder(a)
    a.set_defaults(func=cmd_fetch)


# -- helpers ---------------------------------------------------------------------------


def _run(args: argparse.Namespace, action: Callable[[Account], int]) -> int:
    try:
        account = load_account(args.account, args.config)
        return action(account)
    except (ProfileError, ClientError, OSError, ValueError) as exc:
        print(f"correo mail: {exc}", file=sys.stderr)
        return 1


def _with_imap(
    args: argparse.Namespace, action: Callable[[Account, Imap], int], readonly: bool = False
) -> int:
    def go(account: Account) -> int:
        imap = connect_imap(account)
        try:
            imap.select(args.folder, readonly)
            return action(account, imap)
        finally:
            imap.close()

    return _run(args, go)


def _addresses(values: Sequence[str]) -> list[tuple[str, str]]:
    return [(n, a) for n, a in getaddresses(list(values)) if a]


def strip_bcc(message: bytes) -> bytes:
    """The message without its Bcc: field (RFC 5322 §3.6.3: hidden from recipients)."""
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 2 :])
    return drop_fields(head, (b"bcc:",)) + body


def _body(args: argparse.Namespace) -> str:
    if args.body is not None:
        return str(args.body)
    if args.body_file is not None:
        if str(args.body_file) == "-":
            return sys.stdin.read()
        return Path(args.body_file).read_text("utf-8")
    if args.html is None and not sys.stdin.isatty():
        return sys.stdin.read()
    return ""


def _files(args: argparse.Namespace) -> list[Attachment]:
    out = [Attachment(p.read_bytes(), p.name, mimetypes.guess_type(p.name)[0]) for p in args.attach]
    out += [
        Attachment(p.read_bytes(), p.name, mimetypes.guess_type(p.name)[0], content_id=p.name)
        for p in args.inline
    ]
    return out


def _deliver(
    args: argparse.Namespace,
    account: Account,
    *,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]] = (),  # type: ignore[assignment]
    bcc: list[tuple[str, str]] = (),  # type: ignore[assignment]
    subject: str,
    text: str | None,
    extra: Sequence[tuple[str, str]] = (),
    more_files: Sequence[Attachment] = (),
    imap: Imap | None = None,
) -> int:
    from_ = getattr(args, "from_", None) or account.email
    html = Path(args.html).read_text("utf-8") if args.html is not None else None
    domain = parseaddr(from_)[1].rpartition("@")[2] or "localhost"
    message = compose(
        from_=from_,
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text=text if (text or html is None) else None,
        html=html,
        attachments=[*_files(args), *more_files],
        domain=domain,
        extra_headers=extra,
    )
    if not to and not cc and not bcc:
        raise ValueError("no recipients: give --to, --cc or --bcc")
    if args.dry_run:
        sys.stdout.write(message.decode("utf-8", "replace").replace("\r\n", "\n"))
        return 0
    password = password_for(account)
    recipients = [a for _, a in (*to, *cc, *bcc)]
    submit(account, parseaddr(from_)[1], recipients, strip_bcc(message), password)
    print(f"sent to {', '.join(recipients)}")
    if not args.no_save and account.imap is not None:
        own = imap or connect_imap(account, password)
        try:
            sent = account.sent_folder or own.special_folder("\\Sent", "Sent")
            own.append(sent, message)
        finally:
            if imap is None:
                own.close()
    return 0


# -- commands --------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    def go(account: Account) -> int:
        return _deliver(
            args,
            account,
            to=_addresses(args.to),
            cc=_addresses(args.cc),
            bcc=_addresses(args.bcc),
            subject=args.subject,
            text=_body(args),
        )

    if args.dry_run and args.from_:  # nothing is sent: no profile, server or password needed
        try:
            return go(Account(name="", email=args.from_, user=parseaddr(args.from_)[1]))
        except (OSError, ValueError) as exc:
            print(f"correo mail: {exc}", file=sys.stderr)
            return 1
    return _run(args, go)


def _summary_line(uid: int, flags: Sequence[str], header: bytes) -> str:
    marks = ("N" if "\\Seen" not in flags else " ") + ("F" if "\\Flagged" in flags else " ")
    who = header_value(header, "from") or ""
    subject = header_value(header, "subject") or ""
    date = header_value(header, "date") or ""
    return f"{uid:>6} {marks} {date[:31]:<31} {who[:28]:<28} {subject}"


def cmd_list(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        uids = imap.search(["ALL"])[-args.limit :] if args.limit > 0 else []
        for m in imap.headers(uids):
            print(_summary_line(m.uid, m.flags, m.header))
        return 0

    return _with_imap(args, go, readonly=True)


def cmd_read(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        data = imap.fetch(args.uid, peek=False)  # RFC 9051 §6.4.5: BODY[] sets \Seen
        if args.raw:
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(render(data))
        return 0

    return _with_imap(args, go)


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


def cmd_reply(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        data = imap.fetch(args.uid)
        root = parse_structure(data)
        me = parseaddr(account.email)[1].lower()
        sender = header_value(data, "reply-to", root) or header_value(data, "from", root) or ""
        to = _addresses([sender])
        cc: list[tuple[str, str]] = []
        if args.all:
            others = [header_value(data, f, root) or "" for f in ("to", "cc")]
            taken = {a.lower() for _, a in to} | {me}
            for name, addr in _addresses(others):
                if addr.lower() not in taken:
                    cc.append((name, addr))
                    taken.add(addr.lower())
        subject = header_value(data, "subject", root) or ""
        if not subject.lower().startswith("re:"):
            subject = "Re: " + subject
        extra: list[tuple[str, str]] = []
        msgid = header_value(data, "message-id", root)
        if msgid:  # RFC 5322 §3.6.4
            refs = header_value(data, "references", root) or ""
            extra = [("In-Reply-To", msgid), ("References", f"{refs} {msgid}".strip())]
        who = header_value(data, "from", root) or "someone"
        when = header_value(data, "date", root) or ""
        text = f"{_body(args)}\n\nOn {when}, {who} wrote:\n{_quote(body_text(data, root))}\n"
        code = _deliver(
            args, account, to=to, cc=cc, subject=subject, text=text, extra=extra, imap=imap
        )
        if code == 0 and not args.dry_run:
            imap.store([args.uid], "+", ["\\Answered"])
        return code

    return _with_imap(args, go)


def cmd_forward(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        data = imap.fetch(args.uid)
        root = parse_structure(data)
        subject = header_value(data, "subject", root) or ""
        if not subject.lower().startswith(("fwd:", "fw:")):
            subject = "Fwd: " + subject
        lines = ["", "---------- Forwarded message ----------"]
        for name in ("from", "date", "subject", "to", "cc"):
            value = header_value(data, name, root)
            if value:
                lines.append(f"{name.capitalize()}: {value}")
        lines += ["", body_text(data, root)]
        # Inline forward: the original's text plus its attachments, byte for byte (a
        # message/rfc822 part would have to stay 7bit/8bit, RFC 2046 §5.2.1).
        files = [Attachment(a.data, a.filename, a.content_type) for a in attachments(data, root)]
        text = _body(args) + "\n".join(lines)
        return _deliver(
            args,
            account,
            to=_addresses(args.to),
            subject=subject,
            text=text,
            more_files=files,
            imap=imap,
        )

    return _with_imap(args, go)


def cmd_move(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        imap.move(args.uids, args.target)
        print(f"moved {len(args.uids)} message(s) to {args.target}")
        return 0

    return _with_imap(args, go)


def _flag_name(name: str) -> str:
    return _FLAG_NAMES.get(name.lower().lstrip("\\"), name)


def cmd_flag(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        if not args.set_flags and not args.clear_flags:
            raise ValueError("give --set FLAG and/or --clear FLAG")
        if args.set_flags:
            imap.store(args.uids, "+", [_flag_name(f) for f in args.set_flags])
        if args.clear_flags:
            imap.store(args.uids, "-", [_flag_name(f) for f in args.clear_flags])
        return 0

    return _with_imap(args, go)


def cmd_delete(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        trash = imap.special_folder("\\Trash", "Trash")
        if args.expunge or args.folder == trash:
            imap.delete(args.uids)
            print(f"deleted {len(args.uids)} message(s)")
        else:
            imap.move(args.uids, trash)
            print(f"moved {len(args.uids)} message(s) to {trash}")
        return 0

    return _with_imap(args, go)


def cmd_search(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        criteria: list[str] = []
        if args.unseen:
            criteria.append("UNSEEN")
        if args.flagged:
            criteria.append("FLAGGED")
        for key in ("since", "before"):
            value = getattr(args, key + "_")
            if value:
                criteria += [key.upper(), value]  # RFC 9051 §6.4.4: date as 1-Feb-2024
        strings = [(k.upper(), getattr(args, k + "_")) for k in ("from", "to", "subject", "text")]
        # ASCII strings first, one non-ASCII string last (sent as a literal).
        strings = sorted((kv for kv in strings if kv[1]), key=lambda kv: not kv[1].isascii())
        for key, value in strings:
            criteria += [key, value if not value.isascii() else '"' + value.replace('"', "") + '"']
        uids = imap.search(criteria)
        for m in imap.headers(uids):
            print(_summary_line(m.uid, m.flags, m.header))
        return 0

    return _with_imap(args, go, readonly=True)


def _safe_name(name: str, taken: set[str]) -> str:
    base = Path(name.replace("\\", "/")).name.strip().lstrip(".") or "attachment.bin"
    base = "".join(c for c in base if c.isprintable())
    stem, dot, ext = base.rpartition(".")
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}{dot}{ext}" if dot else f"{base}-{n}"
    taken.add(candidate)
    return candidate


def cmd_save_attachments(args: argparse.Namespace) -> int:
    def go(account: Account, imap: Imap) -> int:
        data = imap.fetch(args.uid)
        args.dir.mkdir(parents=True, exist_ok=True)
        taken = {p.name for p in args.dir.iterdir()}
        for a in attachments(data):
            target = args.dir / _safe_name(a.filename, taken)
            target.write_bytes(a.data)
            print(f"{target} ({a.content_type}, {len(a.data)} bytes)")
        return 0

    return _with_imap(args, go, readonly=True)


def cmd_fetch(args: argparse.Namespace) -> int:
    def go(account: Account) -> int:
        protocol = args.protocol or ("pop3" if account.pop3 is not None else "imap")
        progress = Progress("fetch")
        result = fetch(
            account,
            protocol=protocol,
            maildir=args.maildir,
            mbox=args.mbox,
            keep=not args.delete,
            folder=args.folder,
            progress=progress,
        )
        progress.finish()
        print(
            f"fetched {result.fetched}, already had {result.skipped}, "
            f"deleted on server {result.deleted}"
        )
        return 0

    return _run(args, go)
