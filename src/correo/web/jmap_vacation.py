"""JMAP VacationResponse (RFC 8621 §8) as a part of the account's active Sieve script.

The vacation reply is Sieve's ``vacation`` (RFC 5230), so the script ManageSieve shows
is what answers: VacationResponse/set writes a marked block into the active script (or
a script of its own, ``correo-vacation``, activated when none is), and /get reads the
settings back from that block.  The block is three marked pieces:

* a first line ``# correo:vacation {settings as JSON}`` (kept while disabled, so the
  subject and text survive switching off and on);
* ``require ["vacation", "date", "relational"];`` right after it (Sieve wants every
  ``require`` before any other command, RFC 5228 §3.2);
* between ``# correo:vacation-begin`` and ``# correo:vacation-end``, after the script's
  own leading ``require`` commands: the ``vacation`` action, inside ``currentdate``
  tests (RFC 5260 §5) for ``fromDate`` and ``toDate``, compared in UTC.

Everything else in the script is left as it was.  The result is checked as
ManageSieve checks a script before it is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import datetime
from typing import Any

from correo.jmap.core import MethodError, SetError
from correo.sieve import check
from correo.store.api import MailStore
from correo.web.jmap_methods import Call, Method, check_account, get_ids, set_objects

__all__ = ["VACATION", "VACATION_METHODS", "vacation_script", "vacation_state"]

VACATION = "urn:ietf:params:jmap:vacationresponse"
_SCRIPT = "correo-vacation"
_HEAD = "# correo:vacation "
_REQUIRE = 'require ["vacation", "date", "relational"]; # correo:vacation'
_BEGIN = "# correo:vacation-begin"
_END = "# correo:vacation-end"
_PROPS = ("id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody")
_EMPTY: dict[str, Any] = {"isEnabled": False, "fromDate": None, "toDate": None,
                          "subject": None, "textBody": None, "htmlBody": None}  # fmt: skip
_MAX_TEXT = 64 * 1024
_TAG = re.compile(r"<[^>]*>")


def _settings(script: str | None) -> dict[str, Any]:
    """The settings a script's marked block holds (defaults without one)."""
    for line in (script or "").splitlines():
        if line.startswith(_HEAD):
            try:
                found = json.loads(line[len(_HEAD) :])
            except ValueError:
                break
            if isinstance(found, dict):
                return {k: found.get(k, v) for k, v in _EMPTY.items()}
    return dict(_EMPTY)


def without_block(script: str, head: str, require: str, begin: str, end: str) -> str:
    """``script`` without a marked block: its ``head`` line, its ``require`` line and
    everything from ``begin`` to ``end`` (vacation here, forwarding too)."""
    out: list[str] = []
    inside = False
    for line in script.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if bare == begin:
            inside = True
        elif bare == end:
            inside = False
        elif not inside and not bare.startswith(head) and bare != require:
            out.append(line)
    return "".join(out)


def with_block(rest: str, head: str, require: str, block: str) -> str:
    """``rest`` with a marked block put in: ``head`` and ``require`` first, ``block``
    right after the script's leading ``require`` commands."""
    at = _leading_requires_end(rest)
    before = rest[:at] if not rest[:at] or rest[:at].endswith("\n") else rest[:at] + "\n"
    return head + require + "\n" + before + block + rest[at:]


def _leading_requires_end(script: str) -> int:
    """Where the script's leading ``require`` commands (and comments) end."""
    i, n, end = 0, len(script), 0
    while i < n:
        c = script[i]
        if c in " \t\r\n":
            i += 1
        elif c == "#":
            nl = script.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif script.startswith("/*", i):
            close = script.find("*/", i + 2)
            i = n if close < 0 else close + 2
        elif script.startswith("require", i):
            j = i + 7
            while j < n and script[j] != ";":
                if script[j] == '"':  # a quoted string may hold a ';'
                    j += 1
                    while j < n and script[j] != '"':
                        j += 2 if script[j] == "\\" else 1
                j += 1
            i = end = min(n, j + 1)
            while i < n and script[i] in " \t":  # a comment on the same line goes with
                i += 1  # it (the marked blocks' ``require ...; # correo:...`` lines)
            if script.startswith("#", i):
                nl = script.find("\n", i)
                if nl < 0:
                    i = end = n
                else:
                    i = nl
            else:
                i = end
            for ending in ("\r\n", "\n"):
                if script.startswith(ending, i):
                    i = end = i + len(ending)
                    break
        else:
            break
    return end


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sieve_date(utc: str) -> str:
    """A JMAP UTCDate as currentdate's ``iso8601`` renders it in zone +0000."""
    when = datetime.fromisoformat(utc.replace("Z", "+00:00"))
    return when.strftime("%Y-%m-%dT%H:%M:%S") + "+00:00"


