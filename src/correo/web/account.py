"""The account page of the webmail: password, vacation reply (over JMAP, by the page)
and the account's Sieve script as text.

* ``GET /account``: the page (``static/account.html``);
* ``POST /webmail/account/password``: ``{"current", "new"}``; the current password goes
  through the throttled check IMAP uses, the new one through ``[auth]
  min_password_length``;
* ``GET``/``PUT /webmail/account/sieve``: the active script (``{"name", "script"}``),
  replaced only by a script that passes the same validation as ManageSieve's PUTSCRIPT;
* ``GET``/``PUT /webmail/account/forwarding``: ``{"to": [addresses], "keep": bool}``, a
  marked block of that script (:mod:`correo.web.forwarding`);
* ``GET``/``PUT /webmail/account/filters``: ``{"rules": [...]}`` (and ``"editable"``),
  the filters form, another marked block (:mod:`correo.web.filters`).

Changes need the session's bearer token in ``Authorization`` (the CSRF token): the
cookie alone opens the page and reads, never writes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from correo.directory import DirectoryError
from correo.server.auth import check_password
from correo.server.context import new_session_id
from correo.sieve import check
from correo.store.api import StoreError
from correo.web.app import CTX
from correo.web.filters import FilterError, filter_rules, filters_script
from correo.web.forwarding import MAX_ADDRESSES, forward_script, forward_settings, valid_address
from correo.web.session_auth import end_other_sessions, harden, web_account

__all__ = ["add_routes", "answer", "bearer_account", "read_json"]

_SCRIPT = "webmail"  # the script's name when the account has none active yet
_MAX_JSON = 256 * 1024


async def bearer_account(request: web.Request) -> str:
    """The account of a change: only with the bearer token, never the cookie alone."""
    if not request.headers.get("Authorization", "").lower().startswith("bearer "):
        raise web.HTTPForbidden(text="the session's token is required\n")
    account = await web_account(request)
    if account is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    return account


async def read_json(request: web.Request) -> dict[str, Any]:
    body = await request.content.read(_MAX_JSON + 1)
    if len(body) > _MAX_JSON:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_JSON, actual_size=len(body))
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="not JSON\n") from None
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="a JSON object is expected\n")
    return value


def answer(status: int, **body: Any) -> web.Response:
    response = web.json_response(body, status=status)
    harden(response)
    return response


async def _page(request: web.Request) -> web.StreamResponse:
    if await web_account(request) is None:
        return web.Response(status=303, headers={"Location": "/"})
    from correo.web.webapp import static_file

    found = await asyncio.to_thread(static_file, "account.html")
    assert found is not None
    response = web.Response(body=found[0], content_type="text/html")
    harden(response)
    return response


async def _password(request: web.Request) -> web.Response:
    account = await bearer_account(request)
    ctx = request.app[CTX]
    form = await read_json(request)
    current, new = form.get("current"), form.get("new")
    if not isinstance(current, str) or not isinstance(new, str):
        return answer(400, error="Give the current and the new password.")
    least = ctx.config.auth.min_password_length
    if len(new) < least or len(new) > 1024:
        return answer(400, error=f"The new password needs at least {least} characters.")
    outcome = await check_password(
        ctx,
        session=new_session_id(),
        peer_ip=request.remote or "?",
        user=account,
        password=current[:1024],
    )
    if outcome.account != account:
        return answer(403, error="The current password is not right.")
    try:
        await asyncio.to_thread(ctx.directory.set_password, account, new)
    except (DirectoryError, ValueError) as exc:
        return answer(400, error=str(exc)[:300])
    ended = await end_other_sessions(request, account)  # other browsers sign in again
    ctx.log.info("web.password_changed", peer=request.remote or "?", user=account, ended=ended)
    return answer(200, changed=True)


async def _active(request: web.Request, account: str) -> tuple[str, str]:
    store = request.app[CTX].store
    active = await store.sieve_active(account)
    return active if active is not None else (_SCRIPT, "")


async def _sieve_get(request: web.Request) -> web.Response:
    account = await web_account(request)
    if account is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    name, text = await _active(request, account)
    return answer(200, name=name, script=text)


async def _sieve_put(request: web.Request) -> web.Response:
    account = await bearer_account(request)
    form = await read_json(request)
    text = form.get("script")
    if not isinstance(text, str):
        return answer(400, error="Give the script as text.")
    return await _save(request, account, text)


async def _save(request: web.Request, account: str, text: str) -> web.Response:
    """Check ``text`` as ManageSieve would, then make it the active script."""
    ctx = request.app[CTX]
    most = ctx.config.delivery.max_script_size
    if len(text.encode()) > most:
        return answer(400, error=f"The script is larger than {most} bytes.")
    directory = ctx.directory

    def sender_allowed(address: str) -> bool:
        return directory.may_send_as(account, address)

    errors = await asyncio.to_thread(check, text, sender_allowed=sender_allowed)
    if errors:
        return answer(400, error="; ".join(str(e) for e in errors[:5]))
    name, _ = await _active(request, account)
    try:
        await ctx.store.sieve_put(account, name, text)
        await ctx.store.sieve_activate(account, name)
    except StoreError as exc:
        return answer(503, error=str(exc)[:300])
    if ctx.mda is not None:
        ctx.mda.forget(account)  # the next delivery runs the new script
    ctx.log.info("web.sieve_saved", user=account, name=name, size=len(text))
    return answer(200, name=name, saved=True)


async def _forwarding_get(request: web.Request) -> web.Response:
    account = await web_account(request)
    if account is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    _, text = await _active(request, account)
    return answer(200, **forward_settings(text))


async def _forwarding_put(request: web.Request) -> web.Response:
    account = await bearer_account(request)
    form = await read_json(request)
    to, keep = form.get("to"), form.get("keep", True)
    if not isinstance(to, list) or not isinstance(keep, bool):
        return answer(400, error="Give the addresses as a list.")
    addresses = [a.strip() for a in to if isinstance(a, str) and a.strip()]
    if len(addresses) > MAX_ADDRESSES:
        return answer(400, error=f"At most {MAX_ADDRESSES} addresses.")
    bad = [a for a in addresses if not valid_address(a)]
    if bad:
        return answer(400, error=f"Not an address: {bad[0][:100]}")
    _, text = await _active(request, account)
    return await _save(request, account, forward_script(text, addresses, keep))


async def _filters_get(request: web.Request) -> web.Response:
    account = await web_account(request)
    if account is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    _, text = await _active(request, account)
    return answer(200, **filter_rules(text))


async def _filters_put(request: web.Request) -> web.Response:
    """The form's rules become the script's filters block; the Sieve made from them goes
    through the same check as any script before it is saved."""
    account = await bearer_account(request)
    form = await read_json(request)
    _, text = await _active(request, account)
    try:
        script = filters_script(text, form.get("rules"))
    except FilterError as exc:
        status = 409 if not filter_rules(text)["editable"] else 400
        return answer(status, error=str(exc))
    return await _save(request, account, script)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/account", _page)
    app.router.add_post("/webmail/account/password", _password)
    app.router.add_get("/webmail/account/sieve", _sieve_get)
    app.router.add_put("/webmail/account/sieve", _sieve_put)
    app.router.add_get("/webmail/account/forwarding", _forwarding_get)
    app.router.add_put("/webmail/account/forwarding", _forwarding_put)
    app.router.add_get("/webmail/account/filters", _filters_get)
    app.router.add_put("/webmail/account/filters", _filters_put)
