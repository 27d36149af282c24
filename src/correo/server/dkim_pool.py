"""DKIM private-key operations in worker processes, off the event loop's core.

An RSA-2048 signature costs about 0.3 ms of CPU and holds the GIL, so a thread does not
take it off the loop; a worker process does.  The session still hashes the header data
in process (streaming, cheap); only (key, 32-byte digest) pairs cross a pipe, and the
signatures come back.  Nothing here may fail a message: when no worker is ready, too
many requests are in flight, a worker does not answer within ``timeout`` or dies, the
digest is signed in process as before (:func:`correo.mailauth.signing.sign_digest`).

Workers are ``python -I dkim_worker.py`` (standard library and ``cryptography`` only),
started when the first message that has an RSA key is signed, restarted after one dies
(at most once per ``respawn_after`` seconds), and stopped by :meth:`SignPool.close`;
a worker whose stdin closes (the server died) exits by itself.  Private keys go to a
worker once, as PKCS#8 DER over its stdin pipe, and are known there by a number.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from correo.log import Logger
from correo.mailauth.dkim import PrivateKey
from correo.mailauth.signing import sign_digest
from correo.server import dkim_worker

__all__ = ["SignPool"]

_HEAD = struct.Struct(">I")
_SIGN = struct.Struct(">IB")
_JOB = struct.Struct(">I32s")
_MAX_ANSWER = 1 << 16  # n signatures of at most 512 bytes each: far below
_MAX_KEYS = 1024  # keys kept by number; past this every worker forgets them all


class _Failed(Exception):
    """A worker could not answer: the caller signs in process."""


class _Worker(asyncio.SubprocessProtocol):
    """One worker process: its pipes, the requests in flight, the keys it holds."""

    def __init__(self, pool: SignPool) -> None:
        self.pool = pool
        self.transport: asyncio.SubprocessTransport | None = None
        self.stdin: asyncio.WriteTransport | None = None
        self.ready = False
        self.gone = False
        self.exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, tuple[asyncio.Future[list[bytes]], asyncio.TimerHandle]] = {}
        self.keys: set[int] = set()
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
        while len(buf) >= _HEAD.size:
            (size,) = _HEAD.unpack_from(buf)
            if size > _MAX_ANSWER or size < _SIGN.size:
                self.fail("a malformed answer")
                return
            if len(buf) < _HEAD.size + size:
                break
            body = bytes(buf[_HEAD.size : _HEAD.size + size])
            del buf[: _HEAD.size + size]
            self._answered(body)

    def _answered(self, body: bytes) -> None:
        req, status = _SIGN.unpack_from(body)
        if status == dkim_worker.READY:
            self.ready = True
            self.pool._log("dkim.worker_ready", pid=self.pid)
            return
        entry = self.pending.pop(req, None)
        if entry is None:
            return  # timed out already
        fut, timer = entry
        timer.cancel()
        if fut.done():
            return
        if status != dkim_worker.OK:
            fut.set_exception(_Failed("the worker could not sign"))
            return
        signatures, pos = [], _SIGN.size
        while pos < len(body):
            n = int.from_bytes(body[pos : pos + 2], "big")
            signatures.append(body[pos + 2 : pos + 2 + n])
            pos += 2 + n
        fut.set_result(signatures)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.fail("a pipe closed")  # stdin (it died) or stdout

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport is not None else None
        if not self.gone:
            self.pool._log("dkim.worker_exited", pid=self.pid, code=code)
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
        self._out.append(_HEAD.pack(len(frame)) + frame)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.write(b"".join(out))

    def request(
        self, req: int, jobs: Sequence[tuple[int, bytes]], timeout: float
    ) -> asyncio.Future[list[bytes]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[bytes]] = loop.create_future()
        timer = loop.call_later(timeout, self._expire, req)
        self.pending[req] = (fut, timer)
        jobs_bytes = b"".join(_JOB.pack(kid, digest) for kid, digest in jobs)
        self.send(b"S" + _SIGN.pack(req, len(jobs)) + jobs_bytes)
        return fut

    def _expire(self, req: int) -> None:
        """No answer in time: the worker is stuck or starved; replace it."""
        entry = self.pending.pop(req, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(_Failed("no answer in time"))
        self.pool._log("dkim.worker_timeout", pid=self.pid)
        self.stop(kill=True)

    def fail(self, why: str) -> None:
        """Every request in flight falls back; no new ones come here."""
        self.gone = True
        self.ready = False
        pending, self.pending = self.pending, {}
        for fut, timer in pending.values():
            timer.cancel()
            if not fut.done():
                fut.set_exception(_Failed(why))

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


class SignPool:
    """Worker processes that make DKIM private-key operations; see the module docstring."""

    def __init__(
        self,
        workers: int = 1,
        *,
        max_pending: int = 64,
        timeout: float = 2.0,
        respawn_after: float = 1.0,
        log: Logger | None = None,
    ) -> None:
        self.size = workers
        self.max_pending = max_pending  # per worker; past it a message signs in process
        self.timeout = timeout
        self.respawn_after = respawn_after
        self.log = log
        self.workers: list[_Worker] = []
        self.signed_by_workers = 0  # messages
        self.signed_here = 0  # messages signed in process while the pool was in use
        self._kids: dict[int, tuple[PrivateKey, int]] = {}  # id(key) -> (key, number)
        self._next_kid = 1
        self._next_req = 1
        self._spawning = False
        self._last_spawn = float("-inf")
        self._closed = False
        self._spawns: set[asyncio.Task[None]] = set()

    def _log(self, event: str, **fields: object) -> None:
        if self.log is not None:
            self.log.info(event, **fields)

    async def sign(self, jobs: Sequence[tuple[PrivateKey, bytes]]) -> list[bytes]:
        """Signatures over each (key, SHA-256 digest), by a worker when one can."""
        if not any(isinstance(key, rsa.RSAPrivateKey) for key, _ in jobs):
            return [sign_digest(key, digest) for key, digest in jobs]  # ed25519: ~50 µs
        worker = self._pick()
        if worker is not None:
            try:
                out = await worker.request(self._req(), self._numbered(worker, jobs), self.timeout)
            except _Failed:
                pass
            else:
                self.signed_by_workers += 1
                return out
        self.signed_here += 1
        return [sign_digest(key, digest) for key, digest in jobs]

    def _req(self) -> int:
        req = self._next_req
        self._next_req = req + 1 if req < 0xFFFFFFFF else 1
        return req

    def _pick(self) -> _Worker | None:
        """The ready worker with the fewest requests in flight (None: sign here)."""
        self.workers = [w for w in self.workers if not w.gone]
        if len(self.workers) < self.size and not self._closed:
            self._spawn_soon()
        ready = [w for w in self.workers if w.ready and len(w.pending) < self.max_pending]
        return min(ready, key=lambda w: len(w.pending), default=None)

    def _numbered(
        self, worker: _Worker, jobs: Sequence[tuple[PrivateKey, bytes]]
    ) -> list[tuple[int, bytes]]:
        """Each key by its number, sent to this worker first if it does not hold it."""
        out = []
        for key, digest in jobs:
            entry = self._kids.get(id(key))
            if entry is None or entry[0] is not key:
                if len(self._kids) >= _MAX_KEYS:  # rotations add keys: keep it bounded
                    self._kids.clear()
                    for w in self.workers:
                        w.keys.clear()
                        w.send(b"C")
                entry = (key, self._next_kid)
                self._next_kid += 1
                self._kids[id(key)] = entry
            kid = entry[1]
            if kid not in worker.keys:
                der = key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                worker.send(b"K" + _HEAD.pack(kid) + der)
                worker.keys.add(kid)
            out.append((kid, digest))
        return out

    def _spawn_soon(self) -> None:
        now = time.monotonic()
        if self._spawning or now - self._last_spawn < self.respawn_after:
            return
        self._spawning = True
        self._last_spawn = now
        task = asyncio.create_task(self._spawn(), name="correo-dkim-worker")
        self._spawns.add(task)
        task.add_done_callback(self._spawns.discard)

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            worker = _Worker(self)
            await loop.subprocess_exec(
                lambda: worker,
                sys.executable,
                "-I",  # isolated: no PYTHONPATH, no user site, not the script's folder
                str(Path(dkim_worker.__file__)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            self._log("dkim.worker_failed", error=str(exc))
            return
        finally:
            self._spawning = False
        if self._closed:
            worker.stop()
            return
        self.workers.append(worker)
        self._log("dkim.worker_started", pid=worker.pid)

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
        self._log(
            "dkim.pool_stopped", by_workers=self.signed_by_workers, in_process=self.signed_here
        )
