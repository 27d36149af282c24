"""SEARCH TEXT/BODY index freshness: every stored message is indexed in the background.

In-process store tests check the index rows themselves (written, copied, moved,
dropped); end-to-end tests deliver over SMTP and APPEND and search over IMAP.
"""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.delivery.facts import facts_from_bytes, load_tree
from correo.delivery.textindex import (
    TextIndexer,
    index_delivered,
    index_form,
    index_needles,
    index_text_of,
    indexer_for,
)
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server
from tests.server.imap_helpers import imap, message, unique

A = "a@x.test"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def _store(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


async def _put(store: SqliteStore, data: bytes, targets: list[tuple[str, str]]) -> list[int]:
    spool = store.new_spool()
    spool.write(data)
    delivered = await store.deliver(
        spool,
        Envelope(sender="s@y.test"),
        [DeliveryTarget(a, m) for a, m in targets],
        facts=facts_from_bytes(data),
    )
    index_delivered(store, delivered)
    return [uid for _, uid in delivered.uids]


def _docs(path: Path) -> list[tuple[int, int]]:
    """(mailbox id, uid) of every index row, read straight from text.db."""
    with sqlite3.connect(path / "text.db") as conn:
        rows = conn.execute("SELECT mailbox_id, uid FROM docs ORDER BY 1, 2").fetchall()
        (bodies,) = conn.execute("SELECT count(*) FROM body").fetchone()
    assert bodies == len(rows)  # no orphaned text rows
    return [(int(a), int(b)) for a, b in rows]


async def _settle(store: SqliteStore) -> None:
    """Wait for the indexer and for the best-effort writes the store queued itself."""
    await indexer_for(store).drain()
    await asyncio.sleep(0)  # the after-commit hand-overs (call_soon_threadsafe) run
    await store._text_committer.submit(lambda conn: (None, []))  # FIFO: earlier writes done


def _mail(subject: str, body: str) -> bytes:
    return (
        f"From: Ann <ann@y.test>\r\nTo: a@x.test\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    ).encode()


# -- the index form keeps substring semantics ---------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("abcXYZ \n\tß\u017f \u0130-"), max_size=300),
    data=st.data(),
)
def test_index_form_keeps_every_needle_piece(text: str, data: st.DataObject) -> None:
    """Invariant: for any substring N of the casefolded text, every piece the index is
    asked for is a substring of the indexed form, so the index never drops a match."""
    folded = text.casefold()
    start = data.draw(st.integers(0, len(folded)))
    end = data.draw(st.integers(start, len(folded)))
    needle = folded[start:end]
    form = index_form(folded * 40)  # long enough to be deduplicated
    assert all(piece in form for piece in index_needles([needle]))


@pytest.mark.parametrize(
    ("needles", "pieces"),
    [
        (["Hello World"], ["hello", "world"]),
        (["  spaced\r\nout  "], ["spaced", "out"]),
        (["STRASSE"], ["strasse"]),
        (["Straße"], ["strasse"]),  # casefold, as the evaluator compares
        ([""], []),
    ],
)
def test_index_needles(needles: list[str], pieces: list[str]) -> None:
    assert index_needles(needles) == pieces


def test_index_form_is_the_word_set_of_long_texts() -> None:
    long = "alpha beta\nalpha  gamma " * 1000
    assert index_form(long) == "alpha beta gamma"
    assert index_form("short text text") == "short text text"  # not worth deduplicating


def test_index_text_covers_encoded_and_quoted_headers() -> None:
    data = (
        b'From: "Ann \\"Q\\" Lee" <ann@y.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n'
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello&amp;bye</p>\r\n"
    )
    text = index_text_of(data, load_tree(facts_from_bytes(data)))
    assert "grüsse" in text  # RFC 2047 decoded, casefolded
    assert 'ann "q" lee <ann@y.test>' in text  # canonical address form (RFC 9051 §6.4.4)
    assert "hello&bye" in text  # HTML as text


# -- the store's index rows -----------------------------------------------------------------


def test_delivered_messages_are_indexed_once_per_blob(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path)
        reads = 0
        original = store.read_message

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return original(*args, **kwargs)

        store.read_message = counting  # type: ignore[method-assign]
        inlines = store.read_inlines

        async def counting_many(*args: Any, **kwargs: Any) -> dict[int, bytes]:
            nonlocal reads
            found = await inlines(*args, **kwargs)
            reads += len(found)  # bodies read ahead in one call count one each
            return found

        store.read_inlines = counting_many  # type: ignore[method-assign]
        await _put(store, _mail("s", "zebracorn one"), [(A, "INBOX"), ("b@x.test", "INBOX")])
        await _put(store, _mail("s", "plain two"), [(A, "INBOX")])
        indexer = indexer_for(store)
        await _settle(store)
        assert reads == 2  # two messages, three copies
        assert indexer.dropped == 0
        maybe, unindexed = await store.text_candidates(A, "INBOX", ["zebracorn"])
        assert (maybe, unindexed) == ({1}, set())
        maybe, unindexed = await store.text_candidates("b@x.test", "INBOX", ["zebracorn"])
        assert (maybe, unindexed) == ({1}, set())
        await store.close()

    run(go())


def test_a_message_in_hand_is_indexed_without_reading_it_back(tmp_path: Path) -> None:
    """Local delivery hands the indexer the bytes and facts it stored: no store read."""

    async def go() -> None:
        store = await _store(tmp_path)
        reads = 0

        async def no_facts(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            raise AssertionError("read back")

        store.fetch_facts = no_facts  # type: ignore[method-assign]
        store.read_inlines = no_facts  # type: ignore[method-assign]
        data = _mail("s", "wombatish three")
        spool = store.new_spool()
        spool.write(data)
        facts = facts_from_bytes(data)
        delivered = await store.deliver(
            spool, Envelope(sender="s@y.test"), [DeliveryTarget(A, "INBOX")], facts=facts
        )
        index_delivered(store, delivered, (data, facts))
        await _settle(store)
        assert reads == 0
        maybe, unindexed = await store.text_candidates(A, "INBOX", ["wombatish"])
        assert (maybe, unindexed) == ({1}, set())
        await store.close()

    run(go())


def test_expunge_copy_move_and_delete_follow_in_the_index(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path)
        await store.create_mailbox(A, "Box")
        for i in range(4):
            await _put(store, _mail(f"m{i}", f"word{i} zebracorn"), [(A, "INBOX")])
        await _settle(store)
        assert len(_docs(tmp_path)) == 4
        await store.expunge(A, "INBOX", [1])
        await store.copy_messages(A, "INBOX", [2], "Box")
        await store.copy_messages(A, "INBOX", [3], "Box", move=True)
        await _settle(store)
        maybe, unindexed = await store.text_candidates(A, "Box", ["zebracorn"])
        assert (maybe, unindexed) == ({1, 2}, set())  # copied and moved: no re-read needed
        maybe, unindexed = await store.text_candidates(A, "INBOX", ["word2"])  # moved away
        assert (maybe, unindexed) == (set(), set())
        maybe, unindexed = await store.text_candidates(A, "Box", ["word2"])
        assert (maybe, unindexed) == ({2}, set())
        assert len(_docs(tmp_path)) == 4  # 2, 4 in INBOX; 1, 2 in Box
        await store.delete_mailbox(A, "Box")
        await _settle(store)
        assert len(_docs(tmp_path)) == 2
        await store.close()

    run(go())


def test_stale_rows_are_swept_by_a_search(tmp_path: Path) -> None:
    """Rows of messages removed behind the index's back (another process, a crash)."""

    async def go() -> None:
        store = await _store(tmp_path)
        await _put(store, _mail("m", "zebracorn"), [(A, "INBOX")])
        await _settle(store)
        with sqlite3.connect(tmp_path / "mail.db") as conn:
            conn.execute("DELETE FROM messages")
        assert len(_docs(tmp_path)) == 1
        assert await store.text_candidates(A, "INBOX", ["zebracorn"]) == (set(), set())
        await _settle(store)
        assert _docs(tmp_path) == []
        await store.close()

    run(go())


def test_bounded_queue_leaves_the_rest_to_the_backfill(tmp_path: Path) -> None:
    async def go() -> None:
        store = await _store(tmp_path)
        indexer = TextIndexer(store, limit=2)
        for i in range(5):
            spool = store.new_spool()
            data = _mail(f"m{i}", f"body{i}")
            spool.write(data)
            await store.deliver(
                spool, Envelope(sender=""), [DeliveryTarget(A)], facts=facts_from_bytes(data)
            )
        for uid in range(1, 6):  # a burst: faster than the indexer
            indexer.add([(A, "INBOX", uid)])
        await indexer.drain()
        await _settle(store)
        assert indexer.dropped == 3
        _, unindexed = await store.text_candidates(A, "INBOX", ["body"])
        assert unindexed == {3, 4, 5}
        await store.close()

    run(go())


def test_old_index_file_is_rebuilt(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    with sqlite3.connect(tmp_path / "text.db") as conn:
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, mailbox_id, uidvalidity, uid)")
        conn.execute("INSERT INTO docs VALUES (1, 1, 1, 1)")

    async def go() -> None:
        store = await _store(tmp_path)
        assert _docs(tmp_path) == []
        await store.close()

    run(go())


# -- end to end -----------------------------------------------------------------------------


def _indexed_rows(server: Server) -> int:
    with sqlite3.connect(server.data / "store" / "text.db") as conn:
        return int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])


