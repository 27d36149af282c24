"""JMAP Sieve scripts (RFC 9661) over the scripts ManageSieve keeps in the store.

A SieveScript's id is ``S`` and the base64url of its name (names are ManageSieve's
keys), so a script cannot be renamed through JMAP without changing its id: a ``name``
in an update is refused (ManageSieve's RENAMESCRIPT renames).  Its content is a blob
``Z`` + the SHA-256 of the text, served by the download URL.  Scripts are checked as
ManageSieve checks them (syntax, extensions, a literal vacation ``:from`` the user's
own) and held to ``[delivery] max_script_size`` and ``max_scripts``.  The state token
lists every script's id hash, content hash and activity, so ``SieveScript/changes``
compares it with now and needs nothing stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from typing import Any

from correo.jmap.core import MethodError, SetError
from correo.sieve import SIEVE_EXTENSIONS, check
from correo.store.api import MailboxError, MailStore
from correo.web.jmap_import import read_blob
from correo.web.jmap_methods import (
    Call,
    Method,
    _int,
    check_account,
    get_ids,
    query_answer,
    set_objects,
    sort_rows,
)

__all__ = ["SIEVE", "SIEVE_METHODS", "script_blob", "sieve_capability", "sieve_state"]

SIEVE = "urn:ietf:params:jmap:sieve"
_PROPS = ("id", "name", "blobId", "isActive")
_MAX_NAME = 128  # octets of a script name (RFC 9661 maxSizeScriptName)


def sieve_capability(max_size: int, max_scripts: int) -> dict[str, Any]:
    """The account capability (RFC 9661 §2)."""
    return {
        "implementation": "correo",
        "maxSizeScriptName": _MAX_NAME,
        "maxSizeScript": max_size,
        "maxNumberScripts": max_scripts,
        "maxNumberRedirects": None,
        "sieveExtensions": list(SIEVE_EXTENSIONS),
        "notificationMethods": None,
        "externalLists": None,
    }


def _id(name: str) -> str:
    return "S" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _name(ident: str) -> str | None:
    if not ident.startswith("S") or len(ident) > 200:
        return None
    text = ident[1:]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def script_blob(text: str) -> str:
    return "Z" + hashlib.sha256(text.encode()).hexdigest()[:24]


async def _scripts(call: Call) -> dict[str, dict[str, Any]]:
    return await _scripts_of(call.store, call.account)


async def sieve_state(store: MailStore, account: str) -> str:
    """The SieveScript state now (what push announces, RFC 9661 §2)."""
    return _state(await _scripts_of(store, account))


async def _scripts_of(store: MailStore, account: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, active in await store.sieve_list(account):
        text = await store.sieve_get(account, name)
        if text is None:
            continue
        out[_id(name)] = {"id": _id(name), "name": name, "blobId": script_blob(text),
                          "isActive": active, "_text": text}  # fmt: skip
    return out


def _mark(script: dict[str, Any]) -> str:
    return str(script["blobId"])[1:9] + ("a" if script["isActive"] else "i")


def _state(scripts: dict[str, dict[str, Any]]) -> str:
    return "s" + "".join(
        hashlib.sha256(i.encode()).hexdigest()[:8] + _mark(s) for i, s in sorted(scripts.items())
    )


def _public(script: dict[str, Any], props: list[str] | None) -> dict[str, Any]:
    return {k: v for k, v in script.items() if k != "_text" and (props is None or k in props)}


async def sieve_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = get_ids(call, args)
    props = args.get("properties")
    if props is not None and (not isinstance(props, list) or any(p not in _PROPS for p in props)):
        raise MethodError("invalidArguments", "unknown property")
    wanted = None if props is None else ["id", *props]
    scripts = await _scripts(call)
    chosen = list(scripts) if ids is None else [i for i in ids if i in scripts]
    return {
        "accountId": call.account_id,
        "state": _state(scripts),
        "list": [_public(scripts[i], wanted) for i in chosen],
        "notFound": [] if ids is None else [i for i in ids if i not in scripts],
    }


async def sieve_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    since = args.get("sinceState")
    if not isinstance(since, str) or not since.startswith("s") or (len(since) - 1) % 17:
        raise MethodError("cannotCalculateChanges", "unknown state")
    _int(args, "maxChanges", 0, 0)
    old = {since[i : i + 8]: since[i + 8 : i + 17] for i in range(1, len(since), 17)}
    scripts = await _scripts(call)
    now = {hashlib.sha256(i.encode()).hexdigest()[:8]: i for i in scripts}
    marks = {h: _mark(scripts[i]) for h, i in now.items()}
    destroyed = [h for h in old if h not in now]
    if destroyed:  # a hash cannot be turned back into the id it came from
        raise MethodError("cannotCalculateChanges", "a script was deleted")
    return {
        "accountId": call.account_id,
        "oldState": since,
        "newState": _state(scripts),
        "hasMoreChanges": False,
        "created": [now[h] for h in now if h not in old],
        "updated": [now[h] for h in now if h in old and old[h] != marks[h]],
        "destroyed": [],
    }


async def sieve_query(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    scripts = list((await _scripts(call)).values())
    cond = args.get("filter") or {}
    if not isinstance(cond, dict) or "operator" in cond:
        raise MethodError("unsupportedFilter", "a single FilterCondition only")
    for key, want in cond.items():
        if key == "name" and isinstance(want, str):
            scripts = [s for s in scripts if want.lower() in s["name"].lower()]
        elif key == "isActive" and isinstance(want, bool):
            scripts = [s for s in scripts if s["isActive"] is want]
        else:
            raise MethodError("unsupportedFilter", f"no filter on {str(key)[:50]}")
    sort_rows(scripts, args, ("name", "isActive"))
    ids = [s["id"] for s in scripts]
    return query_answer(call, args, ids, _state({s["id"]: s for s in scripts}))


class _Refused(Exception):
    def __init__(self, error: SetError) -> None:
        super().__init__(error.kind)
        self.error = error


async def _checked_text(call: Call, blob: object) -> str:
    """The script a blob holds, checked as ManageSieve checks a PUTSCRIPT."""
    assert call.ctx is not None
    limit = call.ctx.config.delivery.max_script_size
    if not isinstance(blob, str):
        raise _Refused(SetError("invalidProperties", properties=("blobId",)))
    data = await read_blob(call, blob, limit)
    if data is None:
        raise _Refused(SetError("blobNotFound", "no such blob"))
    if len(data) > limit:
        raise _Refused(SetError("tooLarge", f"a script has at most {limit} octets"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(SetError("invalidSieve", "the script is not UTF-8")) from None
    directory = call.ctx.directory

    def allowed(address: str) -> bool:
        return directory.may_send_as(call.account, address)

    errors = await asyncio.to_thread(check, text, sender_allowed=allowed)
    if errors:  # RFC 9661 §2.2: invalidSieve
        raise _Refused(SetError("invalidSieve", "; ".join(str(e) for e in errors[:5])[:500]))
    return text


def _valid_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode()) > _MAX_NAME
        or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)  # RFC 5804 §1.6
    ):
        raise _Refused(SetError("invalidProperties", "a name", ("name",)))
    return name


async def sieve_set(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    assert call.ctx is not None
    scripts = await _scripts(call)
    old_state = _state(scripts)
    if args.get("ifInState") not in (None, old_state):
        raise MethodError("stateMismatch")
    create, update, destroy = set_objects(call, args, bounded=False)
    activate = args.get("onSuccessActivateScript")
    deactivate = bool(args.get("onSuccessDeactivateScript"))
    store, account = call.store, call.account
    most = call.ctx.config.delivery.max_scripts
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for cid, props in create.items():
        try:
            if not isinstance(props, dict) or set(props) - {"name", "blobId"}:
                raise _Refused(SetError("invalidProperties", "name and blobId"))
            name = _valid_name(props.get("name"))
            if _id(name) in scripts:
                raise _Refused(SetError("alreadyExists", "a script of that name"))
            if len(scripts) >= most:
                raise _Refused(SetError("overQuota", f"at most {most} scripts"))
            text = await _checked_text(call, props.get("blobId"))
            await store.sieve_put(account, name, text)
            scripts[_id(name)] = {"id": _id(name), "name": name, "blobId": script_blob(text),
                                  "isActive": False, "_text": text}  # fmt: skip
            call.created[cid] = _id(name)
            created[cid] = {"id": _id(name), "blobId": script_blob(text), "isActive": False}
        except _Refused as exc:
            not_created[cid] = exc.error.json()
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for ident, props in update.items():
        ident = str(call.resolve(ident))
        try:
            current = scripts.get(ident)
            if current is None:
                raise _Refused(SetError("notFound"))
            if not isinstance(props, dict):
                raise _Refused(SetError("invalidPatch"))
            for key in props:
                if key == "name" and props[key] != current["name"]:
                    raise _Refused(
                        SetError("invalidProperties", "renamed by ManageSieve", ("name",))
                    )
                if key not in ("name", "blobId"):
                    raise _Refused(SetError("invalidProperties", properties=(str(key)[:100],)))
            if "blobId" in props:
                text = await _checked_text(call, props["blobId"])
                await store.sieve_put(account, current["name"], text)
                current.update(blobId=script_blob(text), _text=text)
                updated[ident] = {"blobId": current["blobId"]}
            else:
                updated[ident] = None
        except _Refused as exc:
            not_updated[ident] = exc.error.json()
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for ident in destroy:
        ident = str(call.resolve(ident))
        current = scripts.get(ident)
        if current is None:
            not_destroyed[ident] = SetError("notFound").json()
        elif current["isActive"]:  # RFC 9661 §2.2 / RFC 5804 §2.10
            not_destroyed[ident] = SetError("scriptIsActive", "deactivate it first").json()
        else:
            try:
                await store.sieve_delete(account, current["name"])
            except MailboxError as exc:
                not_destroyed[ident] = SetError("forbidden", str(exc)[:200]).json()
                continue
            del scripts[ident]
            destroyed.append(ident)
    # RFC 9661 §2.2: activation after the changes, when any was made or none was asked
    if activate is not None or deactivate:
        target = _name(str(call.resolve(activate))) if isinstance(activate, str) else None
        if target is not None and _id(target) in scripts:
            await store.sieve_activate(account, target)
        elif deactivate:
            await store.sieve_activate(account, None)
    if call.ctx.mda is not None:
        call.ctx.mda.forget(account)  # delivery reads the new script at once
    return {
        "accountId": call.account_id,
        "oldState": old_state,
        "newState": _state(await _scripts(call)),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }


async def sieve_validate(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    """RFC 9661 §2.5: whether a blob is a script this server would take."""
    check_account(call, args)
    try:
        await _checked_text(call, args.get("blobId"))
    except _Refused as exc:
        if exc.error.kind == "blobNotFound":
            raise MethodError("invalidArguments", "no such blob") from None
        return {"accountId": call.account_id, "error": exc.error.json()}
    return {"accountId": call.account_id, "error": None}


async def sieve_query_changes(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    raise MethodError("cannotCalculateChanges", "query the scripts again")


SIEVE_METHODS: dict[str, Method] = {
    "SieveScript/get": sieve_get,
    "SieveScript/changes": sieve_changes,
    "SieveScript/query": sieve_query,
    "SieveScript/queryChanges": sieve_query_changes,
    "SieveScript/set": sieve_set,
    "SieveScript/validate": sieve_validate,
}
