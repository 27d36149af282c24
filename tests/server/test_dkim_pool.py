"""DKIM signing in worker processes: the signatures verify, a dead or stuck worker is
replaced without failing a message, and shutdown leaves no process behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import smtplib
import time

import dkim
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from correo.directory.dkim_files import FileKeyStore
from correo.mailauth.keys import dns_record, load_domain_keys
from correo.mailauth.signing import DkimSigner, SigningKey
from correo.server.dkim_pool import SignPool
from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.helpers import mailbox, message

pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "alice@example.test", "bob@example.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _alive(pid: int) -> bool:
    """Running or not yet reaped (a zombie counts: it was left behind)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return bool(f.read())
    except FileNotFoundError:
        return False


def _verify(data: bytes, signatures: list[bytes]) -> None:
    digest = hashlib.sha256(data).digest()
    ED_KEY.public_key().verify(signatures[0], digest)  # RFC 8463 §3
    RSA_KEY.public_key().verify(signatures[1], data, padding.PKCS1v15(), hashes.SHA256())


async def _ready(pool: SignPool, but: frozenset[int | None] = frozenset()) -> int:
    """Ask until a worker (not one of ``but``) is ready; its pid."""
    deadline = time.monotonic() + 30
    while True:
        await pool.sign([(ED_KEY, bytes(32)), (RSA_KEY, bytes(32))])  # starts one if needed
        ready = [w.pid for w in pool.workers if w.ready and w.pid not in but]
        if ready and ready[0] is not None:
            return ready[0]
        assert time.monotonic() < deadline, "no worker became ready"
        await asyncio.sleep(0.05)


def test_the_pool_signs_replaces_workers_and_stops_them_all() -> None:
    async def run() -> None:
        pool = SignPool(1, respawn_after=0.0, timeout=1.0)
        first = await _ready(pool)
        assert os.sched_getscheduler(first) == os.SCHED_BATCH  # no wake-up preemption
        before = pool.signed_by_workers
        for i in range(20):
            data = b"header data %d" % i
            jobs = [
                (ED_KEY, hashlib.sha256(data).digest()),
                (RSA_KEY, hashlib.sha256(data).digest()),
            ]
            _verify(data, await pool.sign(jobs))
        assert pool.signed_by_workers == before + 20  # all by the worker, none here

        os.kill(first, signal.SIGKILL)  # a request in flight falls back, the message is signed
        data = b"while the worker dies"
        jobs = [(ED_KEY, hashlib.sha256(data).digest()), (RSA_KEY, hashlib.sha256(data).digest())]
        _verify(data, await pool.sign(jobs))
        second = await _ready(pool, frozenset({first}))
        assert second != first and not _alive(first)
        done = pool.signed_by_workers
        _verify(data, await pool.sign(jobs))
        assert pool.signed_by_workers == done + 1

        os.kill(second, signal.SIGSTOP)  # stuck: no answer within the timeout
        started = time.monotonic()
        _verify(data, await pool.sign(jobs))  # signed here after the timeout
        assert 0.9 <= time.monotonic() - started < 10
        third = await _ready(pool, frozenset({first, second}))
        assert third not in (first, second)

        await pool.close()
        assert pool.workers == []
        for pid in (first, second, third):
            assert not _alive(pid), pid

    asyncio.run(run())


def test_fields_signed_by_the_pool_equal_those_signed_in_process() -> None:
    """Both algorithms are deterministic: the same message, time and keys give the same
    bytes whichever process made the private-key operations."""
    keys = [SigningKey("example.test", "ed", ED_KEY), SigningKey("example.test", "rsa", RSA_KEY)]
    here = DkimSigner(keys)
    msg = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: s\r\n\r\nbody\r\n"

    async def run() -> None:
        pool = SignPool(1)
        await _ready(pool)
        stream = here.using(pool.sign).stream()
        stream.feed(msg)
        before = pool.signed_by_workers
        assert await stream.finish_async(now=1_700_000_000) == here.sign(msg, now=1_700_000_000)
        assert pool.signed_by_workers == before + 1
        await pool.close()

    asyncio.run(run())


def test_ed25519_alone_stays_in_process() -> None:
    async def run() -> None:
        pool = SignPool(1)
        digest = hashlib.sha256(b"x").digest()
        (signature,) = await pool.sign([(ED_KEY, digest)])
        ED_KEY.public_key().verify(signature, digest)
        assert pool.workers == [] and pool.signed_here == 0  # nothing started for it
        await pool.close()

    asyncio.run(run())


def _submit(server: Server, subject: str) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.ports["submissions"], context=client_tls()) as smtp:
        smtp.login(ALICE, PASSWORDS[ALICE])
        smtp.sendmail(ALICE, [BOB], message(ALICE, BOB, subject))


def _worker_ready(server: Server, but: set[int]) -> int | None:
    pids = {int(p) for p in re.findall(r"event=dkim\.worker_ready pid=(\d+)", server.log())}
    fresh = pids - but
    return fresh.pop() if fresh else None


def test_submitted_mail_signed_by_a_worker_verifies(start_server: object) -> None:
    server: Server = start_server()  # type: ignore[operator]
    records = {
        f"{k.selector}._domainkey.example.test.": dns_record(k.key).encode()
        for k in load_domain_keys(FileKeyStore(server.data), "example.test")
    }

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records[name.decode()]

    def signed_until_a_worker(but: set[int]) -> int:
        """Submit until a worker other than ``but`` is ready (the first messages of a
        start are signed in process while it starts); every message must verify."""
        deadline = time.monotonic() + 30
        while (pid := _worker_ready(server, but)) is None:
            assert time.monotonic() < deadline, server.log()[-2000:]
            _submit(server, "while the worker starts")
            time.sleep(0.1)
        return pid

    first = signed_until_a_worker(set())
    for i in range(3):
        _submit(server, f"by the worker {i}")
    os.kill(first, signal.SIGKILL)
    _submit(server, "as the worker dies")
    time.sleep(1.1)  # a new worker starts at most once a second
    second = signed_until_a_worker({first})
    _submit(server, "by the new worker")
    stored = mailbox(server.ports["pop3s"], BOB)
    assert len(stored) >= 6
    for raw in stored:
        signed = raw.split(b"\r\n", 1)[1]  # without Return-Path, as it would be queued
        assert signed.count(b"DKIM-Signature:") == 2
        checker = dkim.DKIM(signed)
        for idx in (0, 1):  # ed25519-sha256 and rsa-sha256
            assert checker.verify(idx=idx, dnsfunc=dnsfunc), signed[:1500]
    assert server.stop() == 0
    (line,) = re.findall(
        r"event=dkim\.pool_stopped by_workers=(\d+) in_process=(\d+)", server.log()
    )
    assert int(line[0]) >= 4  # three plus the one after the restart (and any before)
    assert not _alive(first) and not _alive(second)
