"""Talking to servers with the standard library: imaplib, smtplib, poplib.

Why the stdlib and not ``imapclient``: no new dependency, and the few commands the
client needs (UID FETCH/SEARCH/STORE/MOVE, APPEND, LIST) are easy to parse here;
responses are matched with small regular expressions over bytes.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from correo.mua.profile import Account, Endpoint, ProfileError, password_for

__all__ = [
    "ClientError",
    "Imap",
    "ListedMessage",
    "connect_imap",
    "connect_pop3",
    "submit",
]

_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LIST = re.compile(rb'^\(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (.*)$')
_PARTIAL = 1 << 20  # large messages are fetched in 1 MiB pieces (bounded memory)


class ClientError(Exception):
    """A server refused something; the message carries its answer."""


def _need(endpoint: Endpoint | None, kind: str, account: Account) -> Endpoint:
    if endpoint is None:
        raise ProfileError(f"account {account.name} has no {kind} server configured")
    return endpoint


@dataclass(frozen=True, slots=True)
class ListedMessage:
    uid: int
    flags: tuple[str, ...]
    size: int
    header: bytes


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Imap:
    """A logged-in IMAP session with the helpers ``correo mail`` needs."""

    def __init__(self, conn: imaplib.IMAP4) -> None:
        self.conn = conn

    def _ok(self, typ: str, data: Sequence[object], what: str) -> None:
        if typ != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            raise ClientError(f"{what}: {detail or typ}")

    def close(self) -> None:
        try:
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def select(self, folder: str, readonly: bool = False) -> int:
        typ, data = self.conn.select(_quote(folder), readonly)
        self._ok(typ, data, f"cannot open {folder}")
        return int(data[0] or 0) if data and isinstance(data[0], bytes) else 0

    def uidvalidity(self) -> int:
        for item in self.conn.untagged_responses.get("UIDVALIDITY", []):
            if isinstance(item, bytes) and item.isdigit():
                return int(item)
        return 0

    def folders(self) -> list[tuple[str, tuple[str, ...]]]:
        typ, data = self.conn.list()
        self._ok(typ, data, "LIST failed")
        out = []
        for line in data:
            if not isinstance(line, bytes):
                continue
            m = _LIST.match(line)
            if m is None:
                continue
            name = m.group(2).strip()
            if name.startswith(b'"'):
                name = name[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
            out.append((name.decode("utf-8", "replace"), tuple(m.group(1).decode().split())))
        return out

    def special_folder(self, use: str, fallback: str) -> str:
        for name, attrs in self.folders():
            if use.lower() in (a.lower() for a in attrs):
                return name
        return fallback

    def search(self, criteria: Sequence[str]) -> list[int]:
        args = list(criteria) or ["ALL"]
        if any(not a.isascii() for a in args):
            # RFC 9051 §6.4.4: non-ASCII strings go as literals with CHARSET UTF-8
            self.conn.literal = args[-1].encode()  # type: ignore[assignment]  # stub says str
            typ, data = self.conn.uid("SEARCH", "CHARSET", "UTF-8", *args[:-1])
        else:
            typ, data = self.conn.uid("SEARCH", *args)
        self._ok(typ, data, "SEARCH failed")
        raw = data[0] if data and isinstance(data[0], bytes) else b""
        return [int(x) for x in raw.split()]

    def headers(self, uids: Sequence[int]) -> list[ListedMessage]:
        if not uids:
            return []
        typ, data = self.conn.uid(
            "FETCH",
            ",".join(map(str, uids)),
            "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM TO SUBJECT)])",
        )
        self._ok(typ, data, "FETCH failed")
        out = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item
            uid, flags, size = _UID.search(meta), _FLAGS.search(meta), _SIZE.search(meta)
            if uid is None:
                continue
            out.append(
                ListedMessage(
                    int(uid.group(1)),
                    tuple(flags.group(1).decode().split()) if flags else (),
                    int(size.group(1)) if size else 0,
                    header,
                )
            )
        return sorted(out, key=lambda m: m.uid)

    def size_of(self, uid: int) -> int:
        typ, data = self.conn.uid("FETCH", str(uid), "(RFC822.SIZE)")
        self._ok(typ, data, "FETCH failed")
        for item in data:
            meta = item[0] if isinstance(item, tuple) else item
            if isinstance(meta, bytes) and (m := _SIZE.search(meta)):
                return int(m.group(1))
        raise ClientError(f"no message with UID {uid}")

    def fetch_chunks(self, uid: int, peek: bool = True) -> Iterator[bytes]:
        """The message's bytes, in 1 MiB partial fetches (RFC 9051 §6.4.5 ``<start.len>``)."""
        size = self.size_of(uid)
        item = "BODY.PEEK[]" if peek else "BODY[]"
        start = 0
        while True:
            typ, data = self.conn.uid("FETCH", str(uid), f"({item}<{start}.{_PARTIAL}>)")
            self._ok(typ, data, "FETCH failed")
            chunk = next((d[1] for d in data if isinstance(d, tuple)), b"")
            if chunk:
                yield chunk
            start += len(chunk)
            if not chunk or start >= size:
                return

    def fetch(self, uid: int, peek: bool = True) -> bytes:
        return b"".join(self.fetch_chunks(uid, peek))

    def store(self, uids: Sequence[int], mode: str, flags: Sequence[str]) -> None:
        typ, data = self.conn.uid(
            "STORE", ",".join(map(str, uids)), f"{mode}FLAGS.SILENT", f"({' '.join(flags)})"
        )
        self._ok(typ, data, "STORE failed")

    def move(self, uids: Sequence[int], folder: str) -> None:
        seq = ",".join(map(str, uids))
        caps = self.conn.capabilities
        if "MOVE" in caps:  # RFC 6851
            typ, data = self.conn.uid("MOVE", seq, _quote(folder))
            self._ok(typ, data, f"MOVE to {folder} failed")
            return
        typ, data = self.conn.uid("COPY", seq, _quote(folder))
        self._ok(typ, data, f"COPY to {folder} failed")
        self.delete(uids)

    def delete(self, uids: Sequence[int]) -> None:
        """\\Deleted, then expunge only these UIDs (UIDPLUS) so others' marks survive."""
        self.store(uids, "+", ["\\Deleted"])
        seq = ",".join(map(str, uids))
        if "UIDPLUS" in self.conn.capabilities:
            typ, data = self.conn.uid("EXPUNGE", seq)
        else:
            typ, data = self.conn.expunge()
        self._ok(typ, data, "EXPUNGE failed")

    def append(self, folder: str, data: bytes, flags: Sequence[str] = ("\\Seen",)) -> None:
        typ, resp = self.conn.append(
            _quote(folder), f"({' '.join(flags)})", imaplib.Time2Internaldate(time.time()), data
        )
        self._ok(typ, resp, f"APPEND to {folder} failed")


