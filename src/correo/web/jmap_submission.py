"""JMAP Identity and EmailSubmission (RFC 8621 §6, §7) over the store's records.

An account's identities are records of kind ``identity``: the first use makes one for
the account's own address (it cannot be destroyed); more may name any address the
account may send as (its aliases, subaddresses).  A submission sends a stored Email at
once through :func:`correo.web.jmap_send.send_message` (the submission port's checks,
DKIM, the outbound queue) and is kept as a record of kind ``submission`` (the newest
1,000), ``undoStatus`` ``final``: nothing is delayed, so nothing can be cancelled.  As
the queue delivers, defers or bounces a recipient, :func:`submission_outcome` writes
the outcome into the record's ``deliveryStatus``, which moves the EmailSubmission state
that push announces; a submission whose message was queued is named after its queue
entry, so the outcome reads that one record by its key.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from correo.jmap.core import MethodError, SetError, is_id
from correo.jmap.mail import digest_of, header_view, utc_date
from correo.store.api import MailStore, QueuedMessage, RecipientUpdate, Record, StoreError
from correo.web.jmap_email import email_set
from correo.web.jmap_methods import Call, Method, _int, check_account, get_ids, set_objects
from correo.web.jmap_send import Refusal, send_message

__all__ = ["SUBMISSION", "SUBMISSION_METHODS", "record_state", "submission_outcome"]

SUBMISSION = "urn:ietf:params:jmap:submission"
IDENTITY_PROPS = ("id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature",
                  "mayDelete")  # fmt: skip
SUBMISSION_PROPS = ("id", "identityId", "emailId", "threadId", "envelope", "sendAt",
                    "undoStatus", "deliveryStatus", "dsnBlobIds", "mdnBlobIds")  # fmt: skip
_KEEP_SUBMISSIONS = 1000
_QUEUED = "_queueId"  # the outbound queue's id of a submission's message (not a property)
#: RFC 8621 §7 ``delivered`` of a queue outcome, and the reply class when the outcome's
#: text is not an SMTP reply (a local error, a connection that failed)
_OUTCOMES = {"delivered": ("yes", "250 2.0.0"), "failed": ("no", "550 5.0.0"),
             "queued": ("queued", "451 4.0.0")}  # fmt: skip
_DEFAULT = "Idefault"
_ONLY_COUNTER = 1 << 62  # a `since` above every counter: records() reads the counter
_MAX_TEXT = 64 * 1024  # a signature's length
_MAX_RCPT_IN_HEADERS = 1000


class _Refused(Exception):
    """One object refused: its SetError as JSON (with any members its kind defines)."""

    def __init__(self, error: SetError | dict[str, Any]) -> None:
        self.body = error if isinstance(error, dict) else error.json()
        super().__init__(self.body["type"])


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(12).replace("-", "a").replace("_", "b")


def _state(counter: int) -> str:
    return str(counter)


async def record_state(store: MailStore, account: str, kind: str) -> str:
    """The state of ``kind`` ("identity", "submission") now: its counter, read alone."""
    counter, _ = await store.records(account, kind, since=_ONLY_COUNTER)
    return _state(counter)


def _queued_id(message: QueuedMessage) -> str:
    """The id of the submission that queued ``message``, which the queue's outcome reads
    by its key: the queue id with the time it was queued (an embedded store gives a
    queue id again once its message has left).  Random ids hold no ``-``."""
    return f"S{message.id}-{int(message.created * 1_000_000)}"


async def submission_outcome(
    store: MailStore, message: QueuedMessage, updates: Sequence[RecipientUpdate]
) -> None:
    """The queue recorded ``updates`` of ``message``: the submission that queued it shows
    each recipient's outcome (RFC 8621 §7 deliveryStatus: smtpReply, delivered), and its
    new state reaches push through the store's account feed."""
    account = message.authenticated
    if not account:
        return
    row = await store.record_get(account, "submission", _queued_id(message))
    if row is None:
        return  # not queued by EmailSubmission/set, or the record is gone
    record = json.loads(row.data)
    if record.get(_QUEUED) != message.id:
        return
    status = record.get("deliveryStatus") or {}
    keys = {k.lower(): k for k in status}
    changed = False
    for update in updates:
        key = keys.get(update.address.lower())
        outcome = _OUTCOMES.get(update.status)
        if key is None or outcome is None or not update.counted:
            continue  # an address the routing expanded is not the client's
        delivered, reply = outcome
        text = " ".join(update.last_error.split())[:500]
        if not (text[:3].isdigit() and text[3:4] in (" ", "-", "")):
            text = f"{reply} {text}".rstrip()
        entry = {**status[key], "smtpReply": text, "delivered": delivered}
        if entry != status[key]:
            status[key], changed = entry, True
    if changed:
        await store.record_put(account, "submission", row.id, json.dumps(record))


