"""The asyncio shell around the aiohttp application: sockets, TLS, caps and deadlines.

aiohttp parses HTTP/1.1 and runs the route table (:mod:`correo.web.app`); this module
puts it on correo's own listening sockets, in correo's own loop and TLS context, and
adds what a mail server's listeners all do:

* connection caps: every connection is admitted by the server's shared per-network
  and total counters (``[limits] connections_per_ip``, ``connections``); past them
  the peer gets a ``503`` and is closed;
* a deadline for every request head: from the connection's start, or from the end
  of the previous response (an idle keep-alive connection), a whole head must arrive
  within ``command_timeout`` (30 s at most); a partial head past it gets ``408``,
  an idle connection is closed quietly, so a slow client cannot hold a slot;
* request line and header sizes, keep-alive and lingering bounded by aiohttp's own
  parameters (``max_line_size``, ``max_field_size``, ``max_headers``);
* reads through the mail listeners' gate (:func:`correo.server.connection.gated`): a
  bounded share of reads per turn of the loop, so thousands of clients whose requests
  or ends arrive in one poll (push streams dropped by a network blip) are taken in over
  many turns.  aiohttp's request handler is a plain ``asyncio.Protocol`` that never
  replaces itself on its transport (WebSockets included), so it is wrapped, not forked:
  the gate, and over TLS the loop's own TLS layer, sit between the socket and
  ``_Guarded``, as they sit before a mail session's stream protocol.

Each request's own deadline (body, handler and response together) is kept by the
application's guard middleware (:func:`correo.web.app.build_app`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from correo.log import Logger
from correo.server.connection import gated
from correo.server.proxy import PeerTransport, ProxyPolicy

__all__ = ["MAX_FIELD", "MAX_HEADERS", "MAX_LINE", "Connections", "WebListener"]

MAX_LINE = 8190  # request line octets (aiohttp's max_line_size); longer is refused
MAX_FIELD = 8190  # one header field's octets (max_field_size)
MAX_HEADERS = 64  # header fields per request
_LINGER = 5.0  # seconds a closing connection may take to send its last answer


def _status_bytes(status: int, reason: str, text: str) -> bytes:
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


TOO_MANY = _status_bytes(503, "Service Unavailable", "Too many connections")
_TIMEOUT = _status_bytes(408, "Request Timeout", "request head not received in time")


class _LogBridge(logging.Handler):
    """aiohttp's own log records (malformed requests, mostly) as one correo line each,
    without tracebacks: a hostile request is an event, not a crash."""

    def __init__(self, log: Logger) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.log.info(
            "https.refused",
            detail=record.getMessage()[:200],
            error=(type(exc).__name__ + ": " + str(exc))[:200] if exc else "",
        )


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's request handler behind admission and a head deadline."""

    def __init__(
        self, listener: WebListener, inner: RequestHandler, peer: tuple[str, int] | None = None
    ) -> None:
        self.listener = listener
        self.inner = inner
        self.peer = peer  # the client a trusted load balancer named (server/proxy.py)
        self.transport: asyncio.Transport | None = None
        self.slot: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0  # requests being handled
        self._partial = False  # octets of a request head seen since the last answer

    # -- asyncio.Protocol, forwarded ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        if self.peer is not None:  # aiohttp's request.remote reads the transport's peer
            transport = PeerTransport(transport, self.peer)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.slot = self.listener.admit(str(peer[0]))
        if self.slot is None:
            self.listener.log.warning(
                "server.too_many_connections", service=self.listener.service, peer=str(peer[0])
            )
            transport.write(TOO_MANY)
            transport.close()
            self._arm(_LINGER, abort=True)  # a peer that reads nothing is dropped
            return
        self.listener.guards[self.inner] = self
        tls: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
        if tls is not None and self.listener.on_tls is not None:
            cipher = tls.cipher()  # the handshake is done: asyncio reports it after
            self.listener.on_tls(tls.version(), cipher[0] if cipher else None)
        self.inner.connection_made(transport)
        self._arm(self.listener.head_timeout)

    def data_received(self, data: bytes) -> None:
        if self.slot is None:
            return
        if not self._busy:
            self._partial = True
        self.inner.data_received(data)

    def eof_received(self) -> None:
        if self.slot is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.slot is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.slot is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self.slot is None:
            return
        self.listener.release(self.slot)
        self.slot = None
        self.listener.guards.pop(self.inner, None)
        self.inner.connection_lost(exc)

    # -- the head deadline ----------------------------------------------------------------

    def busy(self) -> None:
        """A request head has been read: its handler keeps its own deadline."""
        self._busy += 1
        self._partial = False
        self._cancel()

    def idle(self) -> None:
        """The answer is written: the next head (or the close) is due in time."""
        self._busy -= 1
        if not self._busy:
            self._arm(self.listener.head_timeout)

    def _arm(self, delay: float, *, abort: bool = False) -> None:
        self._cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._expire, abort)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, abort: bool) -> None:
        self._timer = None
        transport = self.transport
        if transport is None or self._busy:
            return
        if abort or transport.is_closing():
            transport.abort()
            return
        if self._partial:
            self.listener.log.info(
                "https.refused",
                service=self.listener.service,
                status=408,
                peer=str((transport.get_extra_info("peername") or ("?",))[0]),
            )
            transport.write(_TIMEOUT)
        transport.close()
        self._arm(_LINGER, abort=True)


