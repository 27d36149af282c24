"""JMAP Email/import, Email/parse and Email/copy (RFC 8621 §4.7-4.9).

* Email/import files an uploaded blob (or any blob of the account) as a new message
  through the same store call IMAP APPEND uses, with its keywords and ``receivedAt``;
  the same octets already in the account are ``alreadyExists`` (an Email id is the
  digest of its octets, so a second copy would be the same Email).
* Email/parse reads a blob as an Email without storing it.
* Email/copy moves Emails between two accounts (RFC 8620 §5.4 requires two); every
  user here has one account and no shared ones, so it can only answer its errors.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from correo.delivery.textindex import index_delivered
from correo.jmap.core import MethodError, SetError
from correo.jmap.mail import (
    blob_id,
    digest_of,
    find_part,
    header_property,
    keyword_to_flag,
    parse_email,
    valid_keyword,
)
from correo.store.api import (
    DeliveryTarget,
    Envelope,
    MailboxError,
    QuotaExceededError,
    StoreError,
)
from correo.web.jmap_email import EMAIL_PROPS
from correo.web.jmap_methods import Call, Method, _int, check_account

__all__ = ["IMPORT_METHODS", "read_blob"]

_PARSE_DEFAULT = (
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
)  # fmt: skip  RFC 8621 §4.9


async def read_blob(call: Call, ident: str, limit: int) -> bytes | None:
    """The octets of an upload (``U…``), a stored message (``B…``), one of its parts
    (``B…p{partId}``) or a Sieve script (``Z…``), at most ``limit`` (and one more, to
    tell a larger one); None when the account has no such blob."""
    if ident.startswith("U") and digest_of("B" + ident[1:]) is not None:
        if call.ctx is None:
            return None
        path = call.ctx.config.data_dir / "jmap-uploads" / call.account_id / ident[1:]

        def read() -> bytes | None:
            try:
                with path.open("rb") as fh:
                    return fh.read(limit + 1)
            except OSError:
                return None

        return await asyncio.to_thread(read)
    if ident.startswith("Z") and len(ident) == 25:  # a Sieve script (jmap_sieve.py)
        for name, _ in await call.store.sieve_list(call.account):
            text = await call.store.sieve_get(call.account, name)
            if text is not None and "Z" + hashlib.sha256(text.encode()).hexdigest()[:24] == ident:
                return text.encode()[: limit + 1]
        return None
    base, _, part = ident.partition("p")
    digest = digest_of(base) if base.startswith("B") else None
    if digest is None or (part and not part.isdigit()):
        return None
    email = (await call.view.emails()).get(digest)
    if email is None:
        return None
    try:
        raw = await call.view.raw(email.first, limit + 1)
    except StoreError:
        return None
    if part:
        found = await asyncio.to_thread(find_part, raw, part)
        return None if found is None else found[0]
    return raw


async def email_parse(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    blobs = args.get("blobIds")
    if not isinstance(blobs, list) or not all(isinstance(b, str) for b in blobs):
        raise MethodError("invalidArguments", "blobIds is a list of ids")
    if len(blobs) > call.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "more blobs than maxObjectsInGet")
    props = args.get("properties")
    if props is None:
        wanted = list(_PARSE_DEFAULT)
    elif isinstance(props, list) and all(isinstance(p, str) for p in props):
        wanted = list(props)
        unknown = [p for p in wanted if p not in EMAIL_PROPS and not header_property(p)]
        if unknown:
            raise MethodError("invalidArguments", f"unknown property {unknown[0][:100]}")
    else:
        raise MethodError("invalidArguments", "properties must be a list of strings")
    flags = {
        "text": bool(args.get("fetchTextBodyValues")),
        "html": bool(args.get("fetchHTMLBodyValues")),
        "all": bool(args.get("fetchAllBodyValues")),
    }
    max_value = _int(args, "maxBodyValueBytes", 0, 0)
    parsed: dict[str, Any] = {}
    not_parsable: list[str] = []
    not_found: list[str] = []
    for ident in blobs:
        raw = await read_blob(call, ident, call.max_message)
        if raw is None:
            not_found.append(ident)
            continue
        call.octets += len(raw)
        if len(raw) > call.max_message:
            not_parsable.append(ident)
            continue
        try:
            entry = await asyncio.to_thread(
                parse_email,
                raw,
                [p for p in wanted if p not in ("blobId", "size")],
                blob=ident,
                body_values=flags,
                max_body_value_bytes=max_value,
            )
        except (ValueError, TypeError, LookupError, IndexError):
            not_parsable.append(ident)
            continue
        # RFC 8621 §4.9: metadata of a message not in any mailbox
        meta = {"id": None, "threadId": None, "mailboxIds": None, "keywords": {},
                "receivedAt": None, "blobId": ident, "size": len(raw)}  # fmt: skip
        entry.update({k: v for k, v in meta.items() if k in wanted})
        parsed[ident] = entry
    return {
        "accountId": call.account_id,
        "parsed": parsed or None,
        "notParsable": not_parsable or None,
        "notFound": not_found or None,
    }


class _Refused(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["type"])
        self.body = error


def _received_at(value: object) -> float | None:
    if value is None:
        return None
    from datetime import datetime

    if not isinstance(value, str) or len(value) > 40:
        raise _Refused(SetError("invalidProperties", properties=("receivedAt",)).json())
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise _Refused(SetError("invalidProperties", properties=("receivedAt",)).json()) from None


async def _import_one(call: Call, props: object) -> dict[str, Any]:
    if not isinstance(props, dict):
        raise _Refused(SetError("invalidProperties").json())
    for key in props:
        if key not in ("blobId", "mailboxIds", "keywords", "receivedAt"):
            raise _Refused(SetError("invalidProperties", properties=(str(key)[:100],)).json())
    ident = call.resolve(props.get("blobId"))
    if not isinstance(ident, str):
        raise _Refused(SetError("invalidProperties", properties=("blobId",)).json())
    boxes = props.get("mailboxIds")
    if not isinstance(boxes, dict) or not boxes or not all(v is True for v in boxes.values()):
        raise _Refused(SetError("invalidProperties", properties=("mailboxIds",)).json())
    targets = []
    keywords = props.get("keywords") or {}
    if not isinstance(keywords, dict) or not all(
        valid_keyword(str(k)) and v is True for k, v in keywords.items()
    ):
        raise _Refused(SetError("invalidProperties", properties=("keywords",)).json())
    flags = tuple(keyword_to_flag(str(k)) for k in keywords)
    for box_id in boxes:
        box = await call.view.box_by_id(str(call.resolve(box_id)))
        if box is None:
            raise _Refused(SetError("invalidProperties", "no such mailbox", ("mailboxIds",)).json())
        targets.append(DeliveryTarget(call.account, box.name, flags))
    when = _received_at(props.get("receivedAt"))
    raw = await read_blob(call, ident, call.max_message)
    if raw is None:
        raise _Refused({"type": "blobNotFound", "notFound": [ident]})  # RFC 8621 §4.8
    if len(raw) > call.max_message:
        raise _Refused(SetError("tooLarge", "larger than the message size limit").json())
    if b"\n" not in raw[:65536] or b":" not in raw[: raw.find(b"\n")]:
        raise _Refused(SetError("invalidEmail", "not an RFC 5322 message").json())
    digest = hashlib.sha256(raw).hexdigest()[:24]
    existing = (await call.view.emails()).get(digest)
    if existing is not None:
        raise _Refused({"type": "alreadyExists", "existingId": existing.id})
    spool = call.store.new_spool()
    try:
        spool.write(raw)
    except OSError:
        spool.discard()
        raise
    delivered = await call.store.deliver(
        spool, Envelope(sender="", authenticated=call.account), targets, internal_date=when
    )
    index_delivered(call.store, delivered)  # SEARCH TEXT and JMAP text filters
    call.view.forget()
    email = (await call.view.emails()).get(digest)
    thread = (await call.view.thread_ids([email]))[digest] if email else None
    return {"id": "E" + digest, "blobId": blob_id(digest), "threadId": thread,
            "size": len(raw)}  # fmt: skip


async def email_import(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    old_state = await call.view.state()
    if args.get("ifInState") not in (None, old_state):
        raise MethodError("stateMismatch")
    emails = args.get("emails")
    if not isinstance(emails, dict):
        raise MethodError("invalidArguments", "emails is a map of creation ids")
    if len(emails) > call.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", "more Emails than maxObjectsInSet")
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, props in emails.items():
        try:
            made = await _import_one(call, props)
        except _Refused as exc:
            not_created[cid] = exc.body
            continue
        except MailboxError as exc:  # over quota among them
            kind = "overQuota" if isinstance(exc, QuotaExceededError) else "forbidden"
            not_created[cid] = SetError(kind, str(exc)[:200]).json()
            continue
        call.created[cid] = made["id"]
        created[cid] = made
    call.view.forget()
    if created:
        await call.view.emails()  # newState names what was just filed
    return {
        "accountId": call.account_id,
        "oldState": old_state,
        "newState": await call.view.state(),
        "created": created or None,
        "notCreated": not_created or None,
    }


async def email_copy(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    """RFC 8621 §4.7 / RFC 8620 §5.4: between two accounts, of which there is one here."""
    if args.get("fromAccountId") != call.account_id:
        raise MethodError("fromAccountNotFound")
    check_account(call, args)
    if not isinstance(args.get("create"), dict):
        raise MethodError("invalidArguments", "create is a map of creation ids")
    raise MethodError(
        "invalidArguments", "fromAccountId and accountId are one account: use Email/set"
    )


IMPORT_METHODS: dict[str, Method] = {
    "Email/import": email_import,
    "Email/parse": email_parse,
    "Email/copy": email_copy,
}
