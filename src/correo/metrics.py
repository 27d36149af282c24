"""Prometheus metrics: every counter, gauge and histogram correo exports, in one place.

Each server owns one :class:`Metrics` with a private registry (never the library's global
one), so several servers in one process, and tests, keep their numbers apart. Like
:mod:`correo.log`, this module is a cross-cutting service that imports nothing else of
correo: the services band (sessions, queue, delivery, DNS) is handed the object and
counts with one call at the place where a thing happens. Hot paths use children bound
once (``commands.labels("smtp")`` per session, not per command): an increment then
costs about 0.4 µs.

What is cheaper to read than to count (open connections, IDLE sessions, the queue)
is read when Prometheus scrapes: see :meth:`Metrics.refresh`. docs/operations.md lists
every metric with its meaning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = [
    "ACME_OUTCOMES",
    "CONTENT_TYPE",
    "Metrics",
    "SessionCounts",
    "cipher_class",
    "reply_class",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Accept to mailbox is usually milliseconds; accept to a remote 250 may take retries.
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: A collection past 0.1 s is a loop stall (the watchdog's threshold).
_GC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)

#: The reply classes each protocol is counted in (``correo_replies_total``).
REPLY_CLASSES: Mapping[str, tuple[str, ...]] = {
    "smtp": ("2xx", "3xx", "4xx", "5xx"),
    "lmtp": ("2xx", "3xx", "4xx", "5xx"),
    "imap": ("OK", "NO", "BAD"),
    "pop3": ("+OK", "-ERR"),
    "sieve": ("OK", "NO", "BYE"),
}


#: How an ACME order can end (correo_acme_orders_total).
ACME_OUTCOMES = ("issued", "renewed", "failed")


def cipher_class(name: str | None) -> str:
    """A cipher suite's bulk cipher family, a label of few values: the suite names
    themselves (key exchange, signature, hash) would multiply the series."""
    upper = (name or "").upper()
    if not upper:
        return "unknown"
    if "CHACHA20" in upper:
        return "chacha20-poly1305"
    if "GCM" in upper:
        return "aes-gcm"
    if "CCM" in upper:
        return "aes-ccm"
    if "AES" in upper:
        return "aes-cbc"
    return "other"


def reply_class(code: int) -> str:
    """``"2xx"`` for 250: the class an SMTP or LMTP reply code is counted in."""
    return f"{code // 100}xx"


@dataclass(frozen=True, slots=True)
class SessionCounts:
    """What the server reports about its live sessions at scrape time."""

    open: Mapping[str, int]  # connections open per service
    idle: int  # IMAP sessions in IDLE (RFC 2177)


class Metrics:
    """The metric objects of one server, registered in their own registry."""

    def __init__(self, *, process: bool = False) -> None:
        reg = self.registry = CollectorRegistry(auto_describe=True)
        if process:  # CPU, memory, open files of this process (Linux /proc)
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)
        self.started = time.time()
        Gauge("correo_start_time_seconds", "When the server started (Unix time)", registry=reg).set(
            self.started
        )

        # -- connections and commands
        self.connections = Counter(
            "correo_connections", "Connections accepted, per listener", ["service"], registry=reg
        )
        self.connections_refused = Counter(
            "correo_connections_refused",
            "Connections turned away at the connection limits, per listener",
            ["service"],
            registry=reg,
        )
        self.connections_open = Gauge(
            "correo_connections_open",
            "Connections open now, per listener",
            ["service"],
            registry=reg,
        )
        self.commands = Counter(
            "correo_commands", "Commands received, per protocol", ["protocol"], registry=reg
        )
        self.replies = Counter(
            "correo_replies",
            "Replies sent, per protocol and class (2xx/3xx/4xx/5xx, OK/NO/BAD, +OK/-ERR)",
            ["protocol", "class"],
            registry=reg,
        )
        self.tls = Counter(
            "correo_tls_handshakes",
            "TLS handshakes completed (implicit TLS and STARTTLS), per protocol version",
            ["version"],
            registry=reg,
        )
        self.https_tls = Counter(
            "correo_https_tls_connections",
            "Connections on the https listener, per TLS version and cipher class",
            ["version", "cipher"],
            registry=reg,
        )
        self.acme = Counter(
            "correo_acme_orders",
            "ACME orders: issued (a first certificate), renewed, failed",
            ["outcome"],
            registry=reg,
        )
        for outcome in ACME_OUTCOMES:  # every outcome is a series from the start
            self.acme.labels(outcome)
        self.imap_idle = Gauge(
            "correo_imap_idle_sessions", "IMAP sessions in IDLE now", registry=reg
        )

        # -- authentication
        self.auth = Counter(
            "correo_auth",
            "Password checks: ok, failed (wrong name or password), locked (refused unchecked)",
            ["result"],
            registry=reg,
        )

        # -- mail flow
        self.accepted = Counter(
            "correo_messages_accepted",
            "Messages acknowledged (250 after the data), per listener",
            ["service"],
            registry=reg,
        )
        self.deliveries = Counter(
            "correo_deliveries",
            "Recipients delivered, bounced or deferred; route mailbox or remote",
            ["route", "outcome"],
            registry=reg,
        )
        self.delivery_seconds = Histogram(
            "correo_delivery_seconds",
            "Accept to mailbox, and accept to the remote server's 250",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.junk = Counter(
            "correo_junk_verdicts", "Junk filter verdicts, per recipient", ["verdict"], registry=reg
        )
        self.queue_messages = Gauge(
            "correo_queue_messages", "Messages in the outbound queue", registry=reg
        )
        self.queue_recipients = Gauge(
            "correo_queue_recipients", "Recipients waiting in the outbound queue", registry=reg
        )
        self.queue_oldest = Gauge(
            "correo_queue_oldest_seconds", "Age of the oldest queued message", registry=reg
        )

        # -- store and DNS
        self.commit_seconds = Histogram(
            "correo_store_commit_seconds",
            "Time of one group commit of the store (transaction and fsync)",
            buckets=_COMMIT_BUCKETS,
            registry=reg,
        )
        self.commit_batch = Histogram(
            "correo_store_commit_batch_size",
            "Writes per group commit",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        # -- the cycle collector, which pauses the event loop (server/gcpolicy.py)
        gc_pause = Histogram(
            "correo_gc_pause_seconds",
            "Time of one collection of the cycle collector, per generation",
            ["generation"],
            buckets=_GC_BUCKETS,
            registry=reg,
        )
        self._gc_pause = tuple(gc_pause.labels(str(g)) for g in range(3))
        self.dns_lookups = Counter(
            "correo_dns_lookups", "DNS lookups asked for, per record type", ["type"], registry=reg
        )
        self.dns_cache_hits = Counter(
            "correo_dns_cache_hits", "DNS lookups answered from the cache", registry=reg
        )

        self._junk = {True: self.junk.labels("spam"), False: self.junk.labels("ham")}
        self._auth = {r: self.auth.labels(r) for r in ("ok", "failed", "locked")}
        #: Set by the server: read at every scrape (see refresh).
        self.sessions: Callable[[], SessionCounts] = lambda: SessionCounts({}, 0)
        #: (monotonic time, the store's queue summary) of the last scrape, reused briefly.
        self.queue_cache: tuple[float, object] | None = None
        self._by_status: dict[str, Mapping[bytes, Counter]] = {}

    # -- one-line instrumentation --------------------------------------------------------

    def reply_counters(self, protocol: str) -> dict[str, Counter]:
        """Children of ``correo_replies_total`` for ``protocol``, by class: a session
        binds them once and increments ``counters[cls]`` per reply."""
        return {c: self.replies.labels(protocol, c) for c in REPLY_CLASSES[protocol]}

    def status_counters(self, protocol: str) -> Mapping[bytes, Counter]:
        """The children by reply class as the wire spells it (``b"OK"``), one mapping
        shared by every session of ``protocol``, not one dict each."""
        found = self._by_status.get(protocol)
        if found is None:
            counters = self.reply_counters(protocol).items()
            found = self._by_status[protocol] = {c.encode(): n for c, n in counters}
        return found

    def code_counters(self, protocol: str) -> dict[int, Counter]:
        """SMTP and LMTP: the children by the reply code's first digit (2 for 250)."""
        return {int(c[0]): counter for c, counter in self.reply_counters(protocol).items()}

    def mailbox_outcomes(self, codes: Iterable[int], *, since: float) -> None:
        """Local recipients of a message just accepted: delivered (2xx), deferred (4xx,
        LMTP) or refused (5xx, a Sieve reject); ``since``: monotonic time the delivery
        began, at the end of the data."""
        seconds = time.monotonic() - since
        delivered = 0
        for code in codes:
            outcome = "delivered" if code < 300 else "deferred" if code < 500 else "refused"
            delivered += outcome == "delivered"
            if outcome != "delivered":
                self.deliveries.labels("mailbox", outcome).inc()
        self.delivered("mailbox", "delivered", delivered, seconds if delivered else None)

    def auth_result(self, ok: bool, locked: bool = False) -> None:
        self._auth["locked" if locked else "ok" if ok else "failed"].inc()

    def junk_verdict(self, spam: bool) -> None:
        self._junk[spam].inc()

    def delivered(
        self, route: str, outcome: str, count: int = 1, seconds: float | None = None
    ) -> None:
        """``count`` recipients reached ``outcome``; ``seconds`` since acceptance, if known."""
        if count:
            self.deliveries.labels(route, outcome).inc(count)
        if seconds is not None and outcome == "delivered":
            self.delivery_seconds.labels(route).observe(max(0.0, seconds))

    def commit(self, seconds: float, writes: int) -> None:
        """A store group commit: called on the store's writer thread (the library locks)."""
        self.commit_seconds.observe(seconds)
        self.commit_batch.observe(writes)

    def gc_pause(self, generation: int, seconds: float) -> None:
        """One collection of ``generation`` (0-2) took ``seconds``: called on the loop by
        server/gcpolicy.py, never from inside the collector (this takes the metric's lock)."""
        self._gc_pause[min(max(generation, 0), 2)].observe(seconds)

    def tls_version(self, version: str | None) -> None:
        self.tls.labels(version or "unknown").inc()

    def https_connection(self, version: str | None, cipher: str | None) -> None:
        """A TLS connection admitted on the https listener (its handshake is done)."""
        self.https_tls.labels(version or "unknown", cipher_class(cipher)).inc()

    def acme_outcome(self, outcome: str) -> None:
        """One ACME order ended: ``issued``, ``renewed`` or ``failed``."""
        self.acme.labels(outcome).inc()

    # -- scrape time ---------------------------------------------------------------------

    def refresh(
        self, queue: tuple[int, int, float | None] | None, services: tuple[str, ...]
    ) -> None:
        """Set what is read rather than counted: sessions now, and the queue summary
        (messages, recipients, oldest creation time) when the store answered."""
        counts = self.sessions()
        for service in services:
            self.connections_open.labels(service).set(counts.open.get(service, 0))
        self.imap_idle.set(counts.idle)
        if queue is not None:
            messages, recipients, oldest = queue
            self.queue_messages.set(messages)
            self.queue_recipients.set(recipients)
            self.queue_oldest.set(0.0 if oldest is None else max(0.0, time.time() - oldest))

    def exposition(self) -> bytes:
        """The text format Prometheus reads (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
