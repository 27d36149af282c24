"""SEARCH TEXT/BODY on PostgreSQL with and without the optional trigram index.

Without ``text_docs_trgm`` (the default since migration 48) the candidates come from one
``strpos`` per needle; with it (``correo store search-index on``) from a LIKE per
trigram. Both must select every true match, and what survives the verification the
IMAP evaluator does must be the same. A real PostgreSQL (tests/pg.py), never a mock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.delivery.textindex import index_needles, index_text_of, indexable
from correo.message.structure import parse_structure
from correo.store.api import DeliveryTarget, Envelope

psycopg = pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

from correo.store import postgres_mailboxes  # noqa: E402
from correo.store.postgres import PostgresStore  # noqa: E402
from correo.store.postgres_schema import (  # noqa: E402
    LATEST,
    MIGRATIONS,
    SEARCH_INDEX,
    search_index,
    set_search_index,
)
from tests.server.test_upgrade_postgres import build_level  # noqa: E402

ACCOUNT = "a@x.test"
FILLER = " ".join(f"filler{i % 700}" for i in range(2500))  # over 8 KB: the word-set form

MESSAGES = [
    b"Subject: Quarterly Report\r\nFrom: Ann Example <ann@x.test>\r\n\r\n"
    b"The XYLOPHONE quartet plays tonight.\r\n",
    b"Subject: =?utf-8?q?Gr=C3=B6=C3=9Fe?=\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + "Straße naïve ΕΛΛΗΝΙΚΆ café résumé\r\n".encode(),
    b"Subject: plain\r\n\r\nnothing special here, just words\r\n",
    b"Subject: html\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; b=x;"
    b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n'
    b"<p>Hidden<b>gem</b> in markup</p>\r\n--b--\r\n",
    b"Subject: long\r\n\r\n" + FILLER.encode() + b" zanzibar-quartz tail\r\n",
    b"Subject: never indexed\r\n\r\nxylophone strasse gem, found by the scan\r\n",
]

#: What a client searches for (each list a conjunction of TEXT/BODY keys).
QUERIES = [
    ["phone"],
    ["QUARTET"],
    ["xylophone quartet"],
    ["STRASSE"],
    ["straße"],
    ["ελληνικά"],
    ["Naïve", "CAFÉ"],
    ["ésu"],
    ["é"],
    ["ab"],
    ["ord"],
    ["nowhere"],
    ["report", "ann@x.test"],
    ["Ann Example <ann@x.test>"],
    ["hiddengem"],
    ["filler699", "quartz tail"],
    ["zanzibar-quartz"],
    ["gem"],
    ["a\x00b"],
    [],
]


async def _fill(url: str, root: Path) -> dict[int, str]:
    """Deliver MESSAGES and index all but the last, as the background indexer would;
    returns the text each one's search compares against (casefolded), by UID."""
    store = PostgresStore(url, root, recover=True)
    await store.open()
    texts: dict[int, str] = {}
    try:
        for uid, data in enumerate(MESSAGES, 1):
            spool = store.new_spool()
            spool.write(data)
            await store.deliver(spool, Envelope("s@x.test"), [DeliveryTarget(ACCOUNT)])
            tree = parse_structure(data)
            texts[uid] = index_text_of(data, tree)
            if uid < len(MESSAGES):
                form = indexable(data, tree)
                assert form is not None
                await store.index_text(ACCOUNT, "INBOX", {uid: form})
    finally:
        await store.close()
    return texts


async def _candidates(url: str, root: Path) -> tuple[bool, list[tuple[set[int], set[int]]]]:
    """Every query's (candidates, unindexed) from a store opened now."""
    store = PostgresStore(url, root, recover=True)
    await store.open()
    try:
        found = [
            await store.text_candidates(ACCOUNT, "INBOX", index_needles(query)) for query in QUERIES
        ]
        return await store._trgm_present(), found
    finally:
        await store.close()


async def _set(url: str, on: bool) -> str:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        return await set_search_index(conn, on)
    finally:
        await conn.close()


def _matches(texts: dict[int, str], query: list[str]) -> set[int]:
    """What the evaluator keeps: every key a substring of the casefolded text."""
    return {uid for uid, text in texts.items() if all(q.casefold() in text for q in query)}