class Connections:
    """The open connections of one listener, for the guard middleware to find."""

    def __init__(self) -> None:
        self.guards: dict[RequestHandler, _Guarded] = {}

    def busy(self, protocol: object) -> Callable[[], None]:
        """Mark the connection of a request busy; returns what marks it idle again."""
        guard = self.guards.get(protocol) if isinstance(protocol, RequestHandler) else None
        if guard is None:
            return _nothing
        guard.busy()
        return guard.idle


def _nothing() -> None:
    return None


class WebListener:
    """An aiohttp application on listening sockets of correo's loop."""

    def __init__(
        self,
        app: web.Application,
        *,
        service: str,
        log: Logger,
        admit: Callable[[str], str | None],
        release: Callable[[str], None],
        head_timeout: float,
        connections: Connections,
        tls: ssl.SSLContext | None = None,
        on_tls: Callable[[str | None, str | None], None] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.log = log
        self.admit = admit
        self.release = release
        self.head_timeout = head_timeout
        self.guards = connections.guards
        self.tls = tls
        self.on_tls = on_tls  # (TLS version, cipher suite) of each admitted connection
        #: Set when trusted load balancers open connections with a PROXY header: it is
        #: read (and TLS started) before aiohttp sees the connection (server/proxy.py).
        self.proxy: ProxyPolicy | None = None
        self.backlog = 1024  # [limits] listen_backlog
        self._servers: list[asyncio.Server] = []
        bridge = logging.getLogger(f"correo.web.{service}")
        bridge.propagate = False
        bridge.setLevel(logging.INFO)
        if not bridge.handlers:
            bridge.addHandler(_LogBridge(log))
        self._runner = web.AppRunner(
            app,
            logger=bridge,
            access_log=None,  # the guard middleware logs each request as one event
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
            keepalive_timeout=head_timeout,
            lingering_time=2.0,
            handler_cancellation=True,  # a peer that goes away ends its request's work
            shutdown_timeout=5.0,
        )
        for name in ("aiohttp.server", "aiohttp.web", "aiohttp.internal"):
            quiet = logging.getLogger(name)
            quiet.propagate = False
            if not quiet.handlers:
                quiet.addHandler(_LogBridge(log))

    @property
    def open_connections(self) -> int:
        return len(self.guards)

    async def start(self, host: str, port: int) -> list[tuple[str, int]]:
        """Listen on ``host``:``port``; the addresses bound (port 0 becomes a real one)."""
        if self._runner.server is None:
            await self._runner.setup()
        factory = self._runner.server
        assert factory is not None

        if self.proxy is not None:  # behind a load balancer: the PROXY header, then TLS

            def guarded(peer: tuple[str, int] | None) -> asyncio.Protocol:
                return _Guarded(self, factory(), peer)  # the policy puts it behind the gate

            return await self.proxy.listen(
                host,
                port,
                guarded,
                service=self.service,
                tls=self.tls,
                handshake_timeout=self.head_timeout,
            )

        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.BaseProtocol:
            guarded = _Guarded(self, factory())
            # a client that never completes the handshake is dropped in time
            return gated(loop, guarded, tls=self.tls, handshake_timeout=self.head_timeout)

        server = await loop.create_server(
            protocol, host, port, reuse_address=True, family=socket.AF_UNSPEC, backlog=self.backlog
        )
        self._servers.append(server)
        bound: list[tuple[str, int]] = []
        for sock in server.sockets:
            name: Any = sock.getsockname()
            bound.append((str(name[0]), int(name[1])))
        return bound

    def close(self) -> None:
        """Stop accepting connections (open ones go on until :meth:`stop`)."""
        for server in self._servers:
            server.close()

    async def stop(self) -> None:
        """Close every connection (requests in flight get a few seconds), then the app."""
        self.close()
        await self._runner.cleanup()
