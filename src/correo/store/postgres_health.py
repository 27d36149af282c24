"""Riding out a database restart: which errors mean "the database is gone", failing fast
while it is, and getting the pool's connections back when it returns.

A PostgreSQL restart (or fail-over) breaks every open connection at once.  Without care a
node would then (1) hand each request one of the dead connections still idle in the pool,
failing them one by one after the database is back, and (2) keep every request waiting
for the pool's whole timeout (30 s) while it is away, then wait again for the pool's
growing back-off before it tries to reconnect.

:class:`PgHealth` is shared by the store's reads and its batch writer:

* a request whose connection turns out dead makes the pool test every idle connection
  (one shared ``pool.check()``) and runs again once on a fresh one: reads always, a batch
  of writes only when it failed before its COMMIT was sent (nothing of it can have been
  committed, so running it again cannot write anything twice);
* while the database is known to be unreachable a request waits at most
  :data:`DOWN_WAIT` seconds for a connection, then fails with
  :class:`~correo.store.api.StoreUnavailableError`, which each protocol answers with
  its temporary error (SMTP 451 4.3.0, IMAP ``NO [UNAVAILABLE]``, POP3 ``-ERR
  [SYS/TEMP]``): nothing is acknowledged that was not committed;
* the pool gives up a connection slot that fails to reconnect for
  :data:`RECONNECT_GIVE_UP` seconds, and the next request opens a new one at once, so a
  node is back within seconds of the database however long the outage lasted (the
  pool's own back-off would otherwise grow to minutes).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from correo.store.api import StoreError, StoreFullError, StoreUnavailableError

__all__ = [
    "DOWN_WAIT",
    "RECONNECT_GIVE_UP",
    "PgHealth",
    "connection_lost",
    "store_error",
]

#: Seconds a request waits for a connection while the database is known to be down.
DOWN_WAIT: Final = 1.0
#: Seconds a pool slot retries connecting before it is given up and made again on demand.
RECONNECT_GIVE_UP: Final = 5.0
#: SQLSTATEs of a server going away: admin_shutdown, crash_shutdown, cannot_connect_now.
_SHUTDOWN: Final = frozenset({"57P01", "57P02", "57P03"})


def connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` says the connection or the server is gone, not the statement.

    Client-side failures (a socket closed under the driver) carry no SQLSTATE; class 08
    is connection_exception (appendix A of PostgreSQL's manual).  A full disk or a
    cancelled query is an OperationalError too, and is not one of these.
    """
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _SHUTDOWN


def store_error(exc: BaseException) -> BaseException:
    """Database errors become StoreError (what sessions turn into a temporary reply):
    the database server's full disk StoreFullError (SMTP 452 4.3.1), a lost database
    StoreUnavailableError; anything else is returned as it is."""
    if not isinstance(exc, psycopg.Error):
        return exc
    if isinstance(exc, psycopg.errors.DiskFull):
        error: StoreError = StoreFullError(f"database error: {exc}")
    elif connection_lost(exc):
        error = StoreUnavailableError(f"the database is unavailable: {exc}")
    else:
        error = StoreError(f"database error: {exc}")
    error.__cause__ = exc
    return error


class PgHealth:
    """Whether the database answered last time, and the one pool check at a time."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.down = False
        self.outages = 0  # times the database was found gone (logs, tests)
        self._check: asyncio.Task[None] | None = None

    @property
    def wait(self) -> float | None:
        """The connection wait for the next request: short while the database is down,
        else the pool's own (None)."""
        return DOWN_WAIT if self.down else None

    def answered(self) -> None:
        self.down = False

    async def lost(self) -> None:
        """A connection was found dead: drop every dead idle one before trying again."""
        if not self.down:
            self.outages += 1
        self.down = True
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._run_check(), name="correo-pg-check")
        await asyncio.shield(self._check)

    async def _run_check(self) -> None:
        try:
            await self.pool.check()  # tests each idle connection, replaces the dead ones
        except Exception:
            pass  # the pool is closing, or the check itself lost the server: nothing to do
