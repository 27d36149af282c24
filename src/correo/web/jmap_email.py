"""JMAP Email methods over the store (RFC 8621 §4): get, query, changes, set.

An Email is the same octets in one or more mailboxes (see :mod:`correo.jmap.mail`);
its keywords are its IMAP flags, so ``$seen`` set here is ``\\Seen`` in every IMAP
session at once; changing ``mailboxIds`` copies, moves (one atomic IMAP MOVE where a
mailbox is swapped for another) and expunges through the store API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Container, Mapping
from typing import Any

from correo.delivery.textindex import index_delivered
from correo.jmap.core import MethodError, SetError
from correo.jmap.mail import (
    BODY_PROPS,
    blob_id,
    digest_of,
    flags_to_keywords,
    header_property,
    header_view,
    keyword_to_flag,
    parse_email,
    read_state,
    utc_date,
    valid_keyword,
)
from correo.jmap.search import MAX_TERMS, TEXT_CONDITIONS, Searchable, text_matches
from correo.message.encoded import decode_header
from correo.store.api import (
    DeliveryTarget,
    Envelope,
    MailboxError,
    QuotaExceededError,
    StoreError,
)
from correo.web.jmap_mail import EmailRow
from correo.web.jmap_methods import Call, _int, check_account, get_ids, set_arguments
from correo.web.jmap_parts import PARTS_MIN, email_from_tree
from correo.web.jmap_text import texts_for

__all__ = ["EMAIL_METHODS"]

EMAIL_PROPS = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
               "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
               "replyTo", "subject", "sentAt", *BODY_PROPS)  # fmt: skip
DEFAULT_PROPS = ("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt",
                 "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc",
                 "replyTo", "subject", "sentAt", "hasAttachment", "preview", "bodyValues",
                 "textBody", "htmlBody", "attachments")  # fmt: skip
_YIELD_EVERY = 2000  # Emails looked at between two turns of the loop for others
_NO_TEXTS: Mapping[str, Searchable] = {}
_NO_THREADS: Mapping[str, str] = {}
_META = frozenset(("id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt"))
_HEAD_ONLY = 256 * 1024  # what header properties read of a message
_PARSE_BATCH = 8 << 20  # octets of messages held to be parsed in one worker-thread hop
_PARSE_INLINE = 16 * 1024  # octets of header sections parsed on the event loop
_QUERY_HEADS = 2000  # messages whose headers one query may read (from/to/subject filters)


def _header_section(raw: bytes) -> bytes:
    """The header section and its blank line: all that header properties need."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[: at + len(sep)]
    return raw


def _meta(
    email: EmailRow, threads: Mapping[str, str] = _NO_THREADS, wanted: Container[str] = _META
) -> dict[str, Any]:
    """The properties an Email's rows give (no octets read), those ``wanted`` only."""
    first = email.first
    out: dict[str, Any] = {"id": email.id}
    if "blobId" in wanted:
        out["blobId"] = blob_id(email.digest)
    if "threadId" in wanted:
        out["threadId"] = threads.get(email.digest)
    if "mailboxIds" in wanted:
        out["mailboxIds"] = {row.box.id: True for row in email.rows}
    if "keywords" in wanted:
        flags: set[str] = set()
        for row in email.rows:
            flags.update(row.info.flags)
        out["keywords"] = flags_to_keywords(flags)
    if "size" in wanted:
        out["size"] = first.info.size
    if "receivedAt" in wanted:
        out["receivedAt"] = utc_date(first.info.internal_date)
    return out