def _wait_rows(server: Server, at_least: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows = _indexed_rows(server)
        if rows >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_smtp_delivery_is_indexed_before_any_search(server: Server) -> None:
    before = _indexed_rows(server)
    word = f"quokka{unique('w')}"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(
            "someone@remote.test",
            ["bob@example.test"],
            message("delivered", f"a {word} here\r\n", to="bob@example.test"),
        )
    assert _wait_rows(server, before + 1) >= before + 1  # no search has read it
    client = imap(server, "bob@example.test")
    client.select("INBOX", readonly=True)
    typ, data = client.uid("SEARCH", "BODY", word)
    assert typ == "OK" and len(data[0].split()) == 1
    typ, data = client.uid("SEARCH", "TEXT", f'"a {word.upper()}  here"')
    assert typ == "OK" and len(data[0].split()) == 0  # two spaces: not a substring
    typ, data = client.uid("SEARCH", "TEXT", f'"a {word.upper()} here"')
    assert typ == "OK" and len(data[0].split()) == 1
    client.logout()


def test_append_then_search_at_once(server: Server) -> None:
    box = unique("idx")
    client = imap(server)
    assert client.create(box)[0] == "OK"
    for i in range(30):
        body = "needle wombatfish inside\r\n" if i == 17 else f"filler {i}\r\n"
        assert client.append(box, None, None, message(f"m{i}", body))[0] == "OK"
    client.select(box)
    typ, data = client.uid("SEARCH", "TEXT", "WombatFish")
    assert typ == "OK" and data[0].split() == [b"18"]
    assert client.copy("18", "INBOX")[0] == "OK"
    typ, data = client.uid("SEARCH", "BODY", "wombatfish", "NOT", "BODY", "inside")
    assert typ == "OK" and data[0].split() == []
    assert client.store("18", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert client.expunge()[0] == "OK"
    typ, data = client.uid("SEARCH", "TEXT", "wombatfish")
    assert typ == "OK" and data[0].split() == []
    client.logout()
