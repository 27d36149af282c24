"""The IMAP QUOTA extension (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA.

Every account has one quota root, named ``""``, covering all its mailboxes; another
account's, reached through a mailbox it shares (RFC 4314), is ``Other Users/OWNER``:
what a COPY into that mailbox is charged against (RFC 9208 §4.2). The resources are
STORAGE (in units of 1024 octets, §5.1) and MESSAGE (§5.2), each listed when it has a
limit.  Limits are set by the operator (``correo user quota``, ``[delivery] quota``);
no IMAP user administers quotas, so SETQUOTA is refused.  APPEND, COPY and MOVE past a
limit fail with ``NO [OVERQUOTA]`` (§4.4), decided by the store in the same transaction
as the write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from correo.imap import commands as c
from correo.imap.responses import mailbox_name, quote_string, tagged
from correo.server.imap.acl import OTHER_USERS, resolve, rights_of
from correo.server.imap.names import normalize
from correo.store.api import MailboxError, Quota

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["CAPABILITIES", "cmd_getquota", "cmd_getquotaroot", "cmd_setquota", "quota_line"]

#: RFC 9208 §3.1-§3.2: the extension and the resources this server counts.
CAPABILITIES = ("QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE")
ROOT = ""


def quota_line(quota: Quota, root: str = ROOT) -> bytes:
    """``* QUOTA "" (STORAGE used limit MESSAGE used limit)`` (RFC 9208 §7.1)."""
    parts: list[str] = []
    if quota.storage is not None:
        used = (quota.used_storage + 1023) // 1024  # §5.1: 1024-octet units, rounded up
        parts.append(f"STORAGE {used} {quota.storage // 1024}")
    if quota.messages is not None:
        parts.append(f"MESSAGE {quota.used_messages} {quota.messages}")
    return b"* QUOTA " + quote_string(root) + b" (" + " ".join(parts).encode() + b")\r\n"


def _root_of(owner: str) -> str:
    return OTHER_USERS + owner


async def cmd_getquota(session: ImapSession, tag: str, cmd: c.GetQuota) -> None:
    assert session.user is not None
    owner = session.user
    if cmd.root != ROOT:
        owner = cmd.root[len(OTHER_USERS) :] if cmd.root.startswith(OTHER_USERS) else ""
        shared = await session.ctx.store.acl_shared(session.user)
        if owner == session.user or not any(
            o == owner and set(rights) & set("lr") for o, _, rights in shared
        ):  # §4.1; another account's root only through a mailbox it shares
            session.write(tagged(tag, "NO", "No such quota root", "NONEXISTENT"))
            return
    root = ROOT if owner == session.user else cmd.root
    session.write(quota_line(await session.ctx.store.get_quota(owner), root))
    session.write(tagged(tag, "OK", "GETQUOTA completed"))


async def cmd_getquotaroot(session: ImapSession, tag: str, cmd: c.GetQuotaRoot) -> None:
    """§4.2: the mailbox's roots, then each root's QUOTA."""
    assert session.user is not None
    owner, box = resolve(session.user, cmd.mailbox)
    store = session.ctx.store
    root, name = ROOT, normalize(cmd.mailbox)
    if owner != session.user:  # a shared mailbox: the owner's root, seen with l or r
        if not set(await rights_of(session, owner, box)) & set("lr"):
            session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
            return
        root, name = _root_of(owner), cmd.mailbox
    else:
        try:
            await store.mailbox_status(owner, name)  # MailboxError when missing
        except MailboxError:
            session.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
            return
    utf8 = session.core.utf8
    session.write(b"* QUOTAROOT " + mailbox_name(name, utf8) + b" " + quote_string(root) + b"\r\n")
    session.write(quota_line(await store.get_quota(owner), root))
    session.write(tagged(tag, "OK", "GETQUOTAROOT completed"))


async def cmd_setquota(session: ImapSession, tag: str, cmd: c.SetQuota) -> None:
    """§4.3: only an administrator may change limits, and no IMAP user is one here."""
    session.ctx.log.info("imap.setquota_refused", session=session.id, user=session.user)
    session.write(
        tagged(tag, "NO", "Quotas are set by the administrator (correo user quota)", "NOPERM")
    )
