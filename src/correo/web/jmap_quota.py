"""JMAP Quota (RFC 9425) over the store's per-account quota (RFC 9208 STORAGE, MESSAGE).

An account has at most two Quota objects, ``Qoctets`` (its storage limit) and
``Qcount`` (its message limit), each present only while the limit is set; both count
every message copy of the account (``types`` ``Mail``, ``scope`` ``account``).  The
state token is the limits and usage themselves, so ``Quota/changes`` compares the old
token with now and needs nothing stored.
"""

from __future__ import annotations

from typing import Any

from correo.jmap.core import MethodError
from correo.store.api import MailStore, Quota
from correo.web.jmap_methods import (
    Call,
    Method,
    _int,
    check_account,
    get_ids,
    query_answer,
    sort_rows,
)

__all__ = ["QUOTA", "QUOTA_METHODS", "quota_state"]

QUOTA = "urn:ietf:params:jmap:quota"
_PROPS = ("id", "resourceType", "used", "hardLimit", "scope", "name", "types",
          "warnLimit", "softLimit", "description")  # fmt: skip
_WARN = 0.9  # the store warns the user by mail at 90 % (RFC 9425 §2 warnLimit)


def _objects(account: str, quota: Quota) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for ident, kind, used, limit in (
        ("Qoctets", "octets", quota.used_storage, quota.storage),
        ("Qcount", "count", quota.used_messages, quota.messages),
    ):
        if limit is None:
            continue
        out[ident] = {
            "id": ident,
            "resourceType": kind,  # RFC 9425 §2
            "used": used,
            "hardLimit": limit,
            "warnLimit": int(limit * _WARN),
            "scope": "account",
            "name": f"{account} {'storage' if kind == 'octets' else 'messages'}",
            "types": ["Mail"],
            "description": None,
        }
    return out


def _state(quota: Quota) -> str:
    parts = (quota.storage, quota.used_storage, quota.messages, quota.used_messages)
    return "q" + "-".join("n" if p is None else str(p) for p in parts)


async def quota_state(store: MailStore, account: str) -> str:
    """The Quota state now (RFC 9425 §4): push announces it when usage moves."""
    return _state(await store.get_quota(account))


def _read_state(token: object) -> dict[str, tuple[int, int]] | None:
    """Limit and usage per Quota id, from a state token; None if it is not one."""
    if not isinstance(token, str) or not token.startswith("q") or len(token) > 100:
        return None
    parts = token[1:].split("-")
    if len(parts) != 4 or not all(p == "n" or p.isdigit() for p in parts):
        return None
    storage, used_storage, messages, used_messages = (None if p == "n" else int(p) for p in parts)
    out: dict[str, tuple[int, int]] = {}
    if storage is not None:
        out["Qoctets"] = (storage, used_storage or 0)
    if messages is not None:
        out["Qcount"] = (messages, used_messages or 0)
    return out


async def quota_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = get_ids(call, args)
    props = args.get("properties")
    if props is not None and (not isinstance(props, list) or any(p not in _PROPS for p in props)):
        raise MethodError("invalidArguments", "unknown property")
    quota = await call.store.get_quota(call.account)
    found = _objects(call.account, quota)
    chosen = list(found) if ids is None else [i for i in ids if i in found]
    return {
        "accountId": call.account_id,
        "state": _state(quota),
        "list": [
            {k: v for k, v in found[i].items() if props is None or k in props or k == "id"}
            for i in chosen
        ],
        "notFound": [] if ids is None else [i for i in ids if i not in found],
    }


async def quota_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    old = _read_state(args.get("sinceState"))
    if old is None:
        raise MethodError("cannotCalculateChanges", "unknown state")
    _int(args, "maxChanges", 0, 0)  # at most two changes: always within any maximum
    quota = await call.store.get_quota(call.account)
    now = {i: (o["hardLimit"], o["used"]) for i, o in _objects(call.account, quota).items()}
    updated = [i for i in now if i in old and old[i] != now[i]]
    only_used = all(old[i][0] == now[i][0] for i in updated)
    return {
        "accountId": call.account_id,
        "oldState": args["sinceState"],
        "newState": _state(quota),
        "hasMoreChanges": False,
        "created": [i for i in now if i not in old],
        "updated": updated,
        "destroyed": [i for i in old if i not in now],
        # RFC 9425 §4.2: only usage moved
        "updatedProperties": ["used"] if updated and only_used else None,
    }


async def quota_query(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    quota = await call.store.get_quota(call.account)
    rows = list(_objects(call.account, quota).values())
    cond = args.get("filter") or {}
    if not isinstance(cond, dict) or "operator" in cond:
        raise MethodError("unsupportedFilter", "a single FilterCondition only")
    for key, want in cond.items():
        if key == "name":
            rows = [r for r in rows if isinstance(want, str) and want.lower() in r["name"].lower()]
        elif key == "scope":
            rows = [r for r in rows if r["scope"] in (want if isinstance(want, list) else [want])]
        elif key == "resourceType":
            rows = [r for r in rows if r["resourceType"] == want]
        elif key == "type":
            rows = [r for r in rows if want in r["types"]]
        else:
            raise MethodError("unsupportedFilter", f"no filter on {str(key)[:50]}")
    sort_rows(rows, args, ("name", "used"))
    return query_answer(call, args, [r["id"] for r in rows], _state(quota))


async def quota_query_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    raise MethodError("cannotCalculateChanges", "query the two Quotas again")


QUOTA_METHODS: dict[str, Method] = {
    "Quota/get": quota_get,
    "Quota/changes": quota_changes,
    "Quota/query": quota_query,
    "Quota/queryChanges": quota_query_changes,
}
