"""IMAP URLs that name one message or part (RFC 5092), with URLAUTH (RFC 4467 §3).

Only the forms CATENATE, URLFETCH and GENURLAUTH use are read: a message part,
``imap://user@host/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=o.l``, optionally
followed by ``;EXPIRE=time;URLAUTH=access[:mechanism:token]``, or the same path alone
relative to the server (``/mailbox/;UID=n``, RFC 4469 §3).  Parameter names are
case-insensitive; mailbox names and users are percent-encoded UTF-8 (RFC 5092 §3.2).
One anchored regex without nested repetition reads the path: linear in the input.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["MAX_URL", "ImapUrl", "UrlError", "parse_url"]

#: Longest URL read (octets): a mailbox name, a section and URLAUTH fit well within.
MAX_URL = 8192

_SCHEME = re.compile(r"imap://", re.IGNORECASE)
# RFC 5092 §11: iuserinfo "@" host [":" port], up to the path's "/"
_AUTHORITY = re.compile(r"(?:([^@/;]*)(?:;AUTH=[^@/]*)?@)?([^/:@]+)(?::([0-9]{1,5}))?", re.I)
_PATH = re.compile(
    r"/([^;]+?)/?"  # enc-mailbox; "/" before ";UID" is the path separator
    r"(?:;UIDVALIDITY=([1-9][0-9]{0,9}))?"
    r"/;UID=([1-9][0-9]{0,9})"
    r"(?:/;SECTION=([^/;]+))?"
    r"(?:/;PARTIAL=([0-9]{1,10})(?:\.([1-9][0-9]{0,9}))?)?"
    r"(?:;EXPIRE=([^;]+))?"
    r"(?:(;URLAUTH=([^:;/]+))(?::([A-Za-z0-9.\-]+):([0-9A-Fa-f]+))?)?",
    re.IGNORECASE,
)
_ACCESS = re.compile(r"(submit\+|user\+)(.+)|(authuser|anonymous)", re.IGNORECASE)


class UrlError(ValueError):
    """Not an IMAP URL of a message or part that this server reads."""


@dataclass(frozen=True, slots=True)
class ImapUrl:
    """One parsed URL; ``user``/``host`` are None for a server-relative one."""

    text: str
    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: str | None = None  # upper-cased, e.g. "1.2", "HEADER", "TEXT"
    partial: tuple[int, int | None] | None = None  # (offset, length)
    user: str | None = None
    host: str | None = None
    expire: dt.datetime | None = None
    access: str | None = None  # "authuser", "anonymous", "user+<id>", "submit+<id>"
    mechanism: str | None = None  # upper-cased
    token: str | None = None  # lower-case hex
    rump_end: int = 0  # text[:rump_end] is what the token signs (RFC 4467 §2.5)

    @property
    def rump(self) -> str:
        return self.text[: self.rump_end]

    def owner(self) -> str | None:
        """The account the URL names: ``user`` as given, or ``user@host`` when the
        user part is a local part (clients write ``imap://alice@example.test/``)."""
        if self.user is None:
            return None
        if "@" in self.user or self.host is None:
            return self.user
        return f"{self.user}@{self.host}"

    def access_user(self) -> str | None:
        """The userid of a ``user+`` or ``submit+`` access identifier."""
        if self.access is None:
            return None
        m = _ACCESS.fullmatch(self.access)
        return m.group(2) if m is not None and m.group(2) else None


def _decode(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UrlError(f"{what} is not UTF-8") from exc


def parse_url(text: str, *, relative: bool = True) -> ImapUrl:
    """Parse ``text``; ``relative`` allows the server-relative form (CATENATE)."""
    if len(text) > MAX_URL:
        raise UrlError("URL too long")
    pos = 0
    user = host = None
    if _SCHEME.match(text):
        auth = _AUTHORITY.match(text, 7)
        if auth is None:
            raise UrlError("invalid server part")
        user = _decode(auth.group(1), "user") if auth.group(1) else None
        host = auth.group(2).lower()
        pos = auth.end()
    elif not relative or not text.startswith("/"):
        raise UrlError("not an IMAP URL")
    m = _PATH.fullmatch(text, pos)
    if m is None:
        raise UrlError("not the URL of a message or part")
    mailbox = _decode(m.group(1), "mailbox name")
    if mailbox.upper() == "INBOX":
        mailbox = "INBOX"  # RFC 9051 §5.1: INBOX is case-insensitive
    partial = None
    if m.group(5) is not None:
        partial = (int(m.group(5)), int(m.group(6)) if m.group(6) else None)
    expire = None
    if m.group(7) is not None:
        try:
            expire = dt.datetime.fromisoformat(_decode(m.group(7), "expiry"))  # RFC 3339
        except ValueError as exc:
            raise UrlError("invalid EXPIRE") from exc
        if expire.tzinfo is None:
            raise UrlError("EXPIRE needs a time zone")
    access = _decode(m.group(9), "access") if m.group(9) else None
    if access is not None and _ACCESS.fullmatch(access) is None:
        raise UrlError("unknown access identifier")  # RFC 4467 §3
    if (m.group(7) is not None) and access is None:
        raise UrlError("EXPIRE without URLAUTH")
    section = _decode(m.group(4), "section").upper() if m.group(4) else None
    return ImapUrl(
        text=text,
        mailbox=mailbox,
        uid=int(m.group(3)),
        uidvalidity=int(m.group(2)) if m.group(2) else None,
        section=section,
        partial=partial,
        user=user,
        host=host,
        expire=expire,
        access=access,
        mechanism=m.group(10).upper() if m.group(10) else None,
        token=m.group(11).lower() if m.group(11) else None,
        rump_end=m.end(8) if m.group(8) else len(text),
    )
