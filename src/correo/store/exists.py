"""A mailbox's message count remembered under its marks, for both stores.

``count(*)`` walks every row of a mailbox (10,000 rows: a third of a millisecond on
each JMAP request, IMAP NOOP or POP3 check that asks for EXISTS).  Every change to
which messages a mailbox holds moves one of its marks: a message in (APPEND, delivery,
COPY, MOVE) takes a new UIDNEXT, a message out (EXPUNGE, MOVE) a new HIGHESTMODSEQ
(what QRESYNC's VANISHED reads, RFC 7162 §3.2.10), and a mailbox made again has a new
row id and UIDVALIDITY.  So a count read under the same (id, UIDVALIDITY, UIDNEXT,
HIGHESTMODSEQ) is still the count, whichever process or node made the change.
"""

from __future__ import annotations

from correo.store.perstore import PerStore

__all__ = ["ExistsMemo", "exists_memo"]

Marks = tuple[int, int, int, int]  # mailbox row id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ


class ExistsMemo:
    """The last count of each mailbox with the marks it was read under (bounded)."""

    def __init__(self, most: int = 100_000) -> None:
        self.most = most
        self._seen: dict[int, tuple[Marks, int]] = {}

    def get(self, marks: Marks) -> int | None:
        kept = self._seen.get(marks[0])
        return kept[1] if kept is not None and kept[0] == marks else None

    def added(self, box: int, uid: int) -> None:
        """A commit put one message at ``uid`` into mailbox row ``box``, moving UIDNEXT
        to ``uid + 1`` and HIGHESTMODSEQ up by one: a count kept under UIDNEXT ``uid``
        is one more under the marks that follow.  Had anything else moved HIGHESTMODSEQ
        since that count, the marks made here are never read: a miss, never a wrong count.
        """
        kept = self._seen.get(box)
        if kept is not None and kept[0][2] == uid:
            marks, count = kept[0], kept[1]
            self.put((box, marks[1], uid + 1, marks[3] + 1), count + 1)

    def put(self, marks: Marks, count: int) -> None:
        seen = self._seen
        seen.pop(marks[0], None)
        seen[marks[0]] = (marks, count)
        if len(seen) > self.most:  # the least recently counted goes
            del seen[next(iter(seen))]


#: The memo of one store instance (two stores in a process never share ids).
exists_memo: PerStore[ExistsMemo] = PerStore(ExistsMemo)
