"""Failed-login counters in PostgreSQL, so a password guesser gets one budget, not one per node.

:class:`correo.server.throttle.AuthThrottle` keeps its rules; this is where its counters
live when ``[store] url`` is set.  Each update is one short transaction: advisory locks
on the keys (in sorted order, so two updates never deadlock), read the rows, apply the
throttle's step, write back what changed.  Times are wall-clock seconds (nodes keep
their clocks in step with NTP).

An attempt counts as pending from its start to its end; a node that dies in between
leaves its pending attempts behind, so a counter whose last activity is older than
``PENDING_HORIZON`` counts none (no password check lasts that long).  Rows idle for the
lockout time are gone for the throttle and deleted by a sweep now and then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from correo.directory.api import DirectoryError, LoginCounter

__all__ = ["PENDING_HORIZON", "PgLoginCounters"]

T = TypeVar("T")

#: Seconds after which attempts still marked pending are taken as abandoned.
PENDING_HORIZON: Final = 120.0
#: The first key of the advisory locks (the second is the counter key's hash).
_LOCK_CLASS: Final = 0x636F72  # "cor"
_SWEEP_EVERY: Final = 60.0

Conn = psycopg.Connection[Any]


class PgLoginCounters:
    """:class:`correo.directory.api.LoginCounters` in the ``login_failures`` table."""

    def __init__(self, pool: ConnectionPool[Conn]) -> None:
        self._pool = pool
        self._swept = 0.0

    def update(
        self,
        keys: tuple[str, ...],
        now: float,
        idle: float,
        step: Callable[[dict[str, LoginCounter]], T],
    ) -> T:
        wanted = sorted(set(keys))
        locks = ", ".join(["pg_advisory_xact_lock(%s, hashtext(%s))"] * len(wanted))
        try:
            with self._pool.connection(timeout=2.0) as conn, conn.transaction():
                # Counters are worth less than a WAL flush per login: a crash of the
                # database server may forget the last few milliseconds of them (the
                # set_config is SET LOCAL synchronous_commit = off, in this statement).
                # The locks are taken in key order, so two updates never deadlock; the
                # rows are read by the next statement, whose snapshot follows the locks.
                conn.execute(
                    f"SELECT set_config('synchronous_commit', 'off', true), {locks}".encode(),
                    [x for k in wanted for x in (_LOCK_CLASS, k)],
                )
                rows = conn.execute(
                    "SELECT key, failures, pending, last, locked_until FROM login_failures"
                    " WHERE key = ANY(%s)",
                    (wanted,),
                ).fetchall()
                view: dict[str, LoginCounter] = {}
                for key, failures, pending, last, locked_until in rows:
                    if now - last >= idle:
                        continue  # idle long enough to be forgotten
                    if now - last >= PENDING_HORIZON:
                        pending = 0
                    view[key] = LoginCounter(failures, pending, last, locked_until)
                before = {k: _values(c) for k, c in view.items()}
                stored = {row[0] for row in rows}
                result = step(view)
                gone = [k for k in wanted if k not in view and k in stored]
                changed = [
                    (k, *_values(view[k]))
                    for k in wanted
                    if k in view and (k not in stored or before.get(k) != _values(view[k]))
                ]
                if gone:
                    conn.execute("DELETE FROM login_failures WHERE key = ANY(%s)", (gone,))
                if changed:
                    conn.execute(
                        "INSERT INTO login_failures (key, failures, pending, last, locked_until)"
                        " SELECT * FROM unnest(%s::text[], %s::int[], %s::int[],"
                        " %s::float8[], %s::float8[]) ON CONFLICT (key) DO UPDATE SET"
                        " failures = EXCLUDED.failures, pending = EXCLUDED.pending,"
                        " last = EXCLUDED.last, locked_until = EXCLUDED.locked_until",
                        [list(column) for column in zip(*changed, strict=True)],
                    )
                if time.monotonic() - self._swept > _SWEEP_EVERY:
                    self._swept = time.monotonic()
                    conn.execute("DELETE FROM login_failures WHERE last < %s", (now - idle,))
            return result
        except (psycopg.Error, PoolTimeout) as exc:
            raise DirectoryError(f"cannot update the login counters: {exc}") from None


def _values(counter: LoginCounter) -> tuple[int, int, float, float]:
    return (counter.failures, counter.pending, counter.last, counter.locked_until)
