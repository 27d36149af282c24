"""When reports go out: once per ``[reports] interval`` (after each UTC midnight with the
default of a day), and at once on ``reports flush``.

The time of the last run is kept in the store (``report_jobs``), so a restart neither
skips a day nor sends twice; the run is claimed under a lease, so on a cluster one node
sends while the others find it taken.  Each node writes its own tallies first, so the
node that sends reports what every node counted up to its last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from correo.log import Logger
from correo.reports.outbound import LEASE, ReportSender, RunSummary
from correo.reports.tally import TallyBuffer
from correo.store.api import StoreError

__all__ = ["DAILY", "ReportScheduler"]

#: The job name of the periodic run in the store.
DAILY = "reports:daily"


class ReportScheduler:
    def __init__(
        self,
        sender: ReportSender,
        tallies: Sequence[TallyBuffer],
        log: Logger,
        *,
        clock: Callable[[], float] = time.time,
        check_every: float = 60.0,
    ) -> None:
        self.sender = sender
        self.tallies = list(tallies)
        self.log = log
        self.clock = clock
        self.check_every = check_every
        self._task: asyncio.Task[None] | None = None

    async def run_once(self, *, force: bool = False) -> RunSummary | None:
        """One run if due (always when ``force``), unless another node holds it."""
        for t in self.tallies:
            await t.flush()
        store, owner = self.sender.store, self.sender.owner
        now = self.clock()
        # Due once the current period began after the last run: periods are counted from
        # the epoch, so daily runs follow UTC days, as RFC 7489 §7.2 suggests.
        since_start = now % max(1.0, self.sender.config.reports.interval)
        last = await store.report_claim(DAILY, owner, now, 0.0 if force else since_start, LEASE)
        if last is None:
            return None
        try:
            keep = self.sender.config.reports.keep_days * 86400.0
            pruned = await store.report_prune(now - keep)
            if pruned:
                self.log.info("reports.pruned", removed=pruned)
            summary = await self.sender.run()
        except BaseException:
            with contextlib.suppress(StoreError):
                await store.report_release(DAILY, owner)
            raise
        await store.report_done(DAILY, owner, self.clock())
        self.log.info(
            "reports.run",
            sent=summary.sent,
            domains=summary.domains,
            deferred=summary.deferred,
            forced=force,
        )
        return summary

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except (StoreError, OSError) as exc:
                self.log.error("reports.run_failed", error=str(exc))
            await asyncio.sleep(self.check_every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="correo-reports")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for t in self.tallies:
            with contextlib.suppress(StoreError):
                await t.flush()