def test_results_are_the_same_with_and_without_the_trigram_index(
    pg_url: str, tmp_path: Path
) -> None:
    texts = asyncio.run(_fill(pg_url, tmp_path))
    unindexed = {len(MESSAGES)}
    present, without = asyncio.run(_candidates(pg_url, tmp_path))
    assert not present  # the default: no index
    assert asyncio.run(_set(pg_url, True)) == "on"
    present, with_index = asyncio.run(_candidates(pg_url, tmp_path))
    assert present
    for query, (scan, scan_new), (grams, grams_new) in zip(
        QUERIES, without, with_index, strict=True
    ):
        truth = _matches(texts, query)
        assert scan_new == grams_new == unindexed, query
        assert truth | unindexed <= scan and truth | unindexed <= grams, query
        assert _matches(texts, query) & scan == _matches(texts, query) & grams, query
    # Without the index the scan is exact over the indexed words: a needle shorter than a
    # trigram selects only the messages that hold it.
    by_query = dict(zip(map(tuple, QUERIES), without, strict=True))
    assert by_query[("ab",)][0] == unindexed
    assert by_query[("é",)][0] == {2} | unindexed
    assert by_query[("STRASSE",)][0] == by_query[("straße",)][0] == {2} | unindexed
    assert by_query[("xylophone quartet",)][0] == {1} | unindexed
    assert by_query[("hiddengem",)][0] == {4} | unindexed
    assert by_query[("filler699", "quartz tail")][0] == {5} | unindexed
    assert by_query[()][0] == set(range(1, len(MESSAGES) + 1))
    assert asyncio.run(_set(pg_url, False)) == "off"
    assert asyncio.run(_candidates(pg_url, tmp_path)) == (False, without)


def test_an_open_store_follows_the_index_being_made_and_dropped(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_mailboxes, "_INDEX_RECHECK", 0.0)  # read it every time

    async def go() -> None:
        await _fill(pg_url, tmp_path)
        store = PostgresStore(pg_url, tmp_path, recover=True)
        await store.open()
        try:
            before = await store.text_candidates(ACCOUNT, "INBOX", ["quartet"])
            assert not await store._trgm_present()
            assert await _set(pg_url, True) == "on"
            assert await store._trgm_present()
            assert await store.text_candidates(ACCOUNT, "INBOX", ["quartet"]) == before
            assert await _set(pg_url, False) == "off"
            assert not await store._trgm_present()
        finally:
            await store.close()

    asyncio.run(go())


def test_an_invalid_index_left_by_a_failed_build_is_made_again(pg_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(pg_url, tmp_path))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(b"CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.execute(f"CREATE INDEX {SEARCH_INDEX} ON text_docs USING gin (text gin_trgm_ops)")
        conn.execute(  # what a CREATE INDEX CONCURRENTLY that failed leaves
            f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{SEARCH_INDEX}'::regclass"
        )

    async def state() -> str:
        conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
        try:
            return await search_index(conn)
        finally:
            await conn.close()

    assert asyncio.run(state()) == "invalid"
    present, _ = asyncio.run(_candidates(pg_url, tmp_path))
    assert not present  # an invalid index is not used: the store scans
    assert asyncio.run(_set(pg_url, True)) == "on"
    assert asyncio.run(state()) == "on"


def test_migration_48_drops_the_index_the_earlier_schema_made(
    pg_cluster: object, tmp_path: Path
) -> None:
    url: str = pg_cluster.new_database()  # type: ignore[attr-defined]
    build_level(url, max(v for v in MIGRATIONS if v < 48))
    with psycopg.connect(url, autocommit=True) as conn:  # as migration 1 used to make it
        conn.execute(b"CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.execute(f"CREATE INDEX {SEARCH_INDEX} ON text_docs USING gin (text gin_trgm_ops)")
    texts = asyncio.run(_fill(url, tmp_path))  # opening the store migrates
    with psycopg.connect(url) as conn:
        row = conn.execute(
            b"SELECT to_regclass('text_docs_trgm'), max(version) FROM schema_version"
        ).fetchone()
    assert row == (None, LATEST)
    present, found = asyncio.run(_candidates(url, tmp_path))
    assert not present
    for query, (maybe, _) in zip(QUERIES, found, strict=True):
        assert _matches(texts, query) <= maybe, query