def _since(args: dict[str, Any]) -> int:
    since = args.get("sinceState")
    if not isinstance(since, str) or not since.isdigit() or len(since) > 18:
        raise MethodError("cannotCalculateChanges", "unknown state")
    return int(since)


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


async def _identities(call: Call) -> tuple[int, dict[str, dict[str, Any]]]:
    """The account's identities, the default one made on first use."""
    counter, rows = await call.store.records(call.account, "identity")
    if counter == 0:
        default = {
            "id": _DEFAULT,
            "name": "",
            "email": call.account,
            "replyTo": None,
            "bcc": None,
            "textSignature": "",
            "htmlSignature": "",
            "mayDelete": False,
        }
        counter = await call.store.record_put(
            call.account, "identity", _DEFAULT, json.dumps(default)
        )
        rows = [Record(_DEFAULT, json.dumps(default), counter, counter)]
    return counter, {r.id: json.loads(r.data) for r in rows}


async def _changes(call: Call, args: dict[str, Any], kind: str, prefix: str) -> dict[str, Any]:
    """``/changes`` over records (RFC 8620 §5.2), paged by ``maxChanges``."""
    check_account(call, args)
    since = _since(args)
    if kind == "identity":
        await _identities(call)
    try:
        counter, rows = await call.store.records(call.account, kind, since=since)
    except StoreError:
        raise MethodError("cannotCalculateChanges", "older than the changes kept") from None
    if since > counter:
        raise MethodError("cannotCalculateChanges", "a state this server never gave")
    most = _int(args, "maxChanges", 0, 0)
    more = bool(most) and len(rows) > most
    if more:
        rows = rows[:most]
        counter = rows[-1].changed
    created = [r.id for r in rows if r.created > since and not r.removed]
    updated = [r.id for r in rows if r.created <= since and not r.removed]
    destroyed = [r.id for r in rows if r.created <= since and r.removed]
    return {
        "accountId": call.account_id,
        "oldState": args["sinceState"],
        "newState": _state(counter),
        "hasMoreChanges": more,
        "created": created,
        "updated": updated,
        "destroyed": destroyed,
    }


async def _get(
    call: Call,
    args: dict[str, Any],
    every: tuple[str, ...],
    records: Callable[[Call], Awaitable[tuple[int, dict[str, dict[str, Any]]]]],
) -> dict[str, Any]:
    """A /get (RFC 8620 §5.1) over the objects ``records`` reads."""
    check_account(call, args)
    ids = get_ids(call, args)
    props = _properties(args, every)
    counter, found = await records(call)
    chosen = list(found) if ids is None else [i for i in ids if i in found]
    return {
        "accountId": call.account_id,
        "state": _state(counter),
        "list": [{k: v for k, v in found[i].items() if k in props} for i in chosen],
        "notFound": [] if ids is None else [i for i in ids if i not in found],
    }


# -- Identity (RFC 8621 §6) -------------------------------------------------------------


async def identity_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return await _get(call, args, IDENTITY_PROPS, _identities)


