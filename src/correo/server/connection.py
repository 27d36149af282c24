"""A thin wrapper over an asyncio stream pair: buffered writes, timeouts, STARTTLS.

Protocol sessions queue replies with :meth:`write` and flush once per batch of
pipelined commands, so a burst of N commands costs one socket write, not N.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextvars
import ssl
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Generic, TypeVar

from correo.log import Logger
from correo.server.crossproto import HttpGuard
from correo.server.tls import describe

__all__ = [
    "CLOSES_PER_TURN",
    "QUIET",
    "READS_PER_TURN",
    "Connection",
    "PacedStream",
    "PacedTls",
    "ReadGate",
    "TurnGate",
    "capped",
    "gated",
    "pace_reads",
    "remaining",
    "serve_plain",
    "serve_tls",
    "wake_in_turn",
]

_READ_SIZE = 65536
#: A write this big (a bulk FETCH, a RETR) lets the transport hold up to _WRITE_HIGH
#: unsent and makes drain() wait only down to _WRITE_LOW, not the default 64/16 KiB:
#: the next part is rendered while the socket still has plenty to send, so the client
#: is never left waiting, and a connection's unsent data stays bounded by
#: _WRITE_HIGH plus one write.
_WRITE_HIGH = 1 << 20
_WRITE_LOW = 256 << 10
_PACE = 32  # commands between two turns of the loop for the other sessions

#: The context of the callbacks an idle connection keeps scheduled (its timeout, the
#: IDLE wake-ups), which read and set no context variable: a timer or done callback
#: handed no context copies the current one, one more object per connection for the
#: cycle collector to walk. Callbacks run one at a time, so sharing it is safe.
QUIET: Final = contextvars.Context()
#: Connections that begin their close in one turn of the loop; the others wait a turn.
CLOSES_PER_TURN: Final = 200


class TurnGate:
    """Lets at most ``per_turn`` callers on per turn of the loop, the rest in order later.

    Ten thousand clients that go at once (a network blip, a load balancer restarting)
    all end in one poll: their sessions would flush, log and shut TLS down in the same
    turns, keeping every other session waiting for seconds. Through the gate each turn
    carries a bounded share and the loop's timers run in between.
    """

    __slots__ = ("_armed", "_loop", "_passed", "_waiting", "per_turn")

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._loop: asyncio.AbstractEventLoop | None = None
        self._passed = 0  # let on since the last turn began
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._armed = False

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): nothing carries over
            self._loop, self._passed, self._waiting, self._armed = loop, 0, deque(), False
        if not self._waiting and self._passed < self.per_turn:
            self._passed += 1
            self._arm(loop)
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        self._arm(loop)
        await waiter

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._armed:
            self._armed = True
            loop.call_soon(self._turn, loop, context=QUIET)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Early in a turn: a new share, woken in order (a cancelled waiter takes none)."""
        self._armed = False
        self._passed = 0
        while self._waiting and self._passed < self.per_turn:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._passed += 1
        if self._waiting and loop is self._loop:
            self._arm(loop)


_CLOSING: Final = TurnGate(CLOSES_PER_TURN)

#: Reads handed to connections' protocols in one turn of the loop; the rest wait. 100: with
#: asyncio's TLS layer (Python) 200 closes a turn still came to over 100 ms of CPU.
READS_PER_TURN: Final = 100


