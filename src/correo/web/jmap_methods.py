"""JMAP methods over the store: Core/echo, Mailbox/*, Thread/* (Email/* in jmap_email.py).

Each method takes the request's :class:`Call` and its arguments and returns the
response arguments, or raises :class:`MethodError`; thin functions over the store API,
as IMAP's commands are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from correo.delivery.textindex import indexer_for
from correo.jmap.core import Limits, MethodError, SetError, is_id
from correo.jmap.mail import read_state, role_of
from correo.log import Logger
from correo.store.api import MailboxError, MailStore
from correo.web.jmap_mail import Box, EmailRow, MailView

if TYPE_CHECKING:
    from correo.server.context import ServerContext

__all__ = ["METHODS", "Call", "Method", "check_account", "get_ids"]

DELIMITER = "/"  # the store's hierarchy delimiter


@dataclass
class Call:
    """What a method needs: the account's view, its id, limits and the created ids."""

    view: MailView
    account_id: str
    limits: Limits
    log: Logger
    mailbox_limit: int = 0
    max_message: int = 50_000_000
    hostname: str = "localhost"
    created: dict[str, str] = field(default_factory=dict)  # creation id -> id (§5.3)
    ctx: ServerContext | None = None  # directory, signers, delivery: for sending
    peer: str = ""  # the client's address, for the trace field of what it sends
    #: responses a method adds after its own, as EmailSubmission/set's implicit
    #: Email/set (RFC 8621 §7.5)
    implicit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: octets of messages and blobs read for the answer: a large one is encoded off
    #: the event loop, a small one on it (no worker-thread hop)
    octets: int = 0

    @property
    def store(self) -> MailStore:
        return self.view.store

    @property
    def account(self) -> str:
        return self.view.account

    def resolve(self, ident: object) -> object:
        """``#creationId`` as the id it was given (RFC 8620 §5.3)."""
        if isinstance(ident, str) and ident.startswith("#"):
            return self.created.get(ident[1:], ident)
        return ident


Method = Callable[[Call, dict[str, Any]], Awaitable[dict[str, Any]]]


def check_account(call: Call, args: dict[str, Any]) -> None:
    if args.get("accountId") != call.account_id:
        raise MethodError("accountNotFound")


def get_ids(call: Call, args: dict[str, Any]) -> list[str] | None:
    """The ``ids`` argument of a /get: None for all, bounded by maxObjectsInGet."""
    ids = args.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "ids must be a list of ids or null")
    if len(ids) > call.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "more ids than maxObjectsInGet")
    return [str(call.resolve(i)) for i in ids]


def _properties(args: dict[str, Any], every: tuple[str, ...]) -> list[str]:
    props = args.get("properties")
    if props is None:
        return list(every)
    if not isinstance(props, list) or not all(isinstance(p, str) for p in props):
        raise MethodError("invalidArguments", "properties must be a list of strings")
    unknown = [p for p in props if p not in every]
    if unknown:
        raise MethodError("invalidArguments", f"unknown property {unknown[0][:100]}")
    return ["id", *[p for p in props if p != "id"]]


def _int(args: dict[str, Any], name: str, default: int, low: int = 0) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise MethodError("invalidArguments", f"{name} must be an integer >= {low}")
    return value


def sort_list(args: dict[str, Any]) -> list[Any]:
    """A /query's ``sort`` argument: a list of Comparators (RFC 8620 §5.5), or none."""
    sort = args.get("sort") or []
    if not isinstance(sort, list):
        raise MethodError("invalidArguments", "sort is a list of comparators")
    return sort


def sort_rows(rows: list[dict[str, Any]], args: dict[str, Any], props: tuple[str, ...]) -> None:
    """Sort ``rows`` in place by a /query's ``sort`` (RFC 8620 §5.5), on ``props`` only."""
    for comparator in reversed(sort_list(args)):
        prop = comparator.get("property") if isinstance(comparator, dict) else None
        if prop not in props:
            raise MethodError("unsupportedSort", " or ".join(props))
        rows.sort(key=lambda r: r[str(prop)], reverse=not comparator.get("isAscending", True))


def query_answer(
    call: Call, args: dict[str, Any], ids: list[str], query_state: str
) -> dict[str, Any]:
    """A /query's answer (RFC 8620 §5.5) for ``ids`` in order: the page ``position`` and
    ``limit`` ask for, the total when ``calculateTotal`` asks, no changes kept."""
    position = _int(args, "position", 0, 0)
    limit = args.get("limit")
    answer: dict[str, Any] = {
        "accountId": call.account_id,
        "queryState": query_state,
        "canCalculateChanges": False,
        "position": position,
        "ids": ids[position : position + limit] if isinstance(limit, int) else ids[position:],
    }
    if args.get("calculateTotal"):
        answer["total"] = len(ids)
    return answer


