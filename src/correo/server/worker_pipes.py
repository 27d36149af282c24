"""Worker processes behind framed pipes, for CPU work that must leave the event loop's core.

A thread does not help CPU-bound Python (the GIL); a process on the other core does.
Shared by the DKIM signing pool (:mod:`correo.server.dkim_pool`) and the text index's
extraction pool (:mod:`correo.server.index_pool`): each subclass of :class:`PipePool`
builds its request frames and reads the answers' payloads; this module runs the
processes.  Workers start lazily on the first job, a dead or stuck one (no answer within
``timeout``) is replaced at most once per ``respawn_after`` seconds, and a worker whose
stdin closes (shutdown, or the server died) exits by itself.  When no worker is ready or
too many requests are in flight, :meth:`PipePool.pick` answers None and the caller does
the work in process: nothing may be lost to a worker.

Frames both ways are a 4-byte big-endian length and that many bytes; every answer starts
with req:u32 status:u8, and a worker's first frame is req 0 status :data:`READY`.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections.abc import Sequence
from typing import cast

from correo.log import Logger

__all__ = ["ANSWER", "FAILED", "HEAD", "OK", "READY", "Failed", "PipePool", "PipeWorker"]

HEAD = struct.Struct(">I")
ANSWER = struct.Struct(">IB")  # req, status
OK, FAILED, READY = 0, 1, 2

Answer = tuple[int, bytes]  # status, payload


class Failed(Exception):
    """A worker could not answer: the caller does the work in process."""


class PipeWorker(asyncio.SubprocessProtocol):
    """One worker process: its pipes and the requests in flight."""

    def __init__(self, pool: PipePool) -> None:
        self.pool = pool
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.ready = False
        self.gone = False
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, tuple[asyncio.Future[Answer], asyncio.TimerHandle]] = {}
        self._buf = bytearray()
        self._out: list[bytes] = []  # frames for the next write

    @property
    def pid(self) -> int | None:
        return self.transport.get_pid() if self.transport is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's: cast, not isinstance
        self.transport = cast(asyncio.SubprocessTransport, transport)
        self.stdin = cast(asyncio.WriteTransport, self.transport.get_pipe_transport(0))

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        self._buf += data
        buf = self._buf
        while len(buf) >= HEAD.size:
            (size,) = HEAD.unpack_from(buf)
            if size > self.pool.max_answer or size < ANSWER.size:
                self.fail("a malformed answer")
                return
            if len(buf) < HEAD.size + size:
                break
            body = bytes(buf[HEAD.size : HEAD.size + size])
            del buf[: HEAD.size + size]
            self._answered(body)

    def _answered(self, body: bytes) -> None:
        req, status = ANSWER.unpack_from(body)
        if status == READY:
            self.ready = True
            self.pool._log("worker_ready", pid=self.pid)
            return
        entry = self.pending.pop(req, None)
        if entry is None:
            return  # timed out already
        fut, timer = entry
        timer.cancel()
        if not fut.done():
            fut.set_result((status, body[ANSWER.size :]))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.fail("a pipe closed")  # stdin (it died) or stdout

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport is not None else None
        if not self.gone:
            self.pool._log("worker_exited", pid=self.pid, code=code)
        self.fail("it exited")
        if not self.exited.done():
            self.exited.set_result(code)
        if self.transport is not None:
            self.transport.close()  # its pipes; the process is reaped

    def send(self, frame: bytes) -> None:
        """Queue a frame; the requests of one loop turn go in one write.  Each write
        wakes the worker, and a wake-up costs the writer about 0.1 ms on this kind of
        virtual machine: sessions that end DATA in the same turn share one."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(HEAD.pack(len(frame)) + frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.write(b"".join(out))

    def request(self, req: int, frame: bytes) -> asyncio.Future[Answer]:
        """Send ``frame`` (which carries ``req``); the answer's status and payload."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Answer] = loop.create_future()
        timer = loop.call_later(self.pool.timeout, self._expire, req)
        self.pending[req] = (fut, timer)
        self.send(frame)
        return fut

    def _expire(self, req: int) -> None:
        """No answer in time: the worker is stuck or starved; replace it."""
        entry = self.pending.pop(req, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(Failed("no answer in time"))
        self.pool._log("worker_timeout", pid=self.pid)
        self.stop(kill=True)

    def fail(self, why: str) -> None:
        """Every request in flight falls back; no new ones come here."""
        self.gone = True
        self.ready = False
        pending, self.pending = self.pending, {}
        for fut, timer in pending.values():
            timer.cancel()
            if not fut.done():
                fut.set_exception(Failed(why))

    def stop(self, *, kill: bool = False) -> None:
        self.fail("stopping")
        if self.transport is None or self.transport.is_closing():
            return
        if kill:
            try:
                self.transport.kill()
            except ProcessLookupError:
                pass
        elif self.stdin is not None:
            self.stdin.close()  # end of file: the worker exits


class PipePool:
    """Worker processes running ``python <args>``; see the module docstring."""

    name = "worker"  # the log events' prefix
    worker_class: type[PipeWorker] = PipeWorker

    def __init__(
        self,
        workers: int,
        args: Sequence[str],
        *,
        max_pending: int,
        timeout: float,
        respawn_after: float,
        max_answer: int,
        log: Logger | None,
    ) -> None:
        self.size = workers
        self.args = list(args)
        self.max_pending = max_pending  # per worker; past it the work is done in process
        self.timeout = timeout
        self.respawn_after = respawn_after
        self.max_answer = max_answer
        self.log = log
        self.workers: list[PipeWorker] = []
        self._next_req = 1
        self._spawning = False
        self._last_spawn = float("-inf")
        self._closed = False
        self._spawns: set[asyncio.Task[None]] = set()

    def _log(self, event: str, **fields: object) -> None:
        if self.log is not None:
            self.log.info(f"{self.name}.{event}", **fields)

    def _req(self) -> int:
        req = self._next_req
        self._next_req = req + 1 if req < 0xFFFFFFFF else 1
        return req

    def pick(self) -> PipeWorker | None:
        """The ready worker with the fewest requests in flight (None: work here)."""
        self.workers = [w for w in self.workers if not w.gone]
        if len(self.workers) < self.size and not self._closed:
            self._spawn_soon()
        ready = [w for w in self.workers if w.ready and len(w.pending) < self.max_pending]
        return min(ready, key=lambda w: len(w.pending), default=None)

    def _spawn_soon(self) -> None:
        now = time.monotonic()
        if self._spawning or now - self._last_spawn < self.respawn_after:
            return
        self._spawning = True
        self._last_spawn = now
        task = asyncio.create_task(self._spawn(), name=f"correo-{self.name}-worker")
        self._spawns.add(task)
        task.add_done_callback(self._spawns.discard)

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            worker = self.worker_class(self)
            await loop.subprocess_exec(
                lambda: worker,
                sys.executable,
                *self.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            self._log("worker_failed", error=str(exc))
            return
        finally:
            self._spawning = False
        if self._closed:
            worker.stop()
            return
        self.workers.append(worker)
        self._log("worker_started", pid=worker.pid)

    def stats(self) -> dict[str, object]:
        """The fields of the ``pool_stopped`` log line."""
        return {}

    async def close(self, grace: float = 2.0) -> None:
        """Stop every worker (end of file, then a kill after ``grace`` seconds)."""
        self._closed = True
        for task in list(self._spawns):
            await asyncio.gather(task, return_exceptions=True)
        workers, self.workers = self.workers, []
        for w in workers:
            w.stop()
        for w in workers:
            try:
                await asyncio.wait_for(asyncio.shield(w.exited), grace)
            except TimeoutError:
                w.stop(kill=True)
                await asyncio.wait_for(asyncio.shield(w.exited), grace)
            if w.transport is not None:
                w.transport.close()
        self._log("pool_stopped", **self.stats())
