"""What ``correo verify`` found: problems (the data is damaged) and notes.

Each store checks its own representation (``sqlite_backup.check_store``,
``postgres_check.check_database``) and reports here; the command prints and decides
the exit status.  A damaged store can hold millions of bad rows, so each kind of
problem prints its first ``limit`` lines and is then only counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

__all__ = ["Findings"]


class Findings:
    """Problems and notes, passed to ``emit`` as they are found."""

    def __init__(self, emit: Callable[[str], None], limit: int = 20) -> None:
        self.emit = emit
        self.limit = limit
        self.problems: Counter[str] = Counter()  # kind -> how many

    def problem(self, kind: str, text: str) -> None:
        """Something is damaged or missing: verify exits non-zero."""
        self.problems[kind] += 1
        if self.problems[kind] <= self.limit:
            self.emit(f"problem: {text}")

    def note(self, text: str) -> None:
        """Worth knowing, harmless (e.g. an unreferenced file the server sweeps)."""
        self.emit(f"note: {text}")

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return "no problems found"
        parts = [f"{n} {kind}" for kind, n in sorted(self.problems.items())]
        return f"{sum(self.problems.values())} problem(s): " + ", ".join(parts)