async def identity_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return await _changes(call, args, "identity", "I")


def _email_addresses(value: object, name: str) -> list[dict[str, Any]] | None:
    """An ``EmailAddress[]|null`` property (RFC 8621 §4.1.2.3), checked."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > 100:
        raise _Refused(SetError("invalidProperties", properties=(name,)))
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            raise _Refused(SetError("invalidProperties", properties=(name,)))
        label = item.get("name")
        if label is not None and not isinstance(label, str):
            raise _Refused(SetError("invalidProperties", properties=(name,)))
        if len(item["email"]) > 320 or "@" not in item["email"] or len(label or "") > 500:
            raise _Refused(SetError("invalidProperties", properties=(name,)))
        out.append({"name": label, "email": item["email"]})
    return out


def _apply_identity(identity: dict[str, Any], props: object, creating: bool) -> None:
    if not isinstance(props, dict):
        raise _Refused(SetError("invalidProperties"))
    for key, value in props.items():
        if key in ("name", "textSignature", "htmlSignature"):
            if not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise _Refused(SetError("invalidProperties", properties=(key,)))
            identity[key] = value
        elif key in ("replyTo", "bcc"):
            identity[key] = _email_addresses(value, key)
        elif key == "email" and creating:
            if not isinstance(value, str) or len(value) > 320 or "@" not in value:
                raise _Refused(SetError("invalidProperties", properties=("email",)))
            identity["email"] = value
        elif key == "email" and value == identity.get("email"):
            continue  # RFC 8621 §6: immutable; the same value is no change
        elif key in ("id", "mayDelete") and value == identity.get(key):
            continue  # server-set, echoed back unchanged
        else:
            raise _Refused(SetError("invalidProperties", properties=(str(key)[:100],)))


async def identity_set(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    counter, found = await _identities(call)
    old_state = _state(counter)
    if args.get("ifInState") not in (None, old_state):
        raise MethodError("stateMismatch")
    create, update, destroy = set_objects(call, args)
    assert call.ctx is not None
    directory = call.ctx.directory
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, props in create.items():
        try:
            identity: dict[str, Any] = {"name": "", "replyTo": None, "bcc": None,
                                        "textSignature": "", "htmlSignature": ""}  # fmt: skip
            _apply_identity(identity, props, creating=True)
            email = identity.get("email")
            if not email:
                raise _Refused(SetError("invalidProperties", "email is required", ("email",)))
            if not directory.may_send_as(call.account, email):  # RFC 8621 §6.3
                raise _Refused(SetError("forbiddenFrom", f"{email[:200]} is not yours"))
            ident = _new_id("I")
            identity.update(id=ident, mayDelete=True)
            counter = await call.store.record_put(
                call.account, "identity", ident, json.dumps(identity)
            )
            call.created[cid] = ident
            created[cid] = {"id": ident, "mayDelete": True}
        except _Refused as exc:
            not_created[cid] = exc.body
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for ident, props in update.items():
        ident = str(call.resolve(ident))
        try:
            current = found.get(ident)
            if current is None:
                _, again = await _identities(call)  # created by this very call
                current = again.get(ident)
            if current is None:
                raise _Refused(SetError("notFound"))
            _apply_identity(current, props, creating=False)
            counter = await call.store.record_put(
                call.account, "identity", ident, json.dumps(current)
            )
            updated[ident] = None
        except _Refused as exc:
            not_updated[ident] = exc.body
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for ident in destroy:
        ident = str(call.resolve(ident))
        current = found.get(ident)
        if current is None and ident not in call.created.values():
            not_destroyed[ident] = SetError("notFound").json()
        elif current is not None and not current.get("mayDelete", True):
            not_destroyed[ident] = SetError("forbidden", "the account's own identity").json()
        else:
            counter = await call.store.record_put(call.account, "identity", ident, None)
            destroyed.append(ident)
    return {
        "accountId": call.account_id,
        "oldState": old_state,
        "newState": _state(counter),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }


# -- EmailSubmission (RFC 8621 §7) ------------------------------------------------------


async def _submissions(call: Call) -> tuple[int, dict[str, dict[str, Any]]]:
    counter, rows = await call.store.records(call.account, "submission")
    return counter, {r.id: json.loads(r.data) for r in rows}


async def submission_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return await _get(call, args, SUBMISSION_PROPS, _submissions)


async def submission_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return await _changes(call, args, "submission", "S")


_SUBMISSION_FILTERS = {"identityIds", "emailIds", "threadIds", "undoStatus", "before", "after"}


def _submission_matches(node: object, sub: dict[str, Any], depth: int = 0) -> bool:
    if depth > 10 or not isinstance(node, dict):
        raise MethodError("invalidArguments", "a filter is an object, at most 10 deep")
    if "operator" in node:
        conditions = node.get("conditions")
        if node["operator"] not in ("AND", "OR", "NOT") or not isinstance(conditions, list):
            raise MethodError("invalidArguments", "operator AND, OR or NOT with conditions")
        results = [_submission_matches(c, sub, depth + 1) for c in conditions]
        if node["operator"] == "AND":
            return all(results)
        return any(results) if node["operator"] == "OR" else not any(results)
    for key, want in node.items():
        if key not in _SUBMISSION_FILTERS:
            raise MethodError("unsupportedFilter", f"no filter on {str(key)[:50]}")
        if key in ("identityIds", "emailIds", "threadIds"):
            if not isinstance(want, list):
                raise MethodError("invalidArguments", f"{key} is a list of ids")
            if sub[key[:-1]] not in want:
                return False
        elif key == "undoStatus" and sub["undoStatus"] != want:
            return False
        elif key in ("before", "after"):
            if not isinstance(want, str):
                raise MethodError("invalidArguments", f"{key} is a UTCDate")
            if (sub["sendAt"] < want) != (key == "before"):
                return False
    return True


async def submission_query(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    counter, found = await _submissions(call)
    node = args.get("filter")
    rows = [s for s in found.values() if node is None or _submission_matches(node, s)]
    sort = args.get("sort") or []
    if not isinstance(sort, list):
        raise MethodError("invalidArguments", "sort is a list")
    for comparator in reversed(sort):
        prop = comparator.get("property") if isinstance(comparator, dict) else None
        if prop not in ("emailId", "threadId", "sentAt"):
            raise MethodError("unsupportedSort", "emailId, threadId or sentAt")
        key = "sendAt" if prop == "sentAt" else str(prop)
        rows.sort(key=lambda s: str(s[key]), reverse=not comparator.get("isAscending", True))
    ids = [s["id"] for s in rows]
    position = _int(args, "position", 0, -(10**9))
    anchor = args.get("anchor")
    if anchor is not None:
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        position = max(0, ids.index(anchor) + _int(args, "anchorOffset", 0, -(10**9)))
    start = max(0, len(ids) + position) if position < 0 else position
    limit = args.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise MethodError("invalidArguments", "limit must be a non-negative integer")
    answer: dict[str, Any] = {
        "accountId": call.account_id,
        "queryState": _state(counter),
        "canCalculateChanges": False,
        "position": start,
        "ids": ids[start : start + limit] if limit is not None else ids[start:],
    }
    if args.get("calculateTotal"):
        answer["total"] = len(ids)
    return answer


def _envelope(props: dict[str, Any], raw: bytes) -> tuple[str, list[str], dict[str, Any]]:
    """The envelope given, or the one RFC 8621 §7 derives from the message's header."""
    given = props.get("envelope")
    if given is not None:
        mail_from = given.get("mailFrom") if isinstance(given, dict) else None
        rcpts = given.get("rcptTo") if isinstance(given, dict) else None
        if (
            not isinstance(mail_from, dict)
            or not isinstance(mail_from.get("email"), str)
            or not isinstance(rcpts, list)
            or not all(isinstance(r, dict) and isinstance(r.get("email"), str) for r in rcpts)
        ):
            raise _Refused(SetError("invalidProperties", "a malformed envelope", ("envelope",)))
        if mail_from.get("parameters") or any(r.get("parameters") for r in rcpts):
            raise _Refused(SetError("invalidProperties", "no SMTP parameters", ("envelope",)))
        addresses = [r["email"] for r in rcpts]
        return mail_from["email"], addresses, given
    from email.utils import getaddresses

    heads = header_view(raw)
    try:
        senders = getaddresses([str(v) for v in heads.get_all("Sender") or ()])
        froms = getaddresses([str(v) for v in heads.get_all("From") or ()])
        wanted = [getaddresses([str(v) for v in heads.get_all(n) or ()]) for n in _RCPT_FIELDS]
    except RecursionError:  # comments or groups nested thousands deep: the stdlib recurses
        raise _Refused(SetError("invalidEmail", "address fields nested too deep")) from None
    first = (senders or froms or [("", "")])[0][1]
    seen: list[str] = []
    for pairs in wanted:
        for _, address in pairs:
            if address and address not in seen:
                seen.append(address)
    if len(seen) > _MAX_RCPT_IN_HEADERS:
        raise _Refused(SetError("tooManyRecipients", "too many recipients"))
    envelope = {
        "mailFrom": {"email": first, "parameters": None},
        "rcptTo": [{"email": a, "parameters": None} for a in seen],
    }
    return first, seen, envelope


