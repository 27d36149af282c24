"""Listening behind a load balancer: the PROXY header read before anything else.

``[server] proxy_protocol`` names the balancers' networks.  A connection from one of them
must open with a PROXY header (version 1 or 2, :mod:`correo.proxyproto`): the client it
names is the peer every session sees — in ``Received:``, SPF, DNSBL, the login throttle,
the per-network limits and the log.  A connection from a trusted balancer without a valid
header, with a malformed or oversized one, or one not complete within the header timeout
is closed and logged in one line; the spec forbids guessing whether a header is there
(proxy-protocol.txt §2).  A connection from anywhere else is served as it always was:
its bytes are never read as a header.

The listeners of such services accept connections themselves (:meth:`ProxyPolicy.listen`):
the header is read from the bare socket before asyncio makes a transport of it —
``MSG_PEEK`` shows what has arrived, and exactly the header's octets are consumed — so
the client's first command, or its TLS ClientHello, is still in the socket when the
transport (and on an implicit-TLS listener the handshake) starts with
``loop.connect_accepted_socket``.  That works the same on asyncio's loop and uvloop,
whose transports start reading before a protocol could pause them.

Reads pass the read gate of every listener (server/connection.py), a bounded share per
turn of the loop: a header's arrival wakes its reader in its turn
(``wake_in_turn``), and the connection is made with the gated protocol the listeners
without a balancer use (``gated``, TLS included), so thousands of balanced connections
whose headers, or ends, arrive in one poll are taken in over many turns.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from correo.log import Logger
from correo.proxyproto import HeaderReader, ProxyHeader, ProxyProtocolError
from correo.server.connection import PacedTls, gated, wake_in_turn

__all__ = ["PeerTransport", "ProxyPolicy", "read_header"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The protocol of one connection, given the client a balancer named (None: the
#: connection's own peer stands).
Factory = Callable[[tuple[str, int] | None], asyncio.Protocol]

_ACCEPTS_PER_WAKE = 100  # connections accepted per readiness, as asyncio's servers
#: accept() errors that mean "out of descriptors or memory for now": wait, go on
_PAUSE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class ProxyPolicy:
    """Which peers must open with a PROXY header, how long they get, and the listeners
    and connections being opened (closed when the server stops)."""

    def __init__(
        self, networks: Iterable[str], *, timeout: float, log: Logger, backlog: int = 1024
    ) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in networks)
        self.timeout = timeout
        self.backlog = backlog  # [limits] listen_backlog
        self.log = log
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: list[socket.socket] = []

    def trusts(self, ip: str) -> bool:
        """Whether ``ip`` is a balancer; an IPv4-mapped IPv6 peer counts as its IPv4."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)

    async def listen(
        self,
        host: str,
        port: int,
        factory: Factory,
        *,
        service: str,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float = 30.0,
    ) -> list[tuple[str, int]]:
        """Listen on ``host``:``port`` (every address it resolves to, as asyncio's
        ``create_server``); each connection gets ``factory(client)`` once its header is
        read and, with ``tls``, its handshake done.  Returns the addresses bound."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        bound: list[tuple[str, int]] = []
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # one socket per family, as asyncio does
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self.backlog)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._sockets.append(sock)
            name = sock.getsockname()
            bound.append((str(name[0]), int(name[1])))
            _Opener(self, factory, service, tls, handshake_timeout).start(sock)
        return bound

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` until it ends, for :meth:`close`."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop listening, and drop connections whose header or handshake is awaited."""
        for task in list(self._tasks):
            task.cancel()
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()


