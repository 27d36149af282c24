"""DKIM private-key operations in worker processes, off the event loop's core.

An RSA-2048 signature costs about 0.3 ms of CPU and holds the GIL, so a thread does not
take it off the loop; a worker process does.  The session still hashes the header data
in process (streaming, cheap); only (key, 32-byte digest) pairs cross a pipe, and the
signatures come back.  Nothing here may fail a message: when no worker is ready, too
many requests are in flight, a worker does not answer within ``timeout`` or dies, the
digest is signed in process as before (:func:`correo.mailauth.signing.sign_digest`).

Workers are ``python -I -m correo.server.dkim_worker`` (standard library and
``cryptography``), run by :mod:`correo.server.worker_pipes`: started when the first
message that has an RSA key is signed, restarted after one dies (at most once per
``respawn_after`` seconds), and stopped by :meth:`SignPool.close`.  Private keys go to
a worker once, as PKCS#8 DER over its stdin pipe, and are known there by a number.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from correo.log import Logger
from correo.mailauth.dkim import PrivateKey
from correo.mailauth.signing import sign_digest
from correo.server.worker_pipes import HEAD, OK, Failed, PipePool, PipeWorker

__all__ = ["SignPool"]

_SIGN = struct.Struct(">IB")
_JOB = struct.Struct(">I32s")
_MAX_ANSWER = 1 << 16  # n signatures of at most 512 bytes each: far below
_MAX_KEYS = 1024  # keys kept by number; past this every worker forgets them all


class _Worker(PipeWorker):
    """A signing worker and the keys it holds."""

    def __init__(self, pool: PipePool) -> None:
        super().__init__(pool)
        self.keys: set[int] = set()


class SignPool(PipePool):
    """Worker processes that make DKIM private-key operations; see the module docstring."""

    name = "dkim"
    worker_class = _Worker

    def __init__(
        self,
        workers: int = 1,
        *,
        max_pending: int = 64,
        timeout: float = 2.0,
        respawn_after: float = 1.0,
        log: Logger | None = None,
    ) -> None:
        super().__init__(
            workers,
            ["-I", "-m", "correo.server.dkim_worker"],  # isolated: no PYTHONPATH, no user site
            max_pending=max_pending,
            timeout=timeout,
            respawn_after=respawn_after,
            max_answer=_MAX_ANSWER,
            log=log,
        )
        self.signed_by_workers = 0  # messages
        self.signed_here = 0  # messages signed in process while the pool was in use
        self._kids: dict[int, tuple[PrivateKey, int]] = {}  # id(key) -> (key, number)
        self._next_kid = 1

    async def sign(self, jobs: Sequence[tuple[PrivateKey, bytes]]) -> list[bytes]:
        """Signatures over each (key, SHA-256 digest), by a worker when one can."""
        if not any(isinstance(key, rsa.RSAPrivateKey) for key, _ in jobs):
            return [sign_digest(key, digest) for key, digest in jobs]  # ed25519: ~50 µs
        worker = self.pick()
        if isinstance(worker, _Worker):
            req = self._req()
            numbered = b"".join(_JOB.pack(kid, d) for kid, d in self._numbered(worker, jobs))
            try:
                status, body = await worker.request(
                    req, b"S" + _SIGN.pack(req, len(jobs)) + numbered
                )
            except Failed:
                pass
            else:
                if status == OK:
                    self.signed_by_workers += 1
                    return _signatures(body)
        self.signed_here += 1
        return [sign_digest(key, digest) for key, digest in jobs]

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
                        if isinstance(w, _Worker):
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
                worker.send(b"K" + HEAD.pack(kid) + der)
                worker.keys.add(kid)
            out.append((kid, digest))
        return out

    def stats(self) -> dict[str, object]:
        return {"by_workers": self.signed_by_workers, "in_process": self.signed_here}


def _signatures(body: bytes) -> list[bytes]:
    """The n x (len:u16 bytes) of an OK answer."""
    signatures, pos = [], 0
    while pos < len(body):
        n = int.from_bytes(body[pos : pos + 2], "big")
        signatures.append(body[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return signatures