def vacation_script(script: str | None, settings: dict[str, Any]) -> str:
    """``script`` with its vacation block replaced by one for ``settings``."""
    rest = without_block(script or "", _HEAD, _REQUIRE, _BEGIN, _END)
    head = _HEAD + json.dumps(settings, ensure_ascii=False, separators=(",", ":")) + "\n"
    if not settings["isEnabled"]:
        return head + rest
    text = settings["textBody"]
    if text is None:
        text = _TAG.sub("", settings["htmlBody"] or "") or "I am away."
    action = "vacation"
    if settings["subject"]:
        action += " :subject " + _quoted(settings["subject"])
    action += " " + _quoted(text) + ";"
    tests = [
        f'currentdate :zone "+0000" :value "{rel}" "iso8601" "{_sieve_date(settings[key])}"'
        for key, rel in (("fromDate", "ge"), ("toDate", "lt"))
        if settings[key]
    ]
    if tests:
        action = f"if allof ({', '.join(tests)}) {{\n    {action}\n}}"
    return with_block(rest, head, _REQUIRE, f"{_BEGIN}\n{action}\n{_END}\n")


async def _current(call: Call) -> tuple[str | None, str | None]:
    active = await call.store.sieve_active(call.account)
    return (None, None) if active is None else active


def _state(script: str | None) -> str:
    return hashlib.sha256((script or "").encode()).hexdigest()[:16]


async def vacation_state(store: MailStore, account: str) -> str:
    """The VacationResponse state now: that of the active script (push announces it)."""
    active = await store.sieve_active(account)
    return _state(None if active is None else active[1])


async def vacation_get(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    ids = get_ids(call, args)
    props = args.get("properties") or list(_PROPS)
    if not isinstance(props, list) or any(p not in _PROPS for p in props):
        raise MethodError("invalidArguments", "unknown property")
    _, script = await _current(call)
    item = {"id": "singleton", **_settings(script)}
    show = ids is None or "singleton" in ids
    return {
        "accountId": call.account_id,
        "state": _state(script),
        "list": [{k: v for k, v in item.items() if k in props or k == "id"}] if show else [],
        "notFound": [i for i in ids or () if i != "singleton"],
    }


def _updated(settings: dict[str, Any], patch: object) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise _Refused(SetError("invalidPatch"))
    new = dict(settings)
    for key, value in patch.items():
        if key == "id" and value == "singleton":
            continue
        if (
            (key == "isEnabled" and isinstance(value, bool))
            or (key in ("fromDate", "toDate") and (value is None or _is_date(value)))
            or (
                key in ("subject", "textBody", "htmlBody")
                and (value is None or (isinstance(value, str) and len(value) <= _MAX_TEXT))
            )
        ):
            new[key] = value
        else:
            raise _Refused(SetError("invalidProperties", properties=(str(key)[:100],)))
    return new


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class _Refused(Exception):
    def __init__(self, error: SetError) -> None:
        super().__init__(error.kind)
        self.error = error


async def vacation_set(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    check_account(call, args)
    name, script = await _current(call)
    old_state = _state(script)
    if args.get("ifInState") not in (None, old_state):
        raise MethodError("stateMismatch")
    create, update, destroy = set_objects(call, args, bounded=False)
    singleton = SetError("singleton", "there is one VacationResponse").json()  # RFC 8621 §8.2
    not_created = dict.fromkeys(create, singleton)
    not_destroyed = {str(i): singleton for i in destroy}
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    for ident, patch in update.items():
        if ident != "singleton":
            not_updated[ident] = SetError("notFound").json()
            continue
        try:
            settings = _updated(_settings(script), patch)
        except _Refused as exc:
            not_updated[ident] = exc.error.json()
            continue
        text = vacation_script(script, settings)
        most = call.ctx.config.delivery.max_script_size if call.ctx is not None else 0
        if most and len(text.encode()) > most:  # ManageSieve's limit holds here too
            not_updated[ident] = SetError("overQuota", f"the script passes {most} octets").json()
            continue
        errors = await asyncio.to_thread(check, text)
        if errors:
            not_updated[ident] = SetError("invalidProperties", str(errors[0])[:200]).json()
            continue
        target = name or _SCRIPT
        await call.store.sieve_put(call.account, target, text)
        if name is None:
            await call.store.sieve_activate(call.account, target)
        name, script = target, text
        if call.ctx is not None and call.ctx.mda is not None:
            call.ctx.mda.forget(call.account)  # delivery reads the new script at once
        updated[ident] = None
    return {
        "accountId": call.account_id,
        "oldState": old_state,
        "newState": _state(script),
        "created": None,
        "updated": updated or None,
        "destroyed": None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }


VACATION_METHODS: dict[str, Method] = {
    "VacationResponse/get": vacation_get,
    "VacationResponse/set": vacation_set,
}
