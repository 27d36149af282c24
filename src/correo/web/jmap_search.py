"""JMAP SearchSnippet/get (RFC 8621 §5) and the queryChanges methods (RFC 8620 §5.6).

A query state is the account's Email (or Mailbox) state, so ``/queryChanges`` is the
``/changes`` since that state plus the query run again: every Email that changed is
reported removed, and added at its index in the new results when it is there.  An Email
that did not change keeps its place relative to the others (its sort keys and the
filter's view of it are the same), so the client's list ends up exact.  Over-reporting a
removal is allowed by §5.6 (a client drops ids it does not hold).
"""

from __future__ import annotations

import asyncio
from typing import Any

from correo.jmap.core import MethodError
from correo.jmap.mail import digest_of
from correo.jmap.search import snippet, terms_of
from correo.web.jmap_email import _check_filter, email_changes, email_query
from correo.web.jmap_mail import EmailRow
from correo.web.jmap_methods import (
    Call,
    Method,
    _int,
    check_account,
    mailbox_changes,
    mailbox_query,
)
from correo.web.jmap_text import texts_for

__all__ = ["SEARCH_METHODS"]


async def search_snippet_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = args.get("emailIds")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "emailIds is a list of ids")
    if len(ids) > call.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "more ids than maxObjectsInGet")
    node = args.get("filter")
    if node is not None:
        _check_filter(node)
    terms = terms_of(node)
    found: list[EmailRow] = []
    missing: list[str] = []
    for ident in ids:
        email = await call.view.email(ident) if digest_of(ident) else None
        if email is None:
            missing.append(ident)
        else:
            found.append(email)
    texts = await texts_for(call.view, terms, found) if terms else {}

    def snippets() -> list[dict[str, Any]]:
        out = []
        for email in found:
            text = texts.get(email.digest)
            none = {"subject": None, "preview": None}
            marks = snippet(text, terms) if text is not None else none
            out.append({"emailId": email.id, **marks})
        return out

    # off the loop: up to maxObjectsInGet bodies of a megabyte searched for 16 terms
    # held it for seconds (each search is also bounded, for the GIL's sake)
    out = await asyncio.to_thread(snippets) if texts else snippets()
    return {"accountId": call.account_id, "list": out, "notFound": missing}


async def _query_changes(
    call: Call, args: dict[str, Any], changes: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    changed = set(changes["created"]) | set(changes["updated"]) | set(changes["destroyed"])
    ids: list[str] = current["ids"]
    removed = sorted(set(changes["updated"]) | set(changes["destroyed"]))
    added = [{"id": i, "index": n} for n, i in enumerate(ids) if i in changed]
    most = _int(args, "maxChanges", 0, 0)
    if most and len(removed) + len(added) > most:
        raise MethodError("tooManyChanges", "more changes than maxChanges")  # RFC 8620 §5.6
    answer: dict[str, Any] = {
        "accountId": call.account_id,
        "oldQueryState": args["sinceQueryState"],
        "newQueryState": current["queryState"],
        "removed": removed,
        "added": added,
    }
    if args.get("calculateTotal"):
        answer["total"] = len(ids)
    return answer


def _since(args: dict[str, Any]) -> str:
    since = args.get("sinceQueryState")
    if not isinstance(since, str):
        raise MethodError("invalidArguments", "sinceQueryState is a string")
    return since


async def email_query_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    since = _since(args)
    keys = ("accountId", "filter", "sort", "collapseThreads")
    query: dict[str, Any] = {k: args[k] for k in keys if k in args}
    current = await email_query(call, query)  # checks filter and sort first
    changes = await email_changes(call, {"accountId": call.account_id, "sinceState": since})
    return await _query_changes(call, args, changes, current)


async def mailbox_query_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    since = _since(args)
    query: dict[str, Any] = {k: args[k] for k in ("accountId", "filter", "sort") if k in args}
    current = await mailbox_query(call, query)
    changes = await mailbox_changes(call, {"accountId": call.account_id, "sinceState": since})
    return await _query_changes(call, args, changes, current)


SEARCH_METHODS: dict[str, Method] = {
    "SearchSnippet/get": search_snippet_get,
    "Email/queryChanges": email_query_changes,
    "Mailbox/queryChanges": mailbox_query_changes,
}
