"""Work whose cost the sender controls runs in worker threads, never on the event loop.

The Sieve run (body tests over nested MIME, :matches over a megabyte) and the vacation
policy checks (every address of a header of up to 256 KiB) are CPU work a stranger
steers; here the thread each runs in is recorded while LocalDelivery delivers.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from correo import sieve
from correo.delivery.local import LocalDelivery
from correo.store.sqlite import SqliteStore
from tests.unit.test_delivery_local import A, scenario, send

BIG_TO = ", ".join(f"user{i}@elsewhere.test" for i in range(10_000)) + ", " + A
MSG = (
    f"Return-Path: <dave@remote.test>\r\nFrom: dave@remote.test\r\nTo: {BIG_TO}\r\n"
    "Subject: hello\r\nMessage-ID: <big@remote.test>\r\n\r\nBody text.\r\n"
).encode()


def test_the_script_and_the_vacation_checks_run_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, bool] = {}
    real_run, real_allowed = sieve.run, sieve.vacation_allowed

    def run(*args: object, **kwargs: object) -> sieve.Result:
        seen["run on the loop"] = threading.current_thread() is threading.main_thread()
        return real_run(*args, **kwargs)  # type: ignore[arg-type]

    def allowed(*args: object) -> bool:
        seen["vacation check on the loop"] = threading.current_thread() is threading.main_thread()
        return real_allowed(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sieve, "run", run)
    monkeypatch.setattr(sieve, "vacation_allowed", allowed)

    async def body(mda: LocalDelivery, store: SqliteStore) -> None:
        await store.sieve_put(A, "away", 'require "vacation";\nvacation "Away.";\n')
        await store.sieve_activate(A, "away")
        report = await send(mda, store, [A], data=MSG)
        assert report.outcomes[0].ok

    scenario(tmp_path, body)
    assert seen == {"run on the loop": False, "vacation check on the loop": False}
