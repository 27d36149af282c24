"""The MTA-STS policy and client autoconfiguration over HTTP (see :mod:`correo.web.site`)."""

from __future__ import annotations

from aiohttp import web

from correo.server.context import ServerContext
from correo.web.app import CTX, plain, request_host
from correo.web.site import AUTOCONFIG_PATHS, POLICY_PATH, Page, Site

__all__ = ["add_routes", "site_for"]


def site_for(ctx: ServerContext) -> Site:
    """What this server publishes now: its local domains and the ports bound so far."""
    config = ctx.config
    listening = {**config.listen, **{k: tuple(v) for k, v in ctx.bound.items()}}
    ports = {service: addrs[0][1] for service, addrs in listening.items() if addrs}
    return Site(
        config.hostname,
        ctx.directory.domains,
        ports,
        config.mta_sts.mode,
        config.mta_sts.max_age,
    )


def _page(page: Page | None) -> web.Response:
    if page is None:
        return plain(404, "Not found")
    response = web.Response(body=page.body, headers={"Content-Type": page.content_type})
    if page.max_age:
        response.headers["Cache-Control"] = f"max-age={page.max_age}"
    return response


async def _policy(request: web.Request) -> web.Response:
    return _page(site_for(request.app[CTX]).policy(request_host(request)))


async def _autoconfig(request: web.Request) -> web.Response:
    address = request.query.get("emailaddress", "")
    return _page(site_for(request.app[CTX]).autoconfig(request_host(request), address))


def add_routes(app: web.Application) -> None:
    """GET (and HEAD) of the policy and of both autoconfiguration paths."""
    app.router.add_get(POLICY_PATH, _policy)
    for path in AUTOCONFIG_PATHS:
        app.router.add_get(path, _autoconfig)
