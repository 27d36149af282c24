"""The plain ``http`` listener: ACME http-01 answers, and a redirect to https for the rest.

RFC 8555 §8.3: the CA fetches ``http://NAME/.well-known/acme-challenge/TOKEN`` on port
80 and expects the key authorization as the body.  Every other request is sent to the
same path on https (301), so a browser given the bare name lands on the TLS site.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from correo.config_rules import hostname_problem
from correo.server.connection import capped
from correo.server.context import ServerContext
from correo.server.web_listener import Connections, WebListener
from correo.web.app import CTX, Routes, build_app, plain, request_host

__all__ = ["CHALLENGE_PATH", "Answer", "http_listener", "routes"]

CHALLENGE_PATH = "/.well-known/acme-challenge/{token}"  # RFC 8555 §8.3

#: token -> key authorization, or None when no http-01 challenge is pending for it
Answer = Callable[[str], str | None]


def routes(answer: Answer | None) -> Routes:
    """The challenge path (when ACME uses http-01) and the redirect for everything."""

    async def challenge(request: web.Request) -> web.StreamResponse:
        assert answer is not None
        key_authorization = answer(request.match_info["token"])
        if key_authorization is None:
            return plain(404, "No such challenge")
        return web.Response(
            body=key_authorization.encode("ascii"),
            headers={"Content-Type": "application/octet-stream"},
        )

    async def redirect(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CTX]
        host = request_host(request)
        if not host or hostname_problem(host) is not None:
            host = ctx.config.hostname  # a Host we would not serve: our own name instead
        bound = ctx.bound.get("https") or list(ctx.config.listen.get("https", ()))
        port = bound[0][1] if bound else 443
        authority = host if port == 443 else f"{host}:{port}"
        location = f"https://{authority}{request.raw_path if request.raw_path[:1] == '/' else '/'}"
        return web.Response(
            status=301, text=f"Moved to {location}\n", headers={"Location": location}
        )

    def add(app: web.Application) -> None:
        if answer is not None:
            app.router.add_get(CHALLENGE_PATH, challenge)
        app.router.add_route("*", "/{tail:.*}", redirect)

    return add


def http_listener(
    ctx: ServerContext,
    *,
    answer: Answer | None,
    admit: Callable[[str], str | None],
    release: Callable[[str], None],
) -> WebListener:
    """The ``http`` listener (no TLS): ``answer`` serves http-01 tokens when ACME uses it."""
    limits = ctx.config.limits
    head_timeout = capped(limits.command_timeout, 30.0)
    connections = Connections()
    app = build_app(ctx, [routes(answer)], connections, timeout=head_timeout, max_body=1024)
    return WebListener(
        app,
        service="http",
        log=ctx.log,
        admit=admit,
        release=release,
        head_timeout=head_timeout,
        connections=connections,
        tls=None,
    )