class _Opener:
    """One listening socket's accept loop and the opening of each connection."""

    def __init__(
        self,
        policy: ProxyPolicy,
        factory: Factory,
        service: str,
        tls: ssl.SSLContext | None,
        handshake_timeout: float,
    ) -> None:
        self.policy = policy
        self.factory = factory
        self.service = service
        self.tls = tls
        self.handshake_timeout = handshake_timeout

    def start(self, listening: socket.socket) -> None:
        asyncio.get_running_loop().add_reader(listening.fileno(), self._accept, listening)

    def _accept(self, listening: socket.socket) -> None:
        """Take what the backlog holds, as asyncio's own servers do on readiness."""
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPTS_PER_WAKE):
            try:
                sock, peer = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # out of descriptors or memory: a second's rest
                self.policy.log.error("server.accept_failed", service=self.service, error=str(exc))
                if exc.errno in _PAUSE_ERRORS:
                    loop.remove_reader(listening.fileno())
                    loop.call_later(1.0, self._resume, listening)
                return
            sock.setblocking(False)
            self.policy.track(loop.create_task(self.open(sock, peer)))

    def _resume(self, listening: socket.socket) -> None:
        if listening.fileno() >= 0:  # not closed meanwhile
            self.start(listening)

    async def open(self, sock: socket.socket, peer: Any) -> None:
        """Read the header of a trusted peer, then hand the socket to asyncio."""
        where = f"{peer[0]}:{peer[1]}"
        header: ProxyHeader | None = None
        try:
            if self.policy.trusts(str(peer[0])):
                try:
                    async with asyncio.timeout(self.policy.timeout):
                        header = await read_header(sock)
                except ProxyProtocolError as exc:
                    self._refuse(sock, where, str(exc))
                    return
                except TimeoutError:
                    self._refuse(sock, where, "no complete PROXY header in time")
                    return
            source = header.source if header is not None else None
            loop = asyncio.get_running_loop()
            protocol = gated(
                loop, self.factory(source), tls=self.tls, handshake_timeout=self.handshake_timeout
            )
            # taken now: the protocol lets go of it once it is done
            handshake = protocol.handshake if isinstance(protocol, PacedTls) else None
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError as exc:
            self._failed(where, exc)
            sock.close()
            return
        except asyncio.CancelledError:
            sock.close()
            raise
        if handshake is None:
            return
        try:
            await handshake  # a failed one has aborted the connection (gated)
        except OSError as exc:
            self._failed(where, exc)
        except asyncio.CancelledError:
            transport.abort()  # closing the policy: a handshake still under way
            raise

    def _failed(self, where: str, exc: OSError) -> None:
        """A TLS handshake that fails, a peer that resets: dropped as a listener does."""
        self.policy.log.debug(
            "server.handshake_failed", service=self.service, peer=where, error=str(exc)
        )

    def _refuse(self, sock: socket.socket, where: str, why: str) -> None:
        self.policy.log.warning("proxy.refused", service=self.service, peer=where, error=why)
        sock.close()


async def read_header(sock: socket.socket) -> ProxyHeader:
    """The PROXY header at the start of ``sock``, consumed octet-exactly.

    ``MSG_PEEK`` shows what has arrived, :class:`HeaderReader` says how much of it is the
    header, and only that much is taken from the socket.  Readiness is awaited on a
    duplicate descriptor, so the socket's own is untouched by the loop until asyncio
    makes a transport of it.
    """
    loop = asyncio.get_running_loop()
    reader = HeaderReader()
    watch: int | None = None
    try:
        while reader.header is None:
            try:
                data = sock.recv(reader.want, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                if watch is None:
                    watch = os.dup(sock.fileno())
                await _readable(loop, watch)
                continue
            if not data:
                raise ProxyProtocolError("closed before the PROXY header was complete")
            take = reader.feed(data)
            while take:  # peeked, so this much is there to take
                take -= len(sock.recv(take))
        return reader.header
    finally:
        if watch is not None:
            os.close(watch)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        loop.remove_reader(fd)  # readable until read: once is enough
        if not waiter.done():
            wake_in_turn(waiter)  # a share of the balancers' headers per turn

    loop.add_reader(fd, wake)
    try:
        await waiter
    finally:
        loop.remove_reader(fd)


class PeerTransport(asyncio.Transport):
    """A transport that reports the client a balancer named as its peer.

    aiohttp reads ``peername`` from the transport for ``request.remote``; everything
    else goes to the real transport.
    """

    def __init__(self, transport: asyncio.Transport, peer: tuple[str, int]) -> None:
        super().__init__()
        self._inner = transport
        self._peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return self._inner.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def close(self) -> None:
        self._inner.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._inner.writelines(list_of_data)

    def write_eof(self) -> None:
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def abort(self) -> None:
        self._inner.abort()