async def email_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = get_ids(call, args)
    props = args.get("properties")
    if props is None:
        wanted = list(DEFAULT_PROPS)
    elif isinstance(props, list) and all(isinstance(p, str) for p in props):
        wanted = ["id", *[p for p in props if p != "id"]]
        unknown = [p for p in wanted if p not in EMAIL_PROPS and not header_property(p)]
        if unknown:
            raise MethodError("invalidArguments", f"unknown property {unknown[0][:100]}")
    else:
        raise MethodError("invalidArguments", "properties must be a list of strings")
    emails = await call.view.emails()
    if ids is None:
        if len(emails) > call.limits.max_objects_in_get:
            raise MethodError("requestTooLarge", "more Emails than maxObjectsInGet")
        ids = [e.id for e in emails.values()]
    flags = {
        "text": bool(args.get("fetchTextBodyValues")),
        "html": bool(args.get("fetchHTMLBodyValues")),
        "all": bool(args.get("fetchAllBodyValues")),
    }
    max_value = _int(args, "maxBodyValueBytes", 0, 0)
    parsed_props = [p for p in wanted if p not in _META]
    wanted_meta = _META.intersection(wanted)
    needs_body = any(p in BODY_PROPS for p in parsed_props)
    heads_key = tuple(parsed_props)
    found, missing = [], []
    jobs: list[tuple[dict[str, Any], bytes, str]] = []  # parsed together, off the loop
    held = 0

    async def parse_jobs() -> None:
        texts = [raw if needs_body else _header_section(raw) for _, raw, _ in jobs]

        def parse_all() -> list[dict[str, Any]]:
            return [
                parse_email(
                    text,
                    parsed_props,
                    blob=blob,
                    body_values=flags,
                    max_body_value_bytes=max_value,
                )
                for text, (_, _, blob) in zip(texts, jobs, strict=True)
            ]

        # a few header sections (what a delivery adds to a kept page) are parsed at
        # once: a worker-thread hop costs more than they do on a busy machine
        small = not needs_body and sum(len(t) for t in texts) <= _PARSE_INLINE
        done = parse_all() if small else await asyncio.to_thread(parse_all)
        for (entry, _, _), parsed in zip(jobs, done, strict=True):
            entry.update(parsed)
            if not needs_body:  # header properties are a function of the octets: kept
                call.view.index.keep_head(digest_of(entry["id"]) or "", heads_key, parsed)
        jobs.clear()

    threads: Mapping[str, str] = _NO_THREADS
    if "threadId" in wanted:
        every = await call.view.emails()
        chosen = [every[d] for d in (digest_of(i) for i in ids) if d is not None and d in every]
        threads = await call.view.thread_ids(chosen)
    for ident in ids:
        email = await call.view.email(ident)
        if email is None:
            missing.append(ident)
            continue
        entry = _meta(email, threads, wanted_meta)
        if parsed_props:
            known = None if needs_body else call.view.index.head(email.digest, heads_key)
            if known is not None:
                entry.update(known)
                found.append(entry)
                continue
            blob = blob_id(email.digest)
            try:
                if needs_body and email.first.info.size >= PARTS_MIN:  # from its parts
                    done = await email_from_tree(
                        call.view,
                        email.first,
                        parsed_props,
                        blob=blob,
                        body_values=flags,
                        max_body_value_bytes=max_value,
                    )
                    if done is not None:
                        entry.update(done[0])
                        call.octets += done[1]
                        found.append(entry)
                        continue
                limit = call.max_message if needs_body else _HEAD_ONLY
                raw = await call.view.raw(email.first, limit)
            except StoreError:
                missing.append(ident)  # expunged meanwhile
                continue
            jobs.append((entry, raw, blob))
            held += len(raw)
            call.octets += len(raw)
            if held > _PARSE_BATCH:
                await parse_jobs()
                held = 0
        found.append(entry)
    if jobs:
        await parse_jobs()
    return {
        "accountId": call.account_id,
        "state": await call.view.state(),
        "list": found,
        "notFound": missing,
    }


# -- query ------------------------------------------------------------------------------

_CONDITIONS = {"inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize",
               "hasKeyword", "notKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword",
               "noneInThreadHaveKeyword", "from", "to", "cc", "bcc", "subject",
               "hasAttachment", "text", "body"}  # fmt: skip
_KEYWORD_CONDITIONS = {"hasKeyword", "notKeyword", "allInThreadHaveKeyword",
                       "someInThreadHaveKeyword", "noneInThreadHaveKeyword"}  # fmt: skip
_HEADER_CONDITIONS = {"from": "From", "to": "To", "cc": "Cc", "bcc": "Bcc", "subject": "Subject"}


def _timestamp(value: object) -> float:
    from datetime import datetime

    if not isinstance(value, str):
        raise MethodError("invalidArguments", "a UTCDate is a string")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise MethodError("invalidArguments", f"not a UTCDate: {value[:40]}") from None


