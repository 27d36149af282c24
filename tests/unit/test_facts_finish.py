"""``finish_facts``: the facts of a message of many parts are made off the event loop
(each part costs 10-30 µs in every walk of the tree), small ones where they are."""

from __future__ import annotations

import asyncio
import threading

from correo.delivery.facts import FactsBuilder, finish_facts
from correo.store.api import MessageFacts


class _Recording(FactsBuilder):
    __slots__ = ("thread",)

    def finish(self, inserted: tuple[int, int] | None = None) -> MessageFacts:
        self.thread = threading.get_ident()
        return super().finish(inserted)


def _message(parts: int) -> bytes:
    head = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    return head + b"--b\r\n\r\nx\r\n" * parts + b"--b--\r\n"


def test_many_parts_are_finished_in_a_worker_thread_with_the_same_facts() -> None:
    async def go(parts: int) -> tuple[bool, MessageFacts, MessageFacts]:
        builder, plain = _Recording(), FactsBuilder()
        for b in (builder, plain):
            b.feed(_message(parts))
        facts = await finish_facts(builder, (0, 0))
        return builder.thread != threading.get_ident(), facts, plain.finish((0, 0))

    off, facts, same = asyncio.run(go(500))
    assert off and facts == same
    off, facts, same = asyncio.run(go(3))
    assert not off and facts == same


def test_a_long_header_is_finished_in_a_worker_thread() -> None:
    """A 200 KB To: (one part, within the 256 KiB kept) costs finish() some 20-30 ms:
    off the loop too."""
    to = ",\r\n ".join(f"user{i}@example.test" for i in range(8_000))
    raw = f"To: {to}\r\nSubject: s\r\n\r\nbody\r\n".encode()

    async def go() -> bool:
        builder = _Recording()
        builder.feed(raw)
        await finish_facts(builder)
        return builder.thread != threading.get_ident()

    assert asyncio.run(go())