def connect_imap(account: Account, password: str | None = None) -> Imap:
    ep = _need(account.imap, "imap", account)
    try:
        if ep.tls == "implicit":
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                ep.host, ep.port, ssl_context=account.tls_context(), timeout=60
            )
        else:
            conn = imaplib.IMAP4(ep.host, ep.port, timeout=60)
            if ep.tls == "starttls":
                conn.starttls(account.tls_context())
        conn.login(account.user, password if password is not None else password_for(account))
    except (imaplib.IMAP4.error, OSError) as exc:
        raise ClientError(f"IMAP {ep.host}:{ep.port}: {exc}") from exc
    return Imap(conn)


def connect_pop3(account: Account, password: str | None = None) -> poplib.POP3:
    ep = _need(account.pop3, "pop3", account)
    try:
        if ep.tls == "implicit":
            conn: poplib.POP3 = poplib.POP3_SSL(
                ep.host, ep.port, context=account.tls_context(), timeout=60
            )
        else:
            conn = poplib.POP3(ep.host, ep.port, timeout=60)
            if ep.tls == "starttls":
                conn.stls(account.tls_context())
        conn.user(account.user)
        conn.pass_(password if password is not None else password_for(account))
    except (poplib.error_proto, OSError) as exc:
        raise ClientError(f"POP3 {ep.host}:{ep.port}: {exc}") from exc
    return conn


def submit(
    account: Account,
    sender: str,
    recipients: Sequence[str],
    data: bytes,
    password: str | None = None,
) -> None:
    """Submit to the MSA (RFC 6409) over implicit TLS or STARTTLS, with AUTH."""
    ep = _need(account.smtp, "smtp", account)
    try:
        if ep.tls == "implicit":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                ep.host, ep.port, context=account.tls_context(), timeout=60
            )
        else:
            smtp = smtplib.SMTP(ep.host, ep.port, timeout=60)
            if ep.tls == "starttls":
                smtp.starttls(context=account.tls_context())
        try:
            smtp.login(account.user, password if password is not None else password_for(account))
            refused = smtp.sendmail(sender, list(recipients), data)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
    except (smtplib.SMTPException, OSError) as exc:
        raise ClientError(f"SMTP {ep.host}:{ep.port}: {exc}") from exc
    if refused:
        raise ClientError(
            "refused: "
            + ", ".join(f"{r} ({c} {m.decode(errors='replace')})" for r, (c, m) in refused.items())
        )