def _check_filter(node: object, depth: int = 0) -> bool:
    """Validates a filter; True when it reads header fields."""
    if depth > 10:
        raise MethodError("unsupportedFilter", "filters nest at most 10 deep")
    if not isinstance(node, dict):
        raise MethodError("invalidArguments", "a filter is an object")
    if "operator" in node:
        if node["operator"] not in ("AND", "OR", "NOT") or not isinstance(
            node.get("conditions"), list
        ):
            raise MethodError("invalidArguments", "operator AND, OR or NOT with conditions")
        reads = [_check_filter(c, depth + 1) for c in node["conditions"]]  # check every one
        return any(reads)
    for key in node:
        if key not in _CONDITIONS:
            raise MethodError("unsupportedFilter", f"no filter on {str(key)[:50]}")
        if key in _KEYWORD_CONDITIONS and (
            not isinstance(node[key], str) or not valid_keyword(node[key])
        ):
            raise MethodError("invalidArguments", f"{key} needs a keyword")
        if key in ("before", "after"):
            _timestamp(node[key])
        value = node[key]
        if key in ("minSize", "maxSize") and (  # RFC 8621 §4.4.1: UnsignedInt
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise MethodError("invalidArguments", f"{key} needs an unsigned integer")
        if key == "inMailbox" and not isinstance(value, str):  # RFC 8621 §4.4.1: Id
            raise MethodError("invalidArguments", "inMailbox needs a mailbox id")
        if key == "inMailboxOtherThan" and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise MethodError("invalidArguments", "inMailboxOtherThan needs mailbox ids")
        if key in TEXT_CONDITIONS and (not isinstance(node[key], str) or len(node[key]) > 256):
            raise MethodError("invalidArguments", f"{key} needs a string of 256 at most")
    return any(k in _HEADER_CONDITIONS or k == "hasAttachment" for k in node)


def _text_terms(node: dict[str, Any]) -> list[str]:
    """Every text/body term of a (checked) filter, under NOT too."""
    if "operator" in node:
        return [t for c in node["conditions"] for t in _text_terms(c)]
    return [node[k] for k in TEXT_CONDITIONS if k in node and node[k].split()]


def _matches(
    node: dict[str, Any],
    email: EmailRow,
    meta: dict[str, Any],
    heads: Any,
    texts: Mapping[str, Searchable] = _NO_TEXTS,
) -> bool:
    if "operator" in node:
        results = (_matches(c, email, meta, heads, texts) for c in node["conditions"])
        if node["operator"] == "AND":
            return all(results)
        if node["operator"] == "OR":
            return any(results)
        return not any(results)
    keywords = meta["keywords"]
    for key, want in node.items():
        if key == "inMailbox" and want not in meta["mailboxIds"]:
            return False
        if key == "inMailboxOtherThan" and not (set(meta["mailboxIds"]) - set(want or [])):
            return False
        if key == "before" and not email.first.info.internal_date < _timestamp(want):
            return False
        if key == "after" and not email.first.info.internal_date >= _timestamp(want):
            return False
        if key == "minSize" and not meta["size"] >= want:
            return False
        if key == "maxSize" and not meta["size"] < want:
            return False
        if (
            key in ("hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword")
            and want.lower() not in keywords
        ):
            return False
        if key in ("notKeyword", "noneInThreadHaveKeyword") and want.lower() in keywords:
            return False
        if key in _HEADER_CONDITIONS:
            field = _HEADER_CONDITIONS[key].lower()  # stored values: get_all() garbles UTF-8
            items = heads.raw_items() if heads is not None else ()
            values = [str(v) for k, v in items if k.lower() == field]
            text = " ".join(decode_header(v) for v in values).lower()  # RFC 2047, RFC 6532
            if str(want).lower() not in text:
                return False
        if key in TEXT_CONDITIONS and want.split():  # not a candidate: none of the words
            found = texts.get(email.digest)
            if found is None or not text_matches(found, key, want):
                return False
        if key == "hasAttachment":
            ctype = str(heads.get("Content-Type", "")).lower() if heads is not None else ""
            if ("multipart/mixed" in ctype) != bool(want):
                return False
    return True


async def email_query(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    node = args.get("filter")
    reads_headers = False
    if node is not None:
        reads_headers = _check_filter(node)
    sort = args.get("sort") or [{"property": "receivedAt", "isAscending": False}]
    if not isinstance(sort, list):
        raise MethodError("invalidArguments", "sort is a list")
    for comparator in sort:
        if not isinstance(comparator, dict) or comparator.get("property") not in (
            "receivedAt",
            "size",
            "id",
        ):
            raise MethodError("unsupportedSort", "receivedAt, size or id")
    collapse = bool(args.get("collapseThreads"))
    terms = _text_terms(node) if node is not None else []
    if len(terms) > MAX_TERMS:
        raise MethodError("unsupportedFilter", f"at most {MAX_TERMS} text conditions")
    snapshot = await call.view.snapshot()
    # An order that reads only what the account's marks cover is kept with them.
    key = None if reads_headers or terms else json.dumps([node, sort, bool(collapse)])
    ids = snapshot.order(key) if key is not None else None
    if ids is None:
        ids = await _query_ids(call, node, sort, reads_headers, terms, collapse)
        if key is not None:
            snapshot.keep_order(key, ids)
    position = _int(args, "position", 0, -(10**9))
    anchor = args.get("anchor")
    if anchor is not None:
        if anchor not in ids:
            raise MethodError("anchorNotFound")  # RFC 8620 §5.5
        position = max(0, ids.index(anchor) + _int(args, "anchorOffset", 0, -(10**9)))
    start = max(0, len(ids) + position) if position < 0 else position
    limit = args.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise MethodError("invalidArguments", "limit must be a non-negative integer")
    window = ids[start : start + limit] if limit is not None else ids[start:]
    answer: dict[str, Any] = {
        "accountId": call.account_id,
        "queryState": await call.view.state(),
        "canCalculateChanges": True,  # Email/queryChanges (jmap_search.py)
        "position": start,
        "ids": window,
    }
    if args.get("calculateTotal"):
        answer["total"] = len(ids)
    if limit is not None:
        answer["limit"] = limit
    return answer


async def _query_ids(
    call: Call,
    node: Any,
    sort: list[dict[str, Any]],
    reads_headers: bool,
    terms: list[str],
    collapse: bool = False,
) -> list[str]:
    """The ids of the Emails ``node`` matches, in ``sort`` order; with ``collapse`` only
    the first of each Thread (RFC 8621 §4.4.3)."""
    emails = list((await call.view.emails()).values())
    if node is not None and reads_headers and len(emails) > _QUERY_HEADS:
        raise MethodError("unsupportedFilter", "header filters over this many messages")
    texts = await texts_for(call.view, terms) if terms else _NO_TEXTS
    chosen = emails if node is None else []  # every Email: a new list, sorted below
    every = _YIELD_EVERY if not reads_headers else 100  # each header read is synchronous
    for count, email in enumerate(emails if node is not None else [], 1):
        if count % every == 0:
            await asyncio.sleep(0)  # a large mailbox must not hold the loop
        heads = None
        if reads_headers:
            try:
                heads = header_view(await call.view.raw(email.first, 64 * 1024))
            except StoreError:
                continue
        if _matches(node, email, _meta(email), heads, texts):
            chosen.append(email)
    for comparator in reversed(sort):
        prop = comparator["property"]
        reverse = not comparator.get("isAscending", True)
        if prop == "receivedAt":
            chosen.sort(key=_received, reverse=reverse)
        elif prop == "size":
            chosen.sort(key=_size, reverse=reverse)
        else:
            chosen.sort(key=_email_id, reverse=reverse)
    if collapse:
        threads = await call.view.all_threads()
        seen: set[str] = set()
        kept = []
        for email in chosen:
            thread = threads.get(email.digest, email.digest)
            if thread not in seen:
                seen.add(thread)
                kept.append(email)
        chosen = kept
    return [e.id for e in chosen]


def _received(email: EmailRow) -> float:
    return email.first.info.internal_date


def _size(email: EmailRow) -> int:
    return email.first.info.size


def _email_id(email: EmailRow) -> str:
    return email.id


# -- changes ----------------------------------------------------------------------------


async def email_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    since = args.get("sinceState")
    old = read_state(since) if isinstance(since, str) else None
    if old is None:
        raise MethodError("cannotCalculateChanges", "unknown state")
    view = call.view
    emails = await view.emails()
    boxes = {b.status.uidvalidity: b for b in await view.boxes()}
    touched: set[str] = set()  # digests added to or changed in a mailbox
    added: set[str] = set()
    gone: set[str] = set()  # digests expunged from some mailbox
    for uv, box in boxes.items():
        mark = old.get(uv)
        since_modseq = mark.modseq if mark is not None else 0
        if mark is not None and box.status.highestmodseq <= since_modseq:
            continue
        try:
            changes = await call.store.changes_since(call.account, box.name, since_modseq)
        except StoreError:
            raise MethodError("cannotCalculateChanges", "a mailbox changed meanwhile") from None
        # a (UIDVALIDITY, UID) names one message for ever: the listing just made knows
        # each digest, so the mailbox's are read only for a message it lacks (O(changes))
        digests: dict[int, str] | None = None
        for info in changes.messages:
            digest = view.index.lookup(call.account, uv, info.uid)
            if digest is None:
                if digests is None:
                    try:
                        digests = await call.store.message_digests(call.account, box.name)
                    except StoreError:
                        raise MethodError(
                            "cannotCalculateChanges", "a mailbox changed meanwhile"
                        ) from None
                digest = digests.get(info.uid)
            if digest is None:
                continue
            touched.add(digest[:24])
            if mark is None or info.uid >= mark.uidnext:
                added.add(digest[:24])
        if mark is None:
            continue
        recorded: dict[int, str] | None = None  # the store's, read when memory lacks one
        for uid in changes.expunged:
            if uid >= mark.uidnext:
                continue  # came and went since the old state: never seen
            digest = view.index.lookup(call.account, uv, uid)
            if digest is None:
                if recorded is None:
                    try:
                        recorded = await call.store.expunged_digests(
                            call.account, box.name, since_modseq
                        )
                    except StoreError:
                        recorded = {}
                digest = recorded.get(uid)
            if digest is None:  # never listed, so no client can hold its id: skip it
                continue
            gone.add(digest[:24])
    for uv in old:
        if uv not in boxes:  # a mailbox destroyed: its Emails left it (RFC 8621 §2.5)
            raise MethodError("cannotCalculateChanges", "a mailbox was destroyed")
    created = [f"E{d}" for d in sorted(added) if d in emails and d not in gone]
    updated = [f"E{d}" for d in sorted((touched | gone) - set(created_d(created))) if d in emails]
    destroyed = [f"E{d}" for d in sorted(gone) if d not in emails]
    most = _int(args, "maxChanges", 0, 0)
    if most and len(created) + len(updated) + len(destroyed) > most:
        raise MethodError("cannotCalculateChanges", "more changes than maxChanges")
    return {
        "accountId": call.account_id,
        "oldState": since,
        "newState": await view.state(),
        "hasMoreChanges": False,
        "created": created,
        "updated": updated,
        "destroyed": destroyed,
    }


def created_d(ids: list[str]) -> list[str]:
    return [i[1:] for i in ids]


async def thread_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    """The Threads of the Emails that changed (RFC 8621 §3.2): created when every Email
    in it is new, destroyed when none is left, updated otherwise."""
    answer = await email_changes(call, args)
    threads = await call.view.all_threads()
    members: dict[str, list[str]] = {}
    for digest, thread in threads.items():
        members.setdefault(thread, []).append(digest)
    new = {i[1:] for i in answer["created"]}
    touched: set[str] = set()
    for ident in (*answer["created"], *answer["updated"]):
        touched.add(threads.get(ident[1:], "T" + ident[1:]))
    for ident in answer["destroyed"]:
        was = call.view.index.thread(ident[1:])  # remembered while it was there
        if was is None:
            raise MethodError("cannotCalculateChanges", "an Email gone before it was threaded")
        touched.add(was)
    gone = sorted(t for t in touched if t not in members)
    made = sorted(t for t in touched if t in members and all(d in new for d in members[t]))
    answer["created"] = made
    answer["destroyed"] = gone
    answer["updated"] = sorted(touched - set(gone) - set(made))
    return answer


# -- set --------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, error: SetError) -> None:
        super().__init__(error.kind)
        self.error = error


def _patched(current: dict[str, bool], props: dict[str, Any], name: str) -> dict[str, bool] | None:
    """The new value of ``keywords`` or ``mailboxIds`` after a whole value or patches."""
    result: dict[str, bool] | None = None
    if name in props:
        value = props[name]
        if not isinstance(value, dict) or not all(v is True for v in value.values()):
            raise _Refused(SetError("invalidProperties", properties=(name,)))
        result = {str(k): True for k in value}
    prefix = name + "/"
    for key, value in props.items():
        if not key.startswith(prefix):
            continue
        if result is not None and name in props:
            raise _Refused(SetError("invalidPatch", "a value and a patch of it"))
        result = dict(current) if result is None else result
        item = key[len(prefix) :]
        if value is True:
            result[item] = True
        elif value is None:
            result.pop(item, None)
        else:
            raise _Refused(SetError("invalidPatch", properties=(key[:100],)))
    return result


async def _update(call: Call, email: EmailRow, props: dict[str, Any]) -> None:
    for key in props:
        base = key.split("/", 1)[0]
        if base not in ("keywords", "mailboxIds"):
            raise _Refused(SetError("invalidProperties", properties=(key[:100],)))
    meta = _meta(email)
    keywords = _patched(meta["keywords"], props, "keywords")
    boxes = _patched(meta["mailboxIds"], props, "mailboxIds")
    store, account = call.store, call.account
    if keywords is not None:
        for keyword in keywords:
            if not valid_keyword(keyword):
                raise _Refused(SetError("invalidProperties", "bad keyword", ("keywords",)))
        flags = [keyword_to_flag(k) for k in keywords]
        for row in email.rows:
            kept = [f for f in row.info.flags if f.lower() == "\\deleted"]  # no keyword
            await store.store_flags(account, row.box.name, [row.info.uid], "replace", flags + kept)
    if boxes is not None:
        if not boxes:
            raise _Refused(SetError("invalidProperties", "at least one mailbox", ("mailboxIds",)))
        targets = []
        for ident in boxes:
            box = await call.view.box_by_id(str(call.resolve(ident)))
            if box is None:
                raise _Refused(SetError("invalidProperties", "no such mailbox", ("mailboxIds",)))
            targets.append(box)
        now = {row.box.name: row for row in email.rows}
        leaving = [row for name, row in now.items() if name not in {b.name for b in targets}]
        arriving = [b for b in targets if b.name not in now]
        source = email.first
        for box in arriving:
            if leaving:  # RFC 6851 MOVE: one atomic step, IMAP sees the move
                row = leaving.pop()
                await store.copy_messages(
                    account, row.box.name, [row.info.uid], box.name, move=True
                )
            else:
                await store.copy_messages(account, source.box.name, [source.info.uid], box.name)
        for row in leaving:
            await store.expunge(account, row.box.name, [row.info.uid])


async def _create(call: Call, props: object) -> EmailRow:
    """A new Email from JMAP properties (a draft, RFC 8621 §4.6), filed as APPEND files."""
    from correo.message.compose import compose

    if not isinstance(props, dict):
        raise _Refused(SetError("invalidProperties"))
    boxes = props.get("mailboxIds")
    if not isinstance(boxes, dict) or not boxes:
        raise _Refused(SetError("invalidProperties", "mailboxIds is required", ("mailboxIds",)))
    targets = []
    for ident in boxes:
        box = await call.view.box_by_id(str(call.resolve(ident)))
        if box is None:
            raise _Refused(SetError("invalidProperties", "no such mailbox", ("mailboxIds",)))
        targets.append(box)
    keywords = props.get("keywords") or {}
    if not isinstance(keywords, dict) or not all(valid_keyword(str(k)) for k in keywords):
        raise _Refused(SetError("invalidProperties", properties=("keywords",)))

    def addresses(name: str) -> list[str]:
        value = props.get(name) or []
        if not isinstance(value, list):
            raise _Refused(SetError("invalidProperties", properties=(name,)))
        out = []
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("email"), str):
                raise _Refused(SetError("invalidProperties", properties=(name,)))
            label = item.get("name")
            out.append(f"{label} <{item['email']}>" if label else item["email"])
        return out

    values = props.get("bodyValues") or {}
    texts: dict[str, str] = {}
    for kind in ("textBody", "htmlBody"):
        parts = props.get(kind) or []
        if not isinstance(parts, list) or len(parts) > 1:
            raise _Refused(SetError("invalidProperties", "one part at most", (kind,)))
        for part in parts:
            part_id = part.get("partId") if isinstance(part, dict) else None
            value = values.get(part_id) if isinstance(values, dict) else None
            if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                raise _Refused(SetError("invalidProperties", "bodyValues", ("bodyValues",)))
            texts[kind] = value["value"]
    senders = addresses("from")
    subject = props.get("subject") or ""
    if not isinstance(subject, str):
        raise _Refused(SetError("invalidProperties", properties=("subject",)))
    raw = compose(
        from_=senders[0] if senders else call.account,
        to=addresses("to"),
        cc=addresses("cc"),
        bcc=addresses("bcc"),
        subject=subject,
        text=texts.get("textBody"),
        html=texts.get("htmlBody"),
        domain=call.hostname,
    )
    if len(raw) > call.max_message:
        raise _Refused(SetError("tooLarge"))
    flags = tuple(keyword_to_flag(k) for k in keywords)
    spool = call.store.new_spool()
    spool.write(raw)
    delivered = await call.store.deliver(
        spool,
        Envelope(sender="", authenticated=call.account),
        [DeliveryTarget(call.account, box.name, flags) for box in targets],
    )
    index_delivered(call.store, delivered)  # SEARCH TEXT and JMAP text filters
    call.view.forget()
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()[:24]
    email = (await call.view.emails()).get(digest)
    if email is None:
        raise _Refused(SetError("forbidden", "the draft was filed but cannot be found"))
    return email


async def email_set(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    old_state, create, update, destroy = await set_arguments(call, args)
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, props in create.items():
        try:
            new = await _create(call, props)
            call.created[cid] = new.id
            created[cid] = {
                "id": new.id,
                "blobId": blob_id(new.digest),
                "threadId": (await call.view.thread_ids([new]))[new.digest],
                "size": new.first.info.size,
            }
        except _Refused as exc:
            not_created[cid] = exc.error.json()
        except (MailboxError, StoreError) as exc:
            not_created[cid] = SetError(_refusal(exc), str(exc)[:200]).json()
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for ident, props in update.items():
        ident = str(call.resolve(ident))
        try:
            target = await call.view.email(ident)
            if target is None:
                raise _Refused(SetError("notFound"))
            if not isinstance(props, dict):
                raise _Refused(SetError("invalidPatch"))
            await _update(call, target, props)
            call.view.forget()
            updated[ident] = None
        except _Refused as exc:
            not_updated[ident] = exc.error.json()
        except (MailboxError, StoreError) as exc:
            call.view.forget()
            not_updated[ident] = SetError(_refusal(exc), str(exc)[:200]).json()
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for ident in destroy:
        ident = str(call.resolve(ident))
        doomed = await call.view.email(ident) if digest_of(ident) else None
        if doomed is None:
            not_destroyed[ident] = SetError("notFound").json()
            continue
        try:
            for row in doomed.rows:
                await call.store.expunge(call.account, row.box.name, [row.info.uid])
            destroyed.append(ident)
        except StoreError as exc:
            not_destroyed[ident] = SetError("forbidden", str(exc)[:200]).json()
        call.view.forget()
    call.view.forget()
    return {
        "accountId": call.account_id,
        "oldState": old_state,
        "newState": await call.view.state(),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }


EMAIL_METHODS = {
    "Email/get": email_get,
    "Email/query": email_query,
    "Email/changes": email_changes,
    "Email/set": email_set,
    "Thread/changes": thread_changes,
}


def _refusal(exc: StoreError) -> str:
    """The SetError type of a store refusal: overQuota past the account's quota (RFC
    8620 §5.3), else forbidden."""
    return "overQuota" if isinstance(exc, QuotaExceededError) else "forbidden"
