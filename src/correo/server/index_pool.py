"""The text index's extraction in worker processes, off the event loop's core.

Extracting the index form of a delivered message (:func:`correo.delivery.textindex.
indexable`) is pure Python CPU that holds the GIL: about a fifth of the loop's busy time
under a single client's APPENDs, a tenth under SMTP deliveries.  The indexer hands each
message it holds (bytes and facts tree) to :meth:`IndexPool.submit`; a worker
(:mod:`correo.server.index_worker`) answers the text, which the indexer writes as
before.  When the message is too small to pay for the pipe or too big to send, no
worker is ready or too many requests are in flight, ``submit`` answers None; when a
worker dies or does not answer, the future fails: either way the indexer extracts in its
own process, so no text is lost.
"""

from __future__ import annotations

import asyncio

from correo.delivery.textindex import INDEX_IN_HAND, indexer_for
from correo.log import Logger
from correo.server.index_worker import MAX_TREE, NONE, REQUEST
from correo.server.worker_pipes import OK, Failed, PipePool
from correo.store.api import MailStore

__all__ = ["WORKER_FROM", "IndexPool", "attach", "detach"]

# an index form is the distinct words of a message's text: a few times its bytes at most
# (casefolding, UTF-8); past this the worker is taken for broken and replaced
_MAX_ANSWER = 64 * INDEX_IN_HAND
# bytes: a smaller message costs the loop less to extract than to send: a lone request
# costs it about 0.1 ms, the extraction of 4-5 KB of mail (0.13 ms in process for 5 KB,
# 0.29 for 20 KB, 0.67 for 50 KB, against 0.10-0.12 through the worker)
WORKER_FROM = 8 << 10


class IndexPool(PipePool):
    """Worker processes that extract index texts; see the module docstring."""

    name = "index"

    def __init__(
        self,
        workers: int = 1,
        *,
        max_pending: int = 64,
        timeout: float = 10.0,
        respawn_after: float = 1.0,
        log: Logger | None = None,
    ) -> None:
        super().__init__(
            workers,
            ["-I", "-m", "correo.server.index_worker"],  # isolated: no PYTHONPATH, no cwd
            max_pending=max_pending,
            timeout=timeout,
            respawn_after=respawn_after,
            max_answer=_MAX_ANSWER,
            log=log,
        )
        self.by_workers = 0  # messages
        self.declined = 0  # messages left to the caller's process

    def submit(self, data: bytes, tree: bytes) -> asyncio.Future[str | None] | None:
        """The index form of ``data`` (``tree``: its ``MessageFacts.tree``), on its way
        from a worker; None when the caller must extract it itself."""
        if len(data) < WORKER_FROM:
            return None
        worker = self.pick() if len(data) <= INDEX_IN_HAND and len(tree) <= MAX_TREE else None
        if worker is None:
            self.declined += 1
            return None
        req = self._req()
        raw = worker.request(req, REQUEST.pack(req, len(tree)) + tree + data)
        out: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def done(raw: asyncio.Future[tuple[int, bytes]]) -> None:
            if out.done():
                return  # the indexer gave it up (it was cancelled)
            exc = raw.exception()
            if exc is not None:
                self.declined += 1
                out.set_exception(exc)
                return
            status, payload = raw.result()
            if status == OK:
                self.by_workers += 1
                out.set_result(payload.decode("utf-8", "surrogatepass"))
            elif status == NONE:
                self.by_workers += 1
                out.set_result(None)  # too long to index: the same answer as in process
            else:
                self.declined += 1
                out.set_exception(Failed("the worker could not read it"))

        raw.add_done_callback(done)
        return out

    def stats(self) -> dict[str, object]:
        return {"by_workers": self.by_workers, "declined": self.declined}


def attach(store: MailStore, workers: int, log: Logger) -> IndexPool | None:
    """The pool the indexer of ``store`` hands its messages to (``[limits]
    index_workers``; 0: none, the indexer extracts in process)."""
    if workers <= 0:
        return None
    pool = IndexPool(workers, log=log)
    indexer_for(store).extractor = pool.submit
    return pool


async def detach(store: MailStore, pool: IndexPool | None) -> None:
    """Stop the pool; what it had in flight, and what comes later, is extracted in
    process."""
    if pool is None:
        return
    indexer = indexer_for(store)
    if indexer.extractor == pool.submit:
        indexer.extractor = None
    await pool.close()
