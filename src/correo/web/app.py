"""The HTTPS application: one route table that every web endpoint plugs into.

:func:`build_app` assembles the routes of each module (``wellknown``: MTA-STS policy
and autoconfiguration; ``jmap``: JMAP; ``correo dev``'s message API) behind one guard
middleware, which every request passes through:

* a deadline for the whole request (body, handler and response together); a handler
  that streams for long (an EventSource) reschedules it itself (:data:`DEADLINE`);
* RFC 9112 §3.2: a Host is required in HTTP/1.1, and only one;
* errors answered in plain text, a handler's bug as a ``500`` logged as one line;
* ``X-Content-Type-Options: nosniff`` on every answer, and one log event per request.

The sockets, TLS and connection caps live in :mod:`correo.server.web_listener`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from yarl import URL

from correo.server.connection import capped
from correo.server.context import ServerContext
from correo.server.web_listener import Connections, WebListener

__all__ = [
    "CONNECTIONS",
    "CTX",
    "DEADLINE",
    "Routes",
    "build_app",
    "https_listener",
    "plain",
    "request_host",
]

CTX = web.AppKey("ctx", ServerContext)
CONNECTIONS = web.AppKey("connections", Connections)
#: The request's deadline (an :class:`asyncio.Timeout`), for handlers that stream.
DEADLINE = "correo.deadline"
#: Extra log fields a handler sets for the request's log line (``account=`` …).
LOG_FIELDS = "correo.log"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Routes = Callable[[web.Application], None]


def plain(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """A short plain-text answer."""
    return web.Response(status=status, text=text + "\n", headers=headers)


def request_host(request: web.Request) -> str:
    """The host a request is for: lower case, without port or final dot.

    RFC 9112 §3.2.2: in an absolute-form target the target's authority wins over Host.
    """
    target = request.raw_path
    if not target.startswith("/"):
        try:
            authority = URL(target).raw_host
        except ValueError:
            authority = None
        if authority:
            return authority.lower().rstrip(".")
    value = request.headers.get("Host", "")
    host = value.rsplit(":", 1)[0] if not value.endswith("]") else value
    if value.startswith("[") and "]" in value:
        host = value[: value.index("]") + 1]
    return host.lower().rstrip(".")


def _check_head(request: web.Request) -> None:
    hosts = request.headers.getall("Host", [])
    if len(hosts) > 1:
        raise web.HTTPBadRequest(text="more than one Host\n")  # RFC 9112 §3.2
    if not hosts and request.version >= (1, 1):
        raise web.HTTPBadRequest(text="Host is required\n")  # RFC 9112 §3.2
    target = request.raw_path
    if not target.startswith("/"):
        try:
            url = URL(target)
        except ValueError:
            raise web.HTTPBadRequest(text="malformed request target\n") from None
        # RFC 9110 §4.2.1: an empty host is invalid; §4.2.4: userinfo is an error
        if url.scheme not in ("http", "https") or not url.raw_host or url.raw_user is not None:
            raise web.HTTPBadRequest(text="malformed request target\n")


def _guard(timeout: float, event: str, level: str) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        ctx = request.app[CTX]
        idle = request.app[CONNECTIONS].busy(request.protocol)
        started = time.monotonic()
        response: web.StreamResponse | None = None
        try:
            async with asyncio.timeout(timeout) as deadline:
                request[DEADLINE] = deadline
                try:
                    _check_head(request)
                    response = await handler(request)
                except web.HTTPException as exc:
                    response = _error_page(exc)
                except (asyncio.CancelledError, ConnectionError):
                    raise
                except Exception as exc:  # a bug costs this request only
                    ctx.log.error("https.error", path=request.path[:200], error=repr(exc)[:300])
                    response = plain(500, "Internal server error")
                if not response.prepared:
                    response.headers.setdefault("X-Content-Type-Options", "nosniff")
                    response.headers["Server"] = "correo"  # not the library and its version
                    await response.prepare(request)
                    await response.write_eof()
                return response
        except TimeoutError:
            # the body did not arrive, or the answer was not taken, in time
            if request.transport is not None:
                request.transport.abort()
            response = plain(408, "Request timeout")
            return response
        finally:
            idle()
            ctx.log.log(
                level,
                event,
                peer=request.remote or "?",
                method=request.method[:16],
                host=request_host(request)[:200],
                path=request.path[:200],
                status=response.status if response is not None else 0,
                ms=round((time.monotonic() - started) * 1000),
                **request.get(LOG_FIELDS, {}),
            )

    return guard


def _error_page(exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
    if exc.text and exc.content_type == "text/plain":
        return web.Response(status=exc.status, text=exc.text, headers=headers)
    return web.Response(status=exc.status, text=f"{exc.reason}\n", headers=headers)


def build_app(
    ctx: ServerContext,
    routes: Iterable[Routes],
    connections: Connections,
    *,
    timeout: float,
    max_body: int = 1024 * 1024,
    event: str = "https.request",
    level: str = "info",
) -> web.Application:
    """The application: ``routes`` add their endpoints, the guard wraps them all and logs
    each request as ``event`` at ``level``."""
    guard = _guard(timeout, event, level)
    app = web.Application(middlewares=[guard], client_max_size=max_body)
    app[CTX] = ctx
    app[CONNECTIONS] = connections
    for add in routes:
        add(app)
    return app


def https_listener(
    ctx: ServerContext,
    *,
    admit: Callable[[str], str | None],
    release: Callable[[str], None],
    routes: Iterable[Routes] = (),
) -> WebListener:
    """The ``https`` listener: the well-known documents and every route in ``routes``."""
    from correo.web import jmap, webapp, wellknown

    limits = ctx.config.limits
    head_timeout = capped(limits.command_timeout, 30.0)
    connections = Connections()
    app = build_app(
        ctx,
        [wellknown.add_routes, jmap.add_routes, webapp.add_routes, *routes],
        connections,
        timeout=capped(limits.data_timeout, 300.0),
    )
    return WebListener(
        app,
        service="https",
        log=ctx.log,
        admit=admit,
        release=release,
        head_timeout=head_timeout,
        connections=connections,
        tls=ctx.tls,
        on_tls=lambda version, cipher: ctx.metrics.https_connection(version, cipher),
    )
