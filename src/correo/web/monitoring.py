"""The ``metrics`` listener: Prometheus metrics, health checks and the server's status.

Plain HTTP on correo's one HTTP stack (aiohttp, :mod:`correo.web.app`), never on the
public ``https`` listener:

* ``/metrics`` — every metric in Prometheus' text format (docs/operations.md);
* ``/healthz`` — 200 ``ok`` while the event loop answers at all (liveness);
* ``/readyz`` — 200 ``ready`` when the store answers a read and every configured
  listener is bound, else 503 with the reason (readiness: take the node out of a pool);
* ``/status`` — JSON for ``correo status``: version, uptime, listeners, queue,
  certificates, and the warnings and errors of the last hour.

There is no authentication: the listener belongs on loopback or a private network
(``correo init`` puts it on 127.0.0.1:9187). Each request is bounded: the head by the
listener's limits, the store by two seconds, the queue counted up to a cap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from correo import __version__
from correo.metrics import CONTENT_TYPE
from correo.server.connection import capped
from correo.server.context import ServerContext
from correo.server.web_listener import Connections, WebListener
from correo.store.api import QueueSummary
from correo.web.app import CTX, build_app, plain

__all__ = [
    "add_routes",
    "certificate_info",
    "metrics_listener",
    "readiness_problem",
    "recent_errors",
    "status_document",
]

_STORE_TIMEOUT = 2.0  # seconds a health check or scrape waits for the store
_QUEUE_CAP = 1_000_000  # queue rows counted at most per scrape
_QUEUE_CACHE = 1.0  # seconds a queue summary is reused by the next scrape
_ERRORS_SHOWN = 20  # the last lines /status carries
_HOUR = 3600.0
_REQUEST_TIMEOUT = 10.0  # a scrape, a health check, a status: seconds for the whole request


async def _metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    s = await _queue_summary(ctx)
    queue = None if s is None else (s.messages, s.recipients, s.oldest)
    ctx.metrics.refresh(queue, tuple(ctx.listeners))
    return web.Response(body=ctx.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


async def _healthz(request: web.Request) -> web.Response:
    return plain(200, "ok")


async def _readyz(request: web.Request) -> web.Response:
    problem = await readiness_problem(request.app[CTX])
    return plain(200, "ready") if problem is None else plain(503, f"not ready: {problem}")


async def _status(request: web.Request) -> web.Response:
    return web.json_response(await status_document(request.app[CTX]), dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, indent=1) + "\n"


def add_routes(app: web.Application) -> None:
    """GET (and HEAD) of the four monitoring paths."""
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/status", _status)


def metrics_listener(
    ctx: ServerContext,
    *,
    admit: Callable[[str], str | None],
    release: Callable[[str], None],
) -> WebListener:
    """The ``metrics`` listener: plain HTTP, the monitoring routes only."""
    connections = Connections()
    app = build_app(  # a scrape every few seconds: its log line is a debug one
        ctx,
        [add_routes],
        connections,
        timeout=_REQUEST_TIMEOUT,
        max_body=1024,
        event="metrics.request",
        level="debug",
    )
    return WebListener(
        app,
        service="metrics",
        log=ctx.log,
        admit=admit,
        release=release,
        head_timeout=capped(ctx.config.limits.command_timeout, 30.0),
        connections=connections,
        tls=None,
    )


async def _queue_summary(ctx: ServerContext) -> QueueSummary | None:
    """The store's queue summary, reused for a second (scrapes from several Prometheus
    servers), None when the store does not answer in time."""
    cached = ctx.metrics.queue_cache
    now = time.monotonic()
    if (
        cached is not None
        and now - cached[0] < _QUEUE_CACHE
        and isinstance(cached[1], QueueSummary)
    ):
        return cached[1]
    try:
        async with asyncio.timeout(_STORE_TIMEOUT):
            summary = await ctx.store.queue_summary(_QUEUE_CAP)
    except Exception as exc:  # an unreachable store is a finding, not a crash
        ctx.log.warning("metrics.store_unavailable", error=repr(exc)[:300])
        return None
    ctx.metrics.queue_cache = (now, summary)
    return summary


async def readiness_problem(ctx: ServerContext) -> str | None:
    """Why this server should get no traffic now, or None when it is ready."""
    if ctx.stopping:
        return "shutting down"
    for service, count in ctx.listeners.items():
        if len(ctx.bound.get(service, ())) < count:
            return f"listener {service} is not bound"
    lmtp = ctx.config.lmtp.socket
    if lmtp and not ctx.config.path(lmtp).exists():
        return f"LMTP socket {ctx.config.path(lmtp)} is missing"
    try:
        async with asyncio.timeout(_STORE_TIMEOUT):
            await ctx.store.queue_summary(1)  # one indexed read
    except TimeoutError:
        return f"the store did not answer within {_STORE_TIMEOUT:g} s"
    except Exception as exc:
        return f"the store failed: {exc}"[:300]
    return None


async def status_document(ctx: ServerContext) -> dict[str, Any]:
    """What ``correo status`` shows, as JSON."""
    config, metrics = ctx.config, ctx.metrics
    summary = await _queue_summary(ctx)
    sessions = metrics.sessions()
    cert = config.path(config.tls.certificate)
    problem = await readiness_problem(ctx)
    now = time.time()
    return {
        "version": __version__,
        "hostname": config.hostname,
        "pid": os.getpid(),
        "started": metrics.started,
        "uptime": round(now - metrics.started, 1),
        "ready": problem is None,
        "problem": problem,
        "listeners": {s: [f"{h}:{p}" for h, p in addrs] for s, addrs in ctx.bound.items()},
        "lmtp_socket": str(config.path(config.lmtp.socket)) if config.lmtp.socket else None,
        "sessions": dict(sessions.open),
        "imap_idle": sessions.idle,
        "queue": None
        if summary is None
        else {
            "messages": summary.messages,
            "recipients": summary.recipients,
            "oldest_seconds": None if summary.oldest is None else round(now - summary.oldest),
        },
        "certificates": [await asyncio.to_thread(certificate_info, cert)],
        "errors": recent_errors(ctx.log.recent or (), now),
    }


def certificate_info(path: Path) -> dict[str, Any]:
    """Subject, names and expiry of the first certificate in a PEM file (the server's)."""
    info: dict[str, Any] = {"file": str(path)}
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)  # a chain is a few KB
        cert = x509.load_pem_x509_certificates(data)[0]
    except (OSError, ValueError, IndexError) as exc:
        info["error"] = str(exc)[:200] or type(exc).__name__
        return info
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    info["subject"] = str(names[0].value) if names else cert.subject.rfc4514_string()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        info["names"] = [str(n) for n in san.get_values_for_type(x509.DNSName)][:20]
    except x509.ExtensionNotFound:
        info["names"] = []
    expires = cert.not_valid_after_utc
    info["not_after"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    info["days_left"] = (expires - dt.datetime.now(dt.UTC)).days
    info["self_signed"] = cert.issuer == cert.subject
    return info


def recent_errors(
    ring: Iterable[tuple[float, str, str, str]], now: float, window: float = _HOUR
) -> dict[str, Any]:
    """Warnings and errors logged in the last ``window`` seconds, from the log's ring:
    how many, by event, and the last lines."""
    recent = [entry for entry in ring if entry[0] >= now - window]
    by_event: dict[str, int] = {}
    for _, level, event, _line in recent:
        key = f"{level} {event}"
        by_event[key] = by_event.get(key, 0) + 1
    return {
        "window_seconds": window,
        "count": len(recent),
        "by_event": dict(sorted(by_event.items(), key=lambda kv: -kv[1])),
        "last": [line for *_, line in recent[-_ERRORS_SHOWN:]],
    }
