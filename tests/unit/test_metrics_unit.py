"""Pure pieces behind the metrics listener: the log ring, the status text, readiness."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace
from typing import Any

from correo.cli.status import render
from correo.log import Logger
from correo.metrics import Metrics
from correo.web.monitoring import readiness_problem, recent_errors


def test_log_ring_keeps_the_last_warnings_and_errors_only() -> None:
    log = Logger(io.StringIO(), "debug")
    log.info("ignored.before")
    log.keep_recent(3)
    log.debug("a.debug")
    log.info("an.info")
    for n in range(5):
        log.warning("a.warning", n=n)
    log.error("an.error", detail="x" * 5000)
    assert log.recent is not None
    events = [(level, event) for _, level, event, _ in log.recent]
    assert events == [("warning", "a.warning")] * 2 + [("error", "an.error")]
    assert len(log.recent[-1][3]) == 1000  # a line is cut, so the ring stays small


def test_recent_errors_counts_the_window_only() -> None:
    ring = [
        (100.0, "warning", "old.one", "line 0"),
        (5000.0, "warning", "auth.failed", "line 1"),
        (5001.0, "error", "smtp.store_failed", "line 2"),
        (5002.0, "warning", "auth.failed", "line 3"),
    ]
    found = recent_errors(ring, now=5010.0)
    assert found["count"] == 3
    assert found["by_event"] == {"warning auth.failed": 2, "error smtp.store_failed": 1}
    assert found["last"] == ["line 1", "line 2", "line 3"]


def test_mailbox_outcomes_by_reply_class() -> None:
    metrics = Metrics()
    metrics.mailbox_outcomes([250, 250, 451, 550], since=0.0)
    text = metrics.exposition().decode()
    assert 'correo_deliveries_total{outcome="delivered",route="mailbox"} 2.0' in text
    assert 'correo_deliveries_total{outcome="deferred",route="mailbox"} 1.0' in text
    assert 'correo_deliveries_total{outcome="refused",route="mailbox"} 1.0' in text
    assert 'correo_delivery_seconds_count{route="mailbox"} 1.0' in text  # one message


class _Store:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    async def queue_summary(self, cap: int = 1) -> object:
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "fail":
            raise OSError("database is locked")
        return object()


def _ctx(store: str = "ok", **changes: Any) -> Any:
    config = SimpleNamespace(lmtp=SimpleNamespace(socket=""))
    ctx = SimpleNamespace(
        stopping=False,
        listeners={"smtp": 1, "imap": 2},
        bound={"smtp": [("127.0.0.1", 25)], "imap": [("127.0.0.1", 143), ("::1", 143)]},
        config=config,
        store=_Store(store),
    )
    for key, value in changes.items():
        setattr(ctx, key, value)
    return ctx


def test_readiness() -> None:
    assert asyncio.run(readiness_problem(_ctx())) is None
    assert asyncio.run(readiness_problem(_ctx(stopping=True))) == "shutting down"
    half = {"smtp": [("127.0.0.1", 25)], "imap": [("127.0.0.1", 143)]}
    assert asyncio.run(readiness_problem(_ctx(bound=half))) == "listener imap is not bound"
    failed = asyncio.run(readiness_problem(_ctx("fail")))
    assert failed == "the store failed: database is locked"
    hung = asyncio.run(readiness_problem(_ctx("hang")))
    assert hung == "the store did not answer within 2 s"


def test_status_text_flags_a_certificate_near_expiry() -> None:
    status: dict[str, Any] = {
        "version": "1.2.3",
        "hostname": "mail.example.org",
        "pid": 42,
        "started": 0,
        "uptime": 3 * 86400 + 7200,
        "ready": False,
        "problem": "listener smtp is not bound",
        "listeners": {"imaps": ["0.0.0.0:993"]},
        "sessions": {"imaps": 3},
        "imap_idle": 2,
        "queue": {"messages": 4, "recipients": 6, "oldest_seconds": 5400},
        "certificates": [
            {
                "file": "/d/tls/cert.pem",
                "subject": "mail.example.org",
                "not_after": "2030-01-01T00:00:00Z",
                "days_left": 5,
                "self_signed": False,
            },
            {"file": "/d/tls/other.pem", "error": "no such file"},
        ],
        "errors": {"window_seconds": 3600, "count": 0, "by_event": {}, "last": []},
    }
    text = render(status)
    assert text.splitlines()[0] == (
        "correo 1.2.3 on mail.example.org (pid 42): NOT READY: listener smtp is not bound"
    )
    assert "Up 3 d 2 h, since 1970-01-01 00:00:00Z" in text
    assert "  imaps        0.0.0.0:993  (3 connected)" in text
    assert "IMAP sessions in IDLE: 2" in text
    assert "Queue: 4 messages, 6 recipients waiting, oldest 1 h 30 min" in text
    assert "expires 2030-01-01T00:00:00Z (5 days)  RENEW SOON" in text
    assert "/d/tls/other.pem: cannot be read: no such file" in text
    assert "Warnings and errors in the last hour: 0" in text
