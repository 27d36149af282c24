"""The admin page of the webmail, for accounts marked ``correo user admin ADDRESS on``.

* ``GET /admin``: the page (``static/admin.html``);
* ``GET /webmail/admin/state``: domains, users (with their admin flag), aliases and the
  outbound queue;
* ``GET /webmail/admin/dns?domain=D[&check=1]``: the records ``correo dns D`` prints,
  with ``check=1`` each compared with what the DNS holds (``correo dns check D``);
* ``POST /webmail/admin/action``: one change, ``{"action": ..., ...}``, from the table
  :data:`_ACTIONS` (users, aliases, domains, DKIM rotation, the queue), each the same
  operation as the ``correo`` command of that name and each logged as ``web.admin``.

Every change needs the session's bearer token (the CSRF token) and an account whose
admin flag is on, checked at each request: turning the flag off takes effect at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from correo.directory import DirectoryError
from correo.mailauth.keys import ensure_domain_keys, rotate_keys
from correo.server.context import ServerContext
from correo.store.api import StoreError
from correo.web.account import answer, bearer_account, read_json
from correo.web.app import CTX
from correo.web.session_auth import harden, web_account

__all__ = ["add_routes"]

Action = Callable[[ServerContext, dict[str, Any]], Awaitable[str]]


def _text(form: dict[str, Any], key: str) -> str:
    value = form.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > 1024:
        raise ValueError(f"{key} is required")
    return value.strip()


async def _user_add(ctx: ServerContext, form: dict[str, Any]) -> str:
    address, password = _text(form, "address"), _text(form, "password")
    directory = ctx.directory
    name = directory.account_name(address)
    if directory.user_exists(name):
        raise ValueError(f"user {name} already exists")
    await ctx.store.set_aside_account(name)  # data an earlier owner left is not handed over
    await asyncio.to_thread(directory.add_user, address, password)
    await ctx.store.create_account(name)
    return name


async def _user_del(ctx: ServerContext, form: dict[str, Any]) -> str:
    name = ctx.directory.account_name(_text(form, "address"))
    await asyncio.to_thread(ctx.directory.del_user, name)
    await ctx.store.set_aside_account(name)  # kept, as `correo user del --keep-data`
    return name


async def _user_admin(ctx: ServerContext, form: dict[str, Any]) -> str:
    address = _text(form, "address")
    await asyncio.to_thread(ctx.directory.set_admin, address, form.get("on") is True)
    return address


async def _alias_add(ctx: ServerContext, form: dict[str, Any]) -> str:
    alias, target = _text(form, "alias"), _text(form, "target")
    await asyncio.to_thread(ctx.directory.add_alias, alias, target)
    return alias


async def _alias_del(ctx: ServerContext, form: dict[str, Any]) -> str:
    alias = _text(form, "alias")
    await asyncio.to_thread(ctx.directory.del_alias, alias)
    return alias


async def _domain_add(ctx: ServerContext, form: dict[str, Any]) -> str:
    domain = _text(form, "domain")
    directory = ctx.directory

    def add() -> None:
        directory.add_domain(domain)
        ensure_domain_keys(directory.dkim, domain)  # DKIM keys for outbound signing

    await asyncio.to_thread(add)
    return domain


async def _dkim_rotate(ctx: ServerContext, form: dict[str, Any]) -> str:
    domain = _text(form, "domain")
    if not ctx.directory.is_local_domain(domain):
        raise ValueError(f"{domain} is not a local domain")
    await asyncio.to_thread(rotate_keys, ctx.directory.dkim, domain)  # every node signs anew
    return domain


def _queue_id(form: dict[str, Any]) -> int:
    value = form.get("id")
    if not isinstance(value, int) or value <= 0:
        raise ValueError("id is required")
    return value


async def _queue_retry(ctx: ServerContext, form: dict[str, Any]) -> str:
    queue_id = _queue_id(form)
    if not await ctx.store.queue_retry(queue_id):
        raise ValueError(f"no queued message {queue_id}")
    return str(queue_id)


async def _queue_delete(ctx: ServerContext, form: dict[str, Any]) -> str:
    queue_id = _queue_id(form)
    if not await ctx.store.queue_delete(queue_id):
        raise ValueError(f"no queued message {queue_id}")
    return str(queue_id)


_ACTIONS: dict[str, Action] = {
    "user.add": _user_add,
    "user.del": _user_del,
    "user.admin": _user_admin,
    "alias.add": _alias_add,
    "alias.del": _alias_del,
    "domain.add": _domain_add,
    "dkim.rotate": _dkim_rotate,
    "queue.retry": _queue_retry,
    "queue.delete": _queue_delete,
}


async def _admin(request: web.Request, *, change: bool) -> str:
    account = await (bearer_account(request) if change else web_account(request))
    if account is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    if not request.app[CTX].directory.is_admin(account):
        raise web.HTTPForbidden(text="for administrators only\n")
    return account


async def _page(request: web.Request) -> web.StreamResponse:
    if await web_account(request) is None:
        return web.Response(status=303, headers={"Location": "/"})
    await _admin(request, change=False)
    from correo.web.webapp import static_file

    found = await asyncio.to_thread(static_file, "admin.html")
    assert found is not None
    response = web.Response(body=found[0], content_type="text/html")
    harden(response)
    return response


async def _state(request: web.Request) -> web.Response:
    await _admin(request, change=False)
    ctx = request.app[CTX]
    directory = ctx.directory
    queue = await ctx.store.queue_list()
    now = time.time()
    return answer(
        200,
        domains=directory.domains(),
        users=[{"address": u, "admin": directory.is_admin(u)} for u in directory.users()],
        aliases=[{"alias": a, "target": t} for a, t in directory.aliases()],
        queue=[
            {
                "id": e.id,
                "sender": e.sender,
                "size": e.size,
                "age": round(now - e.created),
                "recipients": [
                    {"address": r[0], "status": r[1], "error": r[2][:300]} for r in e.recipients
                ],
            }
            for e in queue[:500]
        ],
    )


async def _dns(request: web.Request) -> web.Response:
    await _admin(request, change=False)
    from correo.cli.dns_cmds import check_domain, expected_records
    from correo.web.site import mta_sts_policy

    ctx = request.app[CTX]
    config = ctx.config
    domain = request.query.get("domain", "")
    if not ctx.directory.is_local_domain(domain):
        return answer(400, error="not a local domain")
    policy = mta_sts_policy(config.hostname, config.mta_sts.mode, config.mta_sts.max_age)
    rua = (config.reports.dmarc_address, config.reports.tls_address)
    records = await asyncio.to_thread(
        expected_records, ctx.directory.dkim, domain, config.hostname, policy, config.listen, rua
    )
    rows: list[dict[str, Any]] = [{"line": r.zone_line()} for r in records]
    if request.query.get("check") == "1" and ctx.resolver is not None:
        for row, (_, ok, found) in zip(
            rows, await check_domain(ctx.resolver, records), strict=True
        ):
            row["ok"], row["found"] = ok, found[:500]
    return answer(200, domain=domain, records=rows)


async def _action(request: web.Request) -> web.Response:
    account = await _admin(request, change=True)
    ctx = request.app[CTX]
    form = await read_json(request)
    name = form.get("action")
    action = _ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        return answer(400, error="unknown action")
    try:
        target = await action(ctx, form)
    except (DirectoryError, ValueError, StoreError) as exc:
        ctx.log.warning("web.admin", by=account, action=name, ok=False, error=str(exc)[:200])
        return answer(400, error=str(exc)[:300])
    ctx.log.info("web.admin", by=account, action=name, target=target[:320], ok=True)
    return answer(200, done=name, target=target)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin", _page)
    app.router.add_get("/webmail/admin/state", _state)
    app.router.add_get("/webmail/admin/dns", _dns)
    app.router.add_post("/webmail/admin/action", _action)
