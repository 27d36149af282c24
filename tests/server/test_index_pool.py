"""The text index's extraction in worker processes: a worker answers what the server's
own process would, refuses bad frames without dying, a dead worker loses no text, and a
running server's APPENDs are indexed by its worker and found by SEARCH TEXT."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from correo.delivery.facts import facts_from_bytes, load_tree
from correo.delivery.textindex import INDEX_IN_HAND, TextIndexer, indexable
from correo.server.index_pool import WORKER_FROM, IndexPool
from correo.server.index_worker import MAX_REQUEST, REQUEST
from correo.server.worker_pipes import ANSWER, FAILED, HEAD, OK, READY, Failed
from correo.store.api import DeliveryTarget, Envelope
from correo.store.sqlite import SqliteStore
from tests.conftest import Server
from tests.server.imap_helpers import imap, message, unique

pytestmark = pytest.mark.timeout(120)

A, B = "a@x.test", "b@x.test"
FILL = "padding words to make it worth a worker\r\n" * (WORKER_FROM // 40)

MIXED = (
    b'From: =?utf-8?q?Ren=C3=A9e?= <renee@y.test>\r\nTo: "Ann \\"A\\"" <a@x.test>\r\n'
    b"Subject: =?utf-8?b?U3Ryw6LDn2UgZ3LDvMOfZQ==?=\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nStra=C3=9Fe ZEBRAFINCH caf=C3=A9 " + b"word " * 2000 + b"\r\n"
    b"--b\r\nContent-Type: text/html\r\n\r\n<p>Hippo&amp;potamus <b>bold</b></p>\r\n--b--\r\n"
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return bool(f.read())
    except FileNotFoundError:
        return False


async def _ready(pool: IndexPool, but: frozenset[int | None] = frozenset()) -> int:
    """Submit until a worker (not one of ``but``) is ready; its pid."""
    deadline = time.monotonic() + 30
    while True:
        fut = pool.submit(b"x" * WORKER_FROM, b"{}")  # starts one; a bad tree: FAILED
        if fut is not None:
            with pytest.raises(Failed):  # a malformed tree, answered at once
                await fut
        pids = [w.pid for w in pool.workers if w.ready and w.pid not in but]
        if pids and pids[0] is not None:
            return pids[0]
        assert time.monotonic() < deadline, "no worker became ready"
        await asyncio.sleep(0.05)


def test_a_worker_answers_the_index_form_made_in_process() -> None:
    big = b"From: a@x.test\r\nSubject: big\r\n\r\n" + b"averylongword" * (INDEX_IN_HAND // 13)
    mails = [MIXED, message("plain", "just a few words\r\n" + FILL), big[:INDEX_IN_HAND]]

    async def run() -> None:
        pool = IndexPool(1)
        pid = await _ready(pool)
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH  # no wake-up preemption
        futures = []
        for data in mails:
            fut = pool.submit(data, facts_from_bytes(data).tree)
            assert fut is not None
            futures.append(fut)
        for data, fut in zip(mails, futures, strict=True):
            assert await fut == indexable(data, load_tree(facts_from_bytes(data)))
        assert "zebrafinch" in (await futures[0] or "")  # the comparison is not vacuous
        small = message("small", "too small to pay for the pipe\r\n")
        assert pool.submit(small, facts_from_bytes(small).tree) is None  # in process
        over = big + b"more"
        assert pool.submit(over, facts_from_bytes(over).tree) is None  # too big: in process
        await pool.close()
        assert pool.workers == [] and not _alive(pid)

    asyncio.run(run())


def _frame(body: bytes) -> bytes:
    return HEAD.pack(len(body)) + body


def _answer(proc: subprocess.Popen[bytes]) -> tuple[int, int, bytes]:
    assert proc.stdout is not None
    (size,) = HEAD.unpack(proc.stdout.read(HEAD.size))
    body = proc.stdout.read(size)
    req, status = ANSWER.unpack_from(body)
    return req, status, body[ANSWER.size :]


def test_the_worker_refuses_oversized_and_malformed_frames_and_goes_on() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-m", "correo.server.index_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        assert _answer(proc)[:2] == (0, READY)
        tree = facts_from_bytes(MIXED).tree
        oversized = REQUEST.pack(7, len(tree)) + tree + MIXED
        oversized += b"\0" * (MAX_REQUEST + 1 - len(oversized))
        bad_json = REQUEST.pack(8, 5) + b"{oops" + MIXED
        past_end = REQUEST.pack(9, 1 << 19) + b"{}"
        wrong_shape = REQUEST.pack(10, 2) + b"[]" + MIXED
        good = REQUEST.pack(11, len(tree)) + tree + MIXED
        for body in (oversized, bad_json, past_end, wrong_shape):
            proc.stdin.write(_frame(body))
        proc.stdin.write(_frame(good))
        proc.stdin.flush()
        for req in (7, 8, 9, 10):
            assert _answer(proc) == (req, FAILED, b"")
        req, status, text = _answer(proc)  # still serving, in step with the frames
        assert (req, status) == (11, OK)
        assert text.decode() == indexable(MIXED, load_tree(facts_from_bytes(MIXED)))
        huge = b"From: a@x.test\r\n\r\n" + b"w " * (INDEX_IN_HAND // 2 - 20)
        htree = facts_from_bytes(huge).tree
        assert len(huge) <= INDEX_IN_HAND
        proc.stdin.write(_frame(REQUEST.pack(12, len(htree)) + htree + huge))
        proc.stdin.flush()
        req, status, text = _answer(proc)
        assert (req, status) == (12, OK)
        assert text.decode() == indexable(huge, load_tree(facts_from_bytes(huge)))
        proc.stdin.close()  # end of file: the worker exits cleanly
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_worker_loses_no_text(tmp_path: Path) -> None:
    """Extractions in flight at a worker that dies are made in process; the next ones
    go to its replacement."""

    async def run() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        pool = IndexPool(1, respawn_after=0.0)
        indexer = TextIndexer(store, extractor=pool.submit)
        first = await _ready(pool)

        async def deliver(word: str) -> None:
            data = message(word, f"the {word} body\r\n{FILL}", to=A)
            spool = store.new_spool()
            spool.write(data)
            facts = facts_from_bytes(data)
            delivered = await store.deliver(
                spool, Envelope(sender="s@y.test"), [DeliveryTarget(A, "INBOX")], facts=facts
            )
            indexer.add([(A, "INBOX", uid) for _, uid in delivered.uids], (data, facts))

        os.kill(first, signal.SIGSTOP)  # the requests below wait in its pipe
        words = [f"okapi{i}zz" for i in range(5)]
        for word in words:
            await deliver(word)
        for _ in range(1000):  # until handed over (not extracted here)
            if len(pool.workers[0].pending) == len(words):
                break
            await asyncio.sleep(0.01)
        assert len(pool.workers[0].pending) == len(words)
        os.kill(first, signal.SIGKILL)
        await indexer.drain()
        second = await _ready(pool, frozenset({first}))
        before = pool.by_workers
        await deliver("gnuafter")
        await indexer.drain()
        assert pool.by_workers == before + 1  # the new worker made it
        await store._text_committer.submit(lambda conn: (None, []))  # earlier writes done
        for uid, word in enumerate([*words, "gnuafter"], 1):
            maybe, unindexed = await store.text_candidates(A, "INBOX", [word])
            assert (maybe, unindexed) == ({uid}, set()), word
        await pool.close()
        assert not _alive(first) and not _alive(second)
        await store.close()

    asyncio.run(run())


def test_a_mailbox_forgotten_while_its_text_is_at_the_worker_does_not_get_it(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        store = SqliteStore(tmp_path)
        await store.open()
        pool = IndexPool(1)
        indexer = TextIndexer(store, extractor=pool.submit)
        pid = await _ready(pool)
        uids = {}
        os.kill(pid, signal.SIGSTOP)  # the answers wait until the mailbox is gone
        try:
            for account, box in ((A, "Gone"), (B, "Kept")):  # forget() spans an account
                data = message(box, f"the {box}gnu body\r\n{FILL}", to=account)
                spool = store.new_spool()
                spool.write(data)
                facts = facts_from_bytes(data)
                delivered = await store.deliver(
                    spool, Envelope(sender="s@y.test"), [DeliveryTarget(account, box)], facts=facts
                )
                uids[box] = delivered.uids[0][1]
                indexer.add([(account, box, uids[box])], (data, facts))
            for _ in range(1000):
                if len(pool.workers[0].pending) == 2:
                    break
                await asyncio.sleep(0.01)
            assert len(pool.workers[0].pending) == 2
            indexer.forget(A, "Gone")
        finally:
            os.kill(pid, signal.SIGCONT)
        await indexer.drain()
        assert pool.by_workers == 2  # both answered by the worker
        await store._text_committer.submit(lambda conn: (None, []))  # earlier writes done
        assert await store.text_candidates(B, "Kept", ["keptgnu"]) == ({uids["Kept"]}, set())
        maybe, unindexed = await store.text_candidates(A, "Gone", ["gonegnu"])
        assert maybe == unindexed == {uids["Gone"]}  # unindexed: left to the backfill
        await pool.close()
        await store.close()

    asyncio.run(run())


def _worker_ready(server: Server, but: set[int]) -> int | None:
    pids = {int(p) for p in re.findall(r"event=index\.worker_ready pid=(\d+)", server.log())}
    fresh = pids - but
    return fresh.pop() if fresh else None


def test_appended_mail_is_indexed_by_the_servers_worker(start_server: object) -> None:
    server: Server = start_server({"index_workers": "1"})  # type: ignore[operator]
    box = unique("w")
    client = imap(server)
    assert client.create(box)[0] == "OK"
    n = 0

    def append(body: str) -> None:
        nonlocal n
        assert client.append(box, None, None, message(f"m{n}", body + FILL))[0] == "OK"
        n += 1

    def appended_until_a_worker(but: set[int]) -> int:
        deadline = time.monotonic() + 30
        while (pid := _worker_ready(server, but)) is None:
            assert time.monotonic() < deadline, server.log()[-2000:]
            append("while the worker starts\r\n")
            time.sleep(0.05)
        return pid

    def found(word: str) -> list[bytes]:
        client.select(box, readonly=True)
        typ, data = client.uid("SEARCH", "TEXT", word)
        assert typ == "OK"
        return list(data[0].split())

    first = appended_until_a_worker(set())
    append("a capybaraword here\r\n")
    assert found("CapybaraWord") == [str(n).encode()]
    os.kill(first, signal.SIGKILL)
    append("a tapirword as it dies\r\n")
    assert found("tapirword") == [str(n).encode()]
    second = appended_until_a_worker({first})
    append("a quollword for the new one\r\n")
    assert found("quollword") == [str(n).encode()]
    client.logout()
    assert server.stop() == 0
    (by_workers,) = re.findall(r"event=index\.pool_stopped by_workers=(\d+)", server.log())
    assert int(by_workers) >= 2  # the first worker's and the second's at least
    assert not _alive(first) and not _alive(second)