class ReadGate:
    """At most ``per_turn`` TLS reads taken in per turn of the loop; the rest held, in order.

    A poll hands the loop every socket that became readable: when 10,000 TLS clients
    leave at once, uvloop reads all their close_notify alerts in one poll (libuv keeps
    polling while it fills its event array, up to 48 times), and each one is decrypted,
    answered with our close_notify and given a shutdown timer before any timer of the
    loop runs again: half a second of CPU. A read past the share is set aside instead
    (a copy of a few µs) and handed on in a later turn.
    """

    __slots__ = ("_armed", "_held", "_loop", "_used", "per_turn")

    def __init__(self, per_turn: int) -> None:
        self.per_turn = per_turn
        self._loop: asyncio.AbstractEventLoop | None = None
        self._used = 0  # reads taken in since the last turn began
        self._held: deque[_Held] = deque()
        self._armed = False

    def admit(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a read may be processed now; if not, the caller holds it (``hold``)."""
        if loop is not self._loop:  # a new loop (tests run several): nothing carries over
            self._loop, self._used, self._held, self._armed = loop, 0, deque(), False
        if self._held or self._used >= self.per_turn:
            return False  # in order: none passes those held
        self._used += 1
        if not self._armed:
            self._armed = True
            loop.call_soon(self._turn, loop, context=QUIET)
        return True

    def hold(self, conn: _Held) -> None:
        self._held.append(conn)
        if not self._armed and self._loop is not None:
            self._armed = True
            self._loop.call_soon(self._turn, self._loop, context=QUIET)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Early in a turn: a new share, the held reads first (one gone takes none)."""
        self._armed = False
        self._used = 0
        while self._held and self._used < self.per_turn:
            if self._held.popleft().release():
                self._used += 1
        if self._held and loop is self._loop:
            self._armed = True
            loop.call_soon(self._turn, loop, context=QUIET)


class _Held(typing.Protocol):
    """What waits in the gate: a connection's held read, or a wake-up (``wake_in_turn``)."""

    def release(self) -> bool:
        """In its turn: go on; False if it went meanwhile (it takes no share then)."""


_READING: Final = ReadGate(READS_PER_TURN)


class _Wake:
    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def release(self) -> bool:
        if self._future.done():  # cancelled meanwhile (a timeout)
            return False
        self._future.set_result(None)
        return True


def wake_in_turn(future: asyncio.Future[None]) -> None:
    """Complete ``future`` now if the read gate lets one more read through this turn, else
    in its turn, in order: for reads made by a task woken on readiness (a PROXY header,
    server/proxy.py) rather than by a protocol."""
    if _READING.admit(future.get_loop()):
        future.set_result(None)
    else:
        _READING.hold(_Wake(future))


#: Bytes held for one connection while it waits its turn; past this its socket stops
#: being read (a held read costs a copy, stopping the socket a selector update).
HOLD_MAX: Final = 1 << 16


#: The protocol behind the gate: the loop's TLS layer, or a connection's stream protocol.
_Inner = TypeVar("_Inner", bound=asyncio.Protocol | asyncio.BufferedProtocol)


class _Paced(Generic[_Inner]):
    """A connection's protocol (``_inner``) behind the gate: what it holds, read and not
    handed on, and the end; what the gate does not concern goes to ``_inner`` as it is."""

    __slots__ = ("_data", "_eof", "_inner", "_loop", "_paused", "_queued", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, inner: _Inner) -> None:
        self._loop = loop
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._data = b""  # read, not yet handed on
        self._eof = False  # the end of the stream, not yet handed on
        self._queued = False  # waiting in the gate
        self._paused = False  # its socket's reading stopped by us (HOLD_MAX)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment] # uvloop's: no subclass
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop()
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        if self._admit():
            return self._inner.eof_received()
        self._eof = True
        self._hold(b"")
        return True  # kept open until its turn: then the protocol decides

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _drop(self) -> None:
        self._transport = None  # what is held is dropped (release sees None)
        self._data = b""

    def _admit(self) -> bool:
        """Whether what just arrived may be handed on now (nothing of ours held first)."""
        return not self._queued and _READING.admit(self._loop)

    def _hold(self, data: bytes) -> None:
        self._data += data
        if not self._queued:
            self._queued = True
            _READING.hold(self)
        if len(self._data) > HOLD_MAX and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def release(self) -> bool:
        """In its turn: hand on what was held; False if the connection went meanwhile."""
        raise NotImplementedError

    def _take(self) -> tuple[asyncio.Transport, bytes, bool] | None:
        """In its turn: the transport and what was held; None if the connection went."""
        self._queued = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return None
        data, eof, self._data, self._eof = self._data, self._eof, b"", False
        if self._paused:
            self._paused = False
            transport.resume_reading()  # first: the protocol may stop it again
        return transport, data, eof


class PacedTls(_Paced[Any], asyncio.BufferedProtocol):
    """The loop's own TLS protocol (uvloop's or asyncio's) behind the read gate.

    Every read and the end of the stream pass ``ReadGate``; a read held is copied out of
    the TLS layer's read buffer (the next read overwrites it) and copied back in its
    turn. What the connection does in its turn is what the TLS layer would have done.
    ``_inner`` is uvloop.loop.SSLProtocol or asyncio.sslproto.SSLProtocol.
    """

    __slots__ = ("handshake",)

    def __init__(self, loop: asyncio.AbstractEventLoop, tls: Any) -> None:
        super().__init__(loop, tls)
        #: Done when the handshake is, failed if it failed (set by ``gated``); None once
        #: done, so an idle connection does not keep it.
        self.handshake: asyncio.Future[None] | None = None

    def get_buffer(self, sizehint: int) -> Any:
        return self._inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self._admit():
            self._inner.buffer_updated(nbytes)
        else:  # the TLS layer's buffer holds them (get_buffer returns it again)
            self._hold(bytes(self._inner.get_buffer(nbytes)[:nbytes]))

    def handshake_done(self, waiter: asyncio.Future[None]) -> None:
        """A failed handshake drops the connection (as the loop's TLS servers do)."""
        self.handshake = None
        if not waiter.cancelled() and waiter.exception() is not None and self._transport:
            self._transport.abort()

    def release(self) -> bool:
        """In its turn: hand on what was held; False if the connection went meanwhile."""
        taken = self._take()
        if taken is None:
            return False
        transport, data, eof = taken
        view = memoryview(data)
        while view and self._transport is not None:
            buffer = self._inner.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            view = view[n:]
            self._inner.buffer_updated(n)
        if eof and self._transport is not None and not self._inner.eof_received():
            transport.close()
        return True


class PacedStream(_Paced[asyncio.Protocol], asyncio.Protocol):
    """A plaintext connection's stream protocol behind the read gate, as ``PacedTls``.

    Ten thousand plaintext clients leaving in one poll cost less (no TLS), but each
    end still wakes its session: about 110-130 ms of CPU in one turn at 10,000.
    """

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if not self._queued and _READING.admit(self._loop):  # _admit(), one call less
            self._inner.data_received(data)
        else:
            self._hold(data)

    def release(self) -> bool:
        """In its turn: hand on what was held; False if the connection went meanwhile."""
        transport = self._transport
        if transport is not None and transport.get_protocol() is not self:
            # STARTTLS began meanwhile: plaintext sent after the command must not reach
            # the session as if it came through TLS (RFC 3207 §6, RFC 2595 §3.1)
            self._drop()
            self._queued = False
            transport.abort()
            return True
        taken = self._take()
        if taken is None:
            return False
        transport, data, eof = taken
        if data:
            self._inner.data_received(data)
        if eof and self._transport is not None and not self._inner.eof_received():
            transport.close()
        return True


def gated(
    loop: asyncio.AbstractEventLoop,
    app: asyncio.Protocol,
    *,
    tls: ssl.SSLContext | None = None,
    handshake_timeout: float = 30.0,
) -> PacedStream | PacedTls:
    """The protocol of one accepted connection whose reads pass the gate: ``app`` behind
    it, and with ``tls`` behind the loop's own TLS layer too (server side), as the loop
    would make it for ``create_server(..., ssl=tls)``. A failed handshake aborts."""
    if tls is None:
        return PacedStream(loop, app)
    waiter = loop.create_future()
    layer = _tls_layer(loop)(
        loop, app, tls, waiter, server_side=True, ssl_handshake_timeout=handshake_timeout
    )
    paced = PacedTls(loop, layer)
    paced.handshake = waiter
    waiter.add_done_callback(paced.handshake_done)
    return paced


async def serve_plain(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str | None,
    port: int,
    *,
    limit: int,
    backlog: int = 1024,
) -> asyncio.Server:
    """``asyncio.start_server`` whose connections read through the gate."""
    loop = asyncio.get_running_loop()

    def protocol() -> PacedStream | PacedTls:
        app = asyncio.StreamReaderProtocol(asyncio.StreamReader(limit, loop), handle, loop)
        return gated(loop, app)

    return await loop.create_server(protocol, host, port, reuse_address=True, backlog=backlog)


def pace_reads(transport: asyncio.BaseTransport) -> None:
    """After STARTTLS: put the TLS layer that now reads ``transport`` behind the gate.

    ``start_tls`` made the loop's TLS protocol the protocol of the connection's socket;
    it is wrapped in its place (between two reads, so none is lost or read twice).
    """
    tls = transport.get_protocol()
    if isinstance(tls, PacedTls) or transport.is_closing():
        return
    paced = PacedTls(asyncio.get_running_loop(), tls)
    paced._transport = transport  # type: ignore[assignment] # uvloop's: no subclass
    transport.set_protocol(paced)


def _tls_layer(loop: asyncio.AbstractEventLoop) -> Any:
    """The TLS protocol class of ``loop``: uvloop's own for its loop, else asyncio's."""
    try:
        import uvloop  # optional extra: correo[fast]
        from uvloop.loop import SSLProtocol  # type: ignore[attr-defined]
    except ImportError:
        return asyncio.sslproto.SSLProtocol
    return SSLProtocol if isinstance(loop, uvloop.Loop) else asyncio.sslproto.SSLProtocol


async def serve_tls(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str | None,
    port: int,
    *,
    context: ssl.SSLContext,
    handshake_timeout: float,
    limit: int,
    backlog: int = 1024,
) -> asyncio.Server:
    """``asyncio.start_server(..., ssl=context)`` whose connections read through the gate."""
    loop = asyncio.get_running_loop()

    def protocol() -> PacedStream | PacedTls:
        app = asyncio.StreamReaderProtocol(asyncio.StreamReader(limit, loop), handle, loop)
        return gated(loop, app, tls=context, handshake_timeout=handshake_timeout)

    return await loop.create_server(protocol, host, port, reuse_address=True, backlog=backlog)


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls: bool = False,
        peer: tuple[str, int] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        # ``peer``: the client a trusted load balancer named (server/proxy.py)
        peer = peer or writer.get_extra_info("peername") or ("?", 0)
        self.peer_ip: str = str(peer[0])
        self.peer_port: int = int(peer[1]) if len(peer) > 1 else 0
        self.tls_active = tls
        self._out: list[bytes] | None = None  # queued writes; no list while idle
        self.closed = False
        self._deadline = 0.0  # loop time by which the current read must get data
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading: asyncio.Task[object] | None = None
        self._expired = False
        #: Screens the first line for an HTTP request (set by the listener); once it
        #: has seen one, the connection is dropped and ``http_hangup`` is True.
        self.guard: HttpGuard | None = None
        self.http_hangup = False
        self._paced = 0  # commands served since the session last let the loop run
        #: Told the protocol version of each STARTTLS handshake that succeeds (metrics).
        self.on_tls: Callable[[str | None], None] | None = None

    @property
    def peer(self) -> str:
        return f"{self.peer_ip}:{self.peer_port}"

    @property
    def tls_description(self) -> str | None:
        obj = self.writer.get_extra_info("ssl_object")
        return describe(obj) if isinstance(obj, ssl.SSLObject) else None

    @property
    def tls_version(self) -> str | None:
        """``"TLSv1.3"`` once TLS is up, else None."""
        obj = self.writer.get_extra_info("ssl_object")
        return obj.version() if isinstance(obj, ssl.SSLObject) else None

    async def read(self, timeout: float) -> bytes:
        """Read what is available; b"" at EOF; raises TimeoutError when idle too long.

        The idle timeout is one timer per connection that is moved forward lazily, not
        an ``asyncio.timeout`` per read: arming and cancelling a timer on every command
        cost a busy connection about 10 µs each time.
        """
        if timeout > 0:
            loop = self._loop
            if loop is None:  # the loop the connection was accepted on, looked up once
                loop = self._loop = asyncio.get_running_loop()
            deadline = self._deadline = loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._expire, context=QUIET)
            self._reading = asyncio.current_task(loop)  # what _expire cancels
        task = self._reading
        try:
            data = await self.reader.read(_READ_SIZE)
        except (ConnectionError, ssl.SSLError):
            data = b""
        except asyncio.CancelledError:
            if self._expired and task is not None:
                self._expired = False
                if task.uncancel() == 0:
                    raise TimeoutError from None
            raise
        finally:
            self._reading = None
        if not data:
            # the end of the stream: clients that all left at once (one poll) are taken
            # down a few hundred per turn of the loop, not ten thousand in one
            await _CLOSING.wait()
            return b""
        if self.guard is not None:
            return self._screen(self.guard, data)
        return data

    async def pace(self) -> None:
        """Once per command: let other sessions run every few commands.

        A read returns at once while the buffer holds data, and a write does not wait
        while the kernel takes it, so a client that pipelines thousands of commands in
        one packet would otherwise keep every other session waiting until the last one.
        """
        if self.due():
            await asyncio.sleep(0)

    def due(self) -> bool:
        """Once per command: True every few commands, when the caller must let the loop
        run (``await asyncio.sleep(0)``); :meth:`pace` without a coroutine per command."""
        self._paced += 1
        if self._paced >= _PACE:
            self._paced = 0
            return True
        return False

    def _screen(self, guard: HttpGuard, data: bytes) -> bytes:
        """Pass ``data`` on unless it shows an HTTP request (see HttpGuard): then nothing of it
        reaches the session, which sees the end of the connection."""
        verdict = guard.feed(data)
        if verdict:
            self.guard = None
            self.http_hangup = True
            self.abort()
            return b""
        if verdict is False:
            self.guard = None  # a mail client: no more screening
        return data

    def _expire(self) -> None:
        """The idle timer: cancel a read that has waited past its deadline."""
        self._timer = None
        task = self._reading
        if task is None:
            return  # not reading now: the next read arms the timer again
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:  # a later read moved the deadline on
            self._timer = loop.call_at(self._deadline, self._expire, context=QUIET)
            return
        self._expired = True
        task.cancel()

    def write(self, data: bytes) -> None:
        if data:
            if self._out is None:
                self._out = [data]
            else:
                self._out.append(data)

    async def flush(self, timeout: float = 0.0) -> bool:
        """Write what is queued; False if the connection is gone.

        With ``timeout`` > 0 a peer that stops reading (a client that pipelines and
        never reads its replies) gets that long for the socket to drain, then the
        connection is aborted: a session must not hold its slot forever. The timer is
        only armed when the kernel did not take everything at once.
        """
        if self.send():
            await self.sent(timeout)
        return not self.closed

    def send(self) -> bool:
        """The first half of :meth:`flush`: what is queued handed to the transport in one
        write. True when :meth:`sent` must be awaited (the kernel did not take it all, or
        the connection is going); a reply taken at once then costs no coroutine."""
        out = self._out
        self._out = None
        if not out or self.closed:
            return False
        transport = self.writer.transport
        try:
            if (len(out[0]) if len(out) == 1 else sum(map(len, out))) >= _WRITE_LOW:
                transport.set_write_buffer_limits(_WRITE_HIGH, _WRITE_LOW)  # cheap to repeat
            # to the transport itself: StreamWriter.write and writelines only pass it on
            if len(out) == 1:
                transport.write(out[0])
            elif self.tls_active:
                # The TLS layer encrypts each piece it is handed as records of its own
                # (RFC 8446 §5.1): a FETCH line, its literal and ")" would be three
                # records for the peer to take apart. Joined, they fill 16 KiB records;
                # the copy costs far less than the records it saves.
                transport.write(b"".join(out))
            else:
                transport.writelines(out)  # one writev: a 50 KB literal is not copied
            # all taken: nothing to wait for (the protocol is paused only above the
            # high-water mark), unless the connection is going, when drain() raises its
            # error or lets connection_lost run
            return bool(transport.get_write_buffer_size()) or transport.is_closing()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            self.closed = True
            return False

    async def sent(self, timeout: float = 0.0) -> bool:
        """The second half of :meth:`flush`, after :meth:`send` returned True: wait for
        the socket to take the rest (at most ``timeout``, as flush); False if gone."""
        transport = self.writer.transport
        try:
            if timeout > 0 and transport.get_write_buffer_size():
                try:
                    async with asyncio.timeout(timeout):
                        await self.writer.drain()
                except TimeoutError:
                    self.abort()
            else:
                await self.writer.drain()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            self.closed = True
        return not self.closed

    def abort(self) -> None:
        """Drop the connection now, unsent data and all (a plain close would wait for a
        peer that does not read)."""
        self.closed = True
        self.writer.transport.abort()

    async def start_tls(self, context: ssl.SSLContext, timeout: float = 30.0) -> None:
        """Upgrade in place (RFC 3207, RFC 2595); raises on handshake failure."""
        await self.flush()
        raw = self.writer.transport
        async with asyncio.timeout(timeout):
            await self.writer.start_tls(context)
        pace_reads(raw)
        self.tls_active = True
        if self.on_tls is not None:
            self.on_tls(self.tls_version)

    async def upgrade_tls(
        self, context: ssl.SSLContext, log: Logger, protocol: str, session: str
    ) -> bool:
        """STARTTLS/STLS after the go-ahead reply: the handshake, logged either way.

        On failure the connection is unusable (the peer may be half-way through a
        handshake), so it is marked closed and False returned.
        """
        try:
            await self.start_tls(context)
        except (OSError, TimeoutError) as exc:
            log.info(f"{protocol}.tls_failed", session=session, peer=self.peer, error=str(exc))
            self.closed = True
            return False
        log.info(f"{protocol}.tls", session=session, tls=self.tls_description)
        return True

    async def close(self, linger: float = 5.0) -> None:
        """Send what is queued (a last 221/BYE/-ERR) and close, waiting at most ``linger``
        seconds for a peer that does not read before aborting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.closed:
            return
        await _CLOSING.wait()  # thousands ending at once close a few hundred per turn
        if not await self.flush(linger):
            return
        self.closed = True
        try:
            self.writer.close()
            async with asyncio.timeout(linger):
                await self.writer.wait_closed()
        except TimeoutError:
            # our last replies left unread, or a TLS peer that never sends close_notify;
            # (asyncio's TLS transport cannot be asked once the connection is gone)
            self.writer.transport.abort()
        except (ConnectionError, ssl.SSLError, RuntimeError):
            pass  # gone already


def capped(timeout: float, cap: float) -> float:
    """``timeout`` but at most ``cap``; no limit (0 or less) means ``cap``: for waits
    that must end even when the configured timeout is off (TLS handshakes, HTTPS)."""
    return min(timeout, cap) if timeout > 0 else cap


def remaining(timeout: float, since: float) -> float:
    """What is left of ``timeout`` seconds counted from ``since`` (monotonic); a timeout
    of 0 or less means no limit and is returned as it is."""
    if timeout <= 0:
        return timeout
    return max(0.001, timeout - (time.monotonic() - since))