_RCPT_FIELDS = ("To", "Cc", "Bcc")


async def _submit(
    call: Call, props: object, identities: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    if not isinstance(props, dict):
        raise _Refused(SetError("invalidProperties"))
    for key in props:
        if key not in ("identityId", "emailId", "envelope"):
            raise _Refused(SetError("invalidProperties", properties=(str(key)[:100],)))
    identity_id = str(call.resolve(props.get("identityId")))
    identity = identities.get(identity_id)
    if identity is None:
        raise _Refused(SetError("invalidProperties", "no such identity", ("identityId",)))
    email_id = str(call.resolve(props.get("emailId")))
    email = await call.view.email(email_id) if digest_of(email_id) else None
    if email is None:
        raise _Refused(SetError("invalidProperties", "no such Email", ("emailId",)))
    try:
        raw = await call.view.raw(email.first, call.max_message + 1)
    except StoreError:
        raise _Refused(SetError("invalidProperties", "no such Email", ("emailId",))) from None
    if len(raw) > call.max_message:
        raise _Refused(SetError("tooLarge", "larger than the message size limit"))
    mail_from, rcpt_to, envelope = _envelope(props, raw)
    assert call.ctx is not None
    try:
        report = await send_message(
            call.ctx, call.account, raw, mail_from, rcpt_to, peer=call.peer or "127.0.0.1"
        )
    except Refusal as exc:
        error = SetError(exc.kind, str(exc)).json()
        error.update(exc.extra)
        raise _Refused(error) from None
    ident = _new_id("S")
    if report.stored is not None:  # named so that the queue's outcomes find it by its key
        queued = await call.store.queue_get(report.stored)
        if queued is not None and queued.authenticated == call.account:
            ident = _queued_id(queued)
    record: dict[str, Any] = {
        "id": ident,
        "identityId": identity_id,
        "emailId": email.id,
        "threadId": (await call.view.thread_ids([email]))[email.digest],
        "envelope": envelope,
        "sendAt": utc_date(time.time()),
        "undoStatus": "final",
        "deliveryStatus": {
            rcpt: {"smtpReply": reply, "delivered": delivered, "displayed": "unknown"}
            for rcpt, (reply, delivered) in report.status.items()
        },
        "dsnBlobIds": [],
        "mdnBlobIds": [],
    }
    if report.stored is not None:  # kept, not shown: the outcome checks it is the one
        record[_QUEUED] = report.stored
    await call.store.record_put(
        call.account, "submission", ident, json.dumps(record), keep=_KEEP_SUBMISSIONS
    )
    return record


async def submission_set(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    counter, found = await _submissions(call)
    old_state = _state(counter)
    if args.get("ifInState") not in (None, old_state):
        raise MethodError("stateMismatch")
    create, update, destroy = set_objects(call, args)
    on_update = args.get("onSuccessUpdateEmail")
    on_destroy = args.get("onSuccessDestroyEmail")
    if on_update is not None and not isinstance(on_update, dict):
        raise MethodError("invalidArguments", "onSuccessUpdateEmail is a map")
    if on_destroy is not None and not isinstance(on_destroy, list):
        raise MethodError("invalidArguments", "onSuccessDestroyEmail is a list")
    _, identities = await _identities(call)
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    emails_of: dict[str, str] = {}  # submission id or "#creation id" -> its emailId
    for cid, props in create.items():
        try:
            record = await _submit(call, props, identities)
        except _Refused as exc:
            not_created[cid] = exc.body
            continue
        call.created[cid] = record["id"]
        created[cid] = {"id": record["id"], "undoStatus": "final", "sendAt": record["sendAt"],
                        "threadId": record["threadId"]}  # fmt: skip
        emails_of["#" + cid] = emails_of[record["id"]] = record["emailId"]
        call.view.forget()
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for ident, props in update.items():
        ident = str(call.resolve(ident))
        if ident not in found:
            not_updated[ident] = SetError("notFound").json()
        elif not isinstance(props, dict) or set(props) - {"undoStatus"}:
            not_updated[ident] = SetError("invalidProperties", "only undoStatus").json()
        elif props.get("undoStatus") == "canceled":  # sent at once: RFC 8621 §7.5
            not_updated[ident] = SetError("cannotUnsend", "already sent").json()
        elif props.get("undoStatus") == found[ident]["undoStatus"]:
            updated[ident] = None
            emails_of[ident] = found[ident]["emailId"]
        else:
            not_updated[ident] = SetError("invalidProperties", properties=("undoStatus",)).json()
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for ident in destroy:
        ident = str(call.resolve(ident))
        if ident not in found and ident not in emails_of:
            not_destroyed[ident] = SetError("notFound").json()
            continue
        emails_of.setdefault(ident, found[ident]["emailId"] if ident in found else "")
        counter = await call.store.record_put(call.account, "submission", ident, None)
        destroyed.append(ident)
    counter, _ = await call.store.records(call.account, "submission", since=2**62)
    answer = {
        "accountId": call.account_id,
        "oldState": old_state,
        "newState": _state(counter),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }
    await _after_success(call, on_update or {}, on_destroy or [], emails_of)
    return answer


async def _after_success(
    call: Call, on_update: dict[str, Any], on_destroy: list[Any], emails_of: dict[str, str]
) -> None:
    """The implicit Email/set of ``onSuccessUpdateEmail`` / ``onSuccessDestroyEmail``
    (RFC 8621 §7.5), for the submissions that succeeded; its response follows ours."""
    update = {emails_of[k]: v for k, v in on_update.items() if emails_of.get(k)}
    destroy = [emails_of[k] for k in on_destroy if isinstance(k, str) and emails_of.get(k)]
    if not update and not destroy:
        return
    for email_id in [*update, *destroy]:
        if not is_id(email_id):
            return
    result = await email_set(
        call, {"accountId": call.account_id, "update": update or None, "destroy": destroy or None}
    )
    call.implicit.append(("Email/set", result))


SUBMISSION_METHODS: dict[str, Method] = {
    "Identity/get": identity_get,
    "Identity/changes": identity_changes,
    "Identity/set": identity_set,
    "EmailSubmission/get": submission_get,
    "EmailSubmission/changes": submission_changes,
    "EmailSubmission/query": submission_query,
    "EmailSubmission/set": submission_set,
}