# -- Core -------------------------------------------------------------------------------


async def core_echo(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return args  # RFC 8620 §4


# -- Mailbox (RFC 8621 §2) --------------------------------------------------------------

MAILBOX_PROPS = ("id", "name", "parentId", "role", "sortOrder", "totalEmails",
                 "unreadEmails", "totalThreads", "unreadThreads", "myRights",
                 "isSubscribed")  # fmt: skip
_RIGHTS = dict.fromkeys(
    ("mayReadItems", "mayAddItems", "mayRemoveItems", "maySetSeen", "maySetKeywords",
     "mayCreateChild", "mayRename", "mayDelete", "maySubmit"),
    True,
)  # fmt: skip


async def thread_counts(call: Call) -> dict[int, tuple[int, int]]:
    """Each mailbox's (Threads, unread Threads) by UIDVALIDITY (RFC 8621 §2)."""
    threads = await call.view.all_threads()
    every: dict[int, set[str]] = {}
    unread: dict[int, set[str]] = {}
    for email in (await call.view.emails()).values():
        thread = threads.get(email.digest, email.digest)
        for row in email.rows:
            uv = row.box.status.uidvalidity
            every.setdefault(uv, set()).add(thread)
            if "\\Seen" not in row.info.flags:
                unread.setdefault(uv, set()).add(thread)
    return {uv: (len(t), len(unread.get(uv, ()))) for uv, t in every.items()}


def _mailbox_json(
    box: Box, by_name: dict[str, Box], counts: dict[int, tuple[int, int]] | None = None
) -> dict[str, Any]:
    name = box.name
    parent_name, _, leaf = name.rpartition(DELIMITER)
    parent = by_name.get(parent_name) if parent_name else None
    status = box.status
    return {
        "id": box.id,
        "name": leaf,
        "parentId": parent.id if parent is not None else None,
        "role": role_of(box.info.special_use, name),
        "sortOrder": 0 if name.upper() == "INBOX" else 10,
        "totalEmails": status.messages,
        "unreadEmails": status.unseen,
        "totalThreads": counts.get(status.uidvalidity, (0, 0))[0] if counts else status.messages,
        "unreadThreads": counts.get(status.uidvalidity, (0, 0))[1] if counts else status.unseen,
        "myRights": dict(_RIGHTS, mayRename=name.upper() != "INBOX"),
        "isSubscribed": box.info.subscribed,
    }


async def mailbox_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = get_ids(call, args)
    props = _properties(args, MAILBOX_PROPS)
    boxes = await call.view.counted_boxes()
    by_name = {b.name: b for b in boxes}
    by_id = {b.id: b for b in boxes}
    chosen = boxes if ids is None else [by_id[i] for i in ids if i in by_id]
    counts = None
    if "totalThreads" in props or "unreadThreads" in props:
        counts = await thread_counts(call)
    found = [
        {k: v for k, v in _mailbox_json(b, by_name, counts).items() if k in props} for b in chosen
    ]
    return {
        "accountId": call.account_id,
        "state": await call.view.state(),
        "list": found,
        "notFound": [] if ids is None else [i for i in ids if i not in by_id],
    }


async def mailbox_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    since = args.get("sinceState")
    old = read_state(since) if isinstance(since, str) else None
    if old is None:
        raise MethodError("cannotCalculateChanges", "unknown state")
    boxes = await call.view.boxes()
    now = {b.status.uidvalidity: b for b in boxes}
    created = [now[uv].id for uv in now if uv not in old]
    destroyed = [f"M{uv}" for uv in old if uv not in now]
    updated = [now[uv].id for uv, mark in old.items() if uv in now and now[uv].mark() != mark]
    most = _int(args, "maxChanges", 0, 0)
    if most and len(created) + len(updated) + len(destroyed) > most:
        raise MethodError("cannotCalculateChanges", "more changes than maxChanges")
    return {
        "accountId": call.account_id,
        "oldState": since,
        "newState": await call.view.state(),
        "hasMoreChanges": False,
        "created": created,
        "updated": updated,
        "destroyed": destroyed,
        "updatedProperties": None,
    }


def _mailbox_matches(box: Box, json: dict[str, Any], cond: dict[str, Any]) -> bool:
    for key, want in cond.items():
        if key == "parentId" and json["parentId"] != want:
            return False
        if key == "name" and (
            not isinstance(want, str) or want.lower() not in json["name"].lower()
        ):
            return False
        if key == "role" and json["role"] != want:
            return False
        if key == "hasAnyRole" and (json["role"] is not None) != bool(want):
            return False
        if key == "isSubscribed" and json["isSubscribed"] != bool(want):
            return False
        if key not in ("parentId", "name", "role", "hasAnyRole", "isSubscribed"):
            raise MethodError("unsupportedFilter", f"no filter on {key[:50]}")
    return True


async def mailbox_query(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    cond = args.get("filter") or {}
    if not isinstance(cond, dict) or "operator" in cond:
        raise MethodError("unsupportedFilter", "a single FilterCondition only")
    boxes = await call.view.counted_boxes()
    by_name = {b.name: b for b in boxes}
    rows = [(b, _mailbox_json(b, by_name)) for b in boxes]
    rows = [(b, j) for b, j in rows if _mailbox_matches(b, j, cond)]
    for comparator in reversed(sort_list(args)):
        prop = comparator.get("property") if isinstance(comparator, dict) else None
        if prop not in ("name", "sortOrder"):
            raise MethodError("unsupportedSort", f"cannot sort by {str(prop)[:50]}")
        key = str(prop)
        rows.sort(key=lambda r: r[1][key], reverse=not comparator.get("isAscending", True))
    position = _int(args, "position", 0, -(10**9))
    limit = args.get("limit")
    ids = [b.id for b, _ in rows]
    start = max(0, len(ids) + position) if position < 0 else position
    window = ids[start : start + limit] if isinstance(limit, int) and limit >= 0 else ids[start:]
    return {
        "accountId": call.account_id,
        "queryState": await call.view.state(),
        "canCalculateChanges": True,  # Mailbox/queryChanges (jmap_search.py)
        "position": start,
        "ids": window,
        "total": len(ids),
    }


async def set_arguments(
    call: Call, args: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, Any], list[Any]]:
    """The checked common arguments of every /set (RFC 8620 §5.3): old state, create,
    update and destroy."""
    check_account(call, args)
    old_state = await call.view.state()
    if args.get("ifInState") not in (None, old_state):
        raise MethodError("stateMismatch")  # RFC 8620 §5.3
    return (old_state, *set_objects(call, args))


def set_objects(
    call: Call, args: dict[str, Any], *, bounded: bool = True
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """A /set's create, update and destroy arguments (RFC 8620 §5.3), type-checked and,
    when ``bounded``, held to maxObjectsInSet."""
    create = args.get("create") or {}
    update = args.get("update") or {}
    destroy = args.get("destroy") or []
    if (
        not isinstance(create, dict)
        or not isinstance(update, dict)
        or not isinstance(destroy, list)
    ):
        raise MethodError("invalidArguments", "create, update and destroy")
    if bounded and len(create) + len(update) + len(destroy) > call.limits.max_objects_in_set:
        raise MethodError("requestTooLarge", "more objects than maxObjectsInSet")
    return create, update, destroy


async def mailbox_set(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    old_state, create, update, destroy = await set_arguments(call, args)
    out: dict[str, Any] = {"accountId": call.account_id, "oldState": old_state}
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, props in create.items():
        try:
            name = await _mailbox_path(call, props, None)
            await call.store.create_mailbox(
                call.account,
                name,
                subscribe=bool(props.get("isSubscribed", False)),
                limit=call.mailbox_limit,
            )
            call.view.forget()
            box = await call.view.box_by_name(name)
            assert box is not None
            call.created[cid] = box.id
            created[cid] = {"id": box.id}
        except _Refused as exc:
            not_created[cid] = exc.error.json()
        except MailboxError as exc:
            not_created[cid] = _mailbox_error(exc).json()
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for ident, props in update.items():
        ident = str(call.resolve(ident))
        try:
            box = await call.view.box_by_id(ident)
            if box is None:
                raise _Refused(SetError("notFound"))
            if not isinstance(props, dict):
                raise _Refused(SetError("invalidPatch"))
            if "name" in props or "parentId" in props:
                name = await _mailbox_path(call, props, box)
                if name != box.name:
                    if box.name.upper() == "INBOX":
                        raise _Refused(SetError("forbidden", "INBOX keeps its name"))
                    await call.store.rename_mailbox(
                        call.account, box.name, name, limit=call.mailbox_limit
                    )
                    indexer_for(call.store).forget(call.account, box.name)
            if "isSubscribed" in props:
                call.view.forget()
                box = await call.view.box_by_id(ident)
                assert box is not None
                await call.store.set_subscribed(call.account, box.name, bool(props["isSubscribed"]))
            for key in props:
                if key not in ("name", "parentId", "isSubscribed", "sortOrder"):
                    raise _Refused(SetError("invalidProperties", properties=(key[:100],)))
            call.view.forget()
            updated[ident] = None
        except _Refused as exc:
            not_updated[ident] = exc.error.json()
        except MailboxError as exc:
            not_updated[ident] = _mailbox_error(exc).json()
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    remove_emails = bool(args.get("onDestroyRemoveEmails", False))
    for ident in destroy:
        ident = str(call.resolve(ident))
        try:
            box = await call.view.box_by_id(ident)
            if box is None:
                raise _Refused(SetError("notFound"))
            if box.name.upper() == "INBOX":
                raise _Refused(SetError("forbidden", "INBOX cannot be destroyed"))
            if box.status.messages and not remove_emails:
                raise _Refused(SetError("mailboxHasEmail"))  # RFC 8621 §2.5
            await call.store.delete_mailbox(call.account, box.name)
            indexer_for(call.store).forget(call.account, box.name)
            call.view.forget()
            destroyed.append(ident)
        except _Refused as exc:
            not_destroyed[ident] = exc.error.json()
        except MailboxError as exc:
            not_destroyed[ident] = _mailbox_error(exc).json()
    call.view.forget()
    out.update(
        newState=await call.view.state(),
        created=created or None,
        updated=updated or None,
        destroyed=destroyed or None,
        notCreated=not_created or None,
        notUpdated=not_updated or None,
        notDestroyed=not_destroyed or None,
    )
    return out


class _Refused(Exception):
    def __init__(self, error: SetError) -> None:
        super().__init__(error.kind)
        self.error = error


def _mailbox_error(exc: MailboxError) -> SetError:
    code = getattr(exc, "code", "")
    if code == "HASCHILDREN":
        return SetError("mailboxHasChild", str(exc))
    if code == "ALREADYEXISTS":
        return SetError("invalidProperties", str(exc), ("name",))
    if code == "LIMIT":
        return SetError("overQuota", str(exc))
    return SetError("forbidden", str(exc))


async def _mailbox_path(call: Call, props: object, box: Box | None) -> str:
    """The full name a create or update gives, from ``name`` and ``parentId``."""
    if not isinstance(props, dict):
        raise _Refused(SetError("invalidProperties"))
    current_parent, _, current_leaf = box.name.rpartition(DELIMITER) if box else ("", "", "")
    name = props.get("name", current_leaf if box else None)
    if not isinstance(name, str) or not name or DELIMITER in name or len(name) > 255:
        raise _Refused(SetError("invalidProperties", "a name without /", ("name",)))
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise _Refused(SetError("invalidProperties", "control characters", ("name",)))
    if "parentId" in props:
        parent_id = call.resolve(props["parentId"])
        if parent_id is None:
            return name
        if not is_id(parent_id):
            raise _Refused(SetError("invalidProperties", properties=("parentId",)))
        parent = await call.view.box_by_id(str(parent_id))
        if parent is None:
            raise _Refused(SetError("invalidProperties", "no such parent", ("parentId",)))
        return f"{parent.name}{DELIMITER}{name}"
    return f"{current_parent}{DELIMITER}{name}" if current_parent else name


# -- Thread (RFC 8621 §3) ---------------------------------------------------------------


async def thread_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = get_ids(call, args)
    emails = await call.view.emails()
    threads = await call.view.all_threads()
    members: dict[str, list[EmailRow]] = {}
    for digest, thread in threads.items():
        email = emails.get(digest)
        if email is not None:
            members.setdefault(thread, []).append(email)
    if ids is None and len(members) > call.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "more Threads than maxObjectsInGet")
    found, missing = [], []
    for ident in members if ids is None else ids:
        inside = members.get(ident)
        if inside is None:
            missing.append(ident)
            continue
        # RFC 8621 §3: the Emails of a Thread, oldest first by receivedAt
        inside.sort(key=lambda e: (e.first.info.internal_date, e.digest))
        found.append({"id": ident, "emailIds": [e.id for e in inside]})
    return {
        "accountId": call.account_id,
        "state": await call.view.state(),
        "list": found,
        "notFound": missing,
    }


METHODS: dict[str, Method] = {
    "Core/echo": core_echo,
    "Mailbox/get": mailbox_get,
    "Mailbox/changes": mailbox_changes,
    "Mailbox/query": mailbox_query,
    "Mailbox/set": mailbox_set,
    "Thread/get": thread_get,
}
