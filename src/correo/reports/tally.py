"""Results counted for reports, coalesced in memory and written to the store.

Counting must never hold up a delivery or an SMTP reply, so :meth:`TallyBuffer.add` is a
plain call that adds to a dictionary; one background task writes whatever has gathered
in one store write, so under load thousands of results cost one commit.  The dictionary
is bounded: beyond ``max_pending`` distinct keys a result is dropped (and counted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from correo.log import Logger
from correo.store.api import MailStore, ReportTally, StoreError

__all__ = ["TallyBuffer"]


class TallyBuffer:
    def __init__(
        self,
        store: MailStore,
        log: Logger,
        *,
        clock: Callable[[], float] = time.time,
        max_pending: int = 10_000,
        max_rows: int = 10_000,
    ) -> None:
        self.store = store
        self.log = log
        self.clock = clock
        self.max_pending = max_pending
        self.max_rows = max_rows
        #: (kind, domain, key) -> [count, first, last]
        self._pending: dict[tuple[str, str, str], list[float]] = {}
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def add(self, kind: str, domain: str, key: str, count: int = 1) -> None:
        """Count one result of ``kind`` for ``domain``; written soon, off the caller's path."""
        now = self.clock()
        entry = self._pending.get((kind, domain, key))
        if entry is None:
            if len(self._pending) >= self.max_pending:
                self.dropped += count
                return
            self._pending[(kind, domain, key)] = [count, now, now]
        else:
            entry[0] += count
            entry[2] = now
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._drain())
            except RuntimeError:  # no loop (a command-line tool): flush() writes it
                pass

    async def flush(self) -> None:
        """Write everything counted so far (before a report is made, and at stop)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        await self._write()

    async def _drain(self) -> None:
        while self._pending:
            await self._write()

    async def _write(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        tallies = [
            ReportTally(kind, domain, key, int(c), first, last)
            for (kind, domain, key), (c, first, last) in batch.items()
        ]
        try:
            dropped = await self.store.report_tally(tallies, max_rows=self.max_rows)
        except StoreError as exc:
            self.log.warning("reports.tally_failed", error=str(exc), rows=len(tallies))
            return
        if dropped:
            self.dropped += dropped
            self.log.warning("reports.tally_full", dropped=dropped)
        self.log.debug("reports.tallied", rows=len(tallies))
