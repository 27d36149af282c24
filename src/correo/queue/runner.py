"""The queue runner: takes due messages from the store and delivers them.

Shape (like Postfix's qmgr + smtp):

* one main loop wakes on ``kick()`` (submission queued something), on a finished
  message, or every ``poll_interval`` seconds (the CLI changed the store), and starts
  a task per due message, up to a bound on messages in flight;
* a message task splits its due recipients: local domains go to the store (never out),
  the rest are grouped by destination (the domain, or its transport/smart host);
* each destination has a job queue and up to ``max_per_destination`` workers; a worker
  holds one connection and delivers job after job over it (connection reuse), all
  workers together bounded by ``max_connections``;
* a recipient's "delivered" outcome is committed as soon as the message task sees it,
  before anything else about that message, which keeps the window in which a crash
  could cause a duplicate (the peer said 250, our commit not yet durable) down to one
  group-commit flush;
* when every job of the message is done: one DSN for all recipients that failed in
  this attempt (RFC 3464), delay warnings, and the retry times (a pure schedule); and
  one success DSN for the recipients delivered in this attempt that asked for one with
  NOTIFY=SUCCESS and whose next hop did not take the duty over (RFC 3461 §6.2).
  It is sent after the delivery commit (the duplicate window comes first): a crash in
  between loses that notice, never a message.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from correo.config import Config
from correo.dane import DaneHost, dane_hosts
from correo.delivery.local import LocalDelivery
from correo.directory import Directory
from correo.dns.api import DnssecResolver, Resolver
from correo.log import Logger
from correo.message.headers import HeaderCollector, parse_fields
from correo.metrics import Metrics
from correo.queue.attempt import (
    ConnectFailed,
    OutboundSmtpSession,
    Outcome,
    RecipientResult,
    Timeouts,
)
from correo.queue.dsn import (
    RecipientReport,
)
from correo.queue.handoff import HandOff, _domain
from correo.queue.mtasts import MtaSts, PolicyCache
from correo.queue.routing import (
    NextHop,
    Route,
    RoutingTable,
    Target,
    TlsMode,
    apply_dane,
    apply_sts,
    handoff_domains,
    parse_next_hop,
    resolve_route,
    source_address,
)
from correo.queue.schedule import RetryPolicy, decide, should_warn
from correo.reports.tally import TallyBuffer
from correo.reports.tlsresults import NO_POLICY, TlsPolicy, TlsResults, TlsResultType
from correo.store.api import (
    MailStore,
    QueuedMessage,
    QueueRecipientState,
    RecipientUpdate,
    StoreError,
)

if TYPE_CHECKING:
    from correo.webhooks.events import WebhookEvents

__all__ = ["QueueRunner", "routing_table"]


def routing_table(config: Config) -> RoutingTable:
    """Transport map and smart host from ``[outbound]`` (docs/config.md)."""
    out = config.outbound
    transport: dict[str, NextHop] = {}
    for entry in out.transport:
        domain, _, spec = entry.strip().partition(" ")
        transport[domain.lower()] = parse_next_hop(spec, default_port=out.port)
    relay: NextHop | None = None
    if out.relayhost:
        hop = parse_next_hop(out.relayhost, default_port=587)
        password = None
        if out.relayhost_password_file:
            password = config.path(out.relayhost_password_file).read_text().strip()
        relay = NextHop(
            hop.protocol,
            hop.host,
            hop.port,
            hop.mx,
            _tls_mode(out.relayhost_tls),
            out.relayhost_tls_verify,
            out.relayhost_username or None,
            password,
        )
    return RoutingTable(transport, relay, port=out.port, tls=_tls_mode(out.tls))


def _tls_mode(text: str) -> TlsMode:
    return "required" if text == "required" else "none" if text == "none" else "opportunistic"


@dataclass(eq=False)
class _Job:
    message: QueuedMessage
    domain: str
    recipients: list[QueueRecipientState]
    done: asyncio.Future[list[RecipientResult]]


@dataclass(eq=False)
class _Destination:
    key: str
    jobs: deque[_Job] = field(default_factory=deque)
    workers: int = 0


class QueueRunner(HandOff):
    """Delivers the outbound queue; ``start()``/``stop()`` from the server."""

    def __init__(
        self,
        config: Config,
        store: MailStore,
        directory: Directory,
        log: Logger,
        resolver: Resolver,
        *,
        wakeup: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
        mda: LocalDelivery | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        out = config.outbound
        self.metrics = metrics if metrics is not None else Metrics()
        self.config = config
        self.store = store
        self.directory = directory
        self.log = log
        self.resolver = resolver
        self.wakeup = wakeup or asyncio.Event()
        self.mda = mda
        #: Webhooks (delivered, bounced, deferred): set by the server.
        self.events: WebhookEvents | None = None
        #: Told of each attempt's outcomes once recorded (JMAP EmailSubmission's
        #: deliveryStatus, RFC 8621 §7): set by the server.
        self.outcomes: (
            Callable[[QueuedMessage, Sequence[RecipientUpdate]], Awaitable[None]] | None
        ) = None
        self.clock = clock
        self.table = routing_table(config)
        #: Extra CAs for verified outbound TLS, resolved against the data folder once.
        self.ca_file = str(config.path(out.ca_file)) if out.ca_file else ""
        #: DANE for MX hosts (RFC 7672) when ``[dns] dnssec``: the AD bit is trusted.
        self.dane: DnssecResolver | None = None
        if config.dns.dnssec and isinstance(resolver, DnssecResolver):
            self.dane = resolver
        #: Recipient domains' MTA-STS policies (RFC 8461), cached in the data folder.
        self.sts: MtaSts | None = None
        if out.mta_sts:
            self.sts = MtaSts(
                resolver,
                PolicyCache(config.data_dir / "mta-sts.json", log),
                log,
                port=out.mta_sts_port,
                ca_file=self.ca_file,
                clock=clock,
            )
        #: Local domains whose delivery an external MDA does over LMTP.
        self.handoff = handoff_domains(out.transport)
        self.policy = RetryPolicy(
            initial=out.retry_initial,
            maximum=out.retry_max,
            give_up=out.give_up,
            delay_warning=out.delay_warning,
        )
        self.timeouts = Timeouts(
            connect=out.connect_timeout,
            greeting=out.greeting_timeout,
            command=out.command_timeout,
            data=out.data_timeout,
            data_end=out.data_end_timeout,
        )
        self.helo = out.helo_name or config.hostname
        self.max_inflight = max(100, 4 * out.max_connections)
        self._connections = asyncio.Semaphore(out.max_connections)
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._dests: dict[str, _Destination] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._stopping = False
        self._rng = random.Random()
        #: TLS results of outbound sessions for the TLS reports (RFC 8460); DANE and
        #: MTA-STS checks record theirs through ``tls_results.record_tls_result``.
        self.tls_results = TlsResults(TallyBuffer(store, log, clock=clock))
        if self.sts is not None:  # RFC 8460 §4.3.2.2: the policy could not be had
            self.sts.on_failure = lambda domain, kind, why: self.tls_results.record_tls_result(
                domain, kind, policy=TlsPolicy("sts"), additional_information=why
            )
        #: The TLS policy (RFC 8460 §4.4) each recipient domain's route was made under.
        self._tls_policies: dict[str, TlsPolicy] = {}
        self.delivered = 0  # counters for logs and benchmarks
        self.deferred = 0
        self.failed = 0

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> None:
        self._main = asyncio.create_task(self._loop(), name="queue-runner")

    def kick(self) -> None:
        """Something was queued: look now rather than at the next poll."""
        self.wakeup.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Take no new work; let transactions in progress end for ``grace`` seconds."""
        self._stopping = True
        if self._main is not None:
            self._main.cancel()
            await asyncio.gather(self._main, return_exceptions=True)
        if self._workers:
            await asyncio.wait(list(self._workers), timeout=grace)
        for task in [*self._workers, *self._inflight.values()]:
            task.cancel()
        pending = [*self._workers, *self._inflight.values()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        await self.tls_results.tallies.flush()

    async def _loop(self) -> None:
        poll = max(0.05, self.config.outbound.poll_interval)
        while not self._stopping:
            try:
                await self._fill()
                next_due = await self.store.queue_next_due()
            except (StoreError, OSError) as exc:
                self.log.error("queue.store_error", error=str(exc))
                next_due = None
            delay = poll
            if next_due is not None and next_due > self.clock():
                delay = min(poll, next_due - self.clock())
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), max(0.01, delay))
            except TimeoutError:
                pass

    async def _fill(self) -> None:
        room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        due = await self.store.queue_due(self.clock(), room, exclude=list(self._inflight))
        for message in due:
            if message.id in self._inflight or self._stopping:
                continue
            task = asyncio.create_task(self._run_message(message))
            self._inflight[message.id] = task
            task.add_done_callback(self._finished_callback(message.id))

    def _finished_callback(self, queue_id: int) -> Callable[[asyncio.Task[None]], None]:
        def finished(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(queue_id, None)
            self.wakeup.set()

        return finished

    # -- one message -------------------------------------------------------------------

    async def _run_message(self, message: QueuedMessage) -> None:
        try:
            await self._attempt(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad message must not stop the queue
            self.log.error("queue.message_crashed", queue_id=message.id, error=repr(exc))
        # Everything this attempt does (deliveries, notices, commits) is done: tests and
        # operators can tell "nothing more will come of it" from "not yet".
        self.log.debug("queue.attempt_done", queue_id=message.id)

    async def _attempt(self, message: QueuedMessage) -> None:
        now = self.clock()
        due = [r for r in message.recipients if r.status == "queued" and r.next_attempt <= now]
        if not due:
            return
        results: list[RecipientResult] = []
        received = await self._received_count(message.id)
        if received >= self.config.smtp.max_received_headers:
            # RFC 5321 §6.3: a message with too many trace fields is looping.
            text = f"mail loop: {received} Received: header fields"
            results = [RecipientResult(r.address, "failed", "5.4.6", text, "", False) for r in due]
            await self._conclude(message, due, results)
            return
        local: list[QueueRecipientState] = []
        groups: dict[str, list[QueueRecipientState]] = {}
        for r in due:
            domain = _domain(r.address)
            if self.directory.is_local_domain(domain) and domain not in self.handoff:
                local.append(r)
            else:
                groups.setdefault(domain, []).append(r)
        futures: list[asyncio.Future[list[RecipientResult]]] = []
        loop = asyncio.get_running_loop()
        for domain, rcpts in groups.items():
            fut: asyncio.Future[list[RecipientResult]] = loop.create_future()
            self._enqueue(_Job(message, domain, rcpts, fut))
            futures.append(fut)
        pending: list[asyncio.Future[list[RecipientResult]] | asyncio.Task[list[RecipientResult]]]
        pending = list(futures)
        if local:
            pending.append(asyncio.ensure_future(self._deliver_local(message, local)))
        state = {r.address: r for r in due}
        success: list[RecipientReport] = []
        returned: tuple[bytes, bool] | None = None
        if message.sender and any(_notify(r, "SUCCESS") for r in due):
            # Read what the notice returns now: the last "delivered" commit removes it.
            returned = await self._returned(message, success=True)
        for next_done in asyncio.as_completed(pending):
            batch = await next_done
            delivered = [x for x in batch if x.outcome == "delivered"]
            if delivered:
                # Commit at once: this is the duplicate window after the peer's 250.
                done = [
                    RecipientUpdate(x.address, "delivered", 0.0, x.diagnostic) for x in delivered
                ]
                if self.events is not None:  # webhooks: before the record, as DSNs are
                    await self.events.queue_outcome(message, done)
                await self.store.queue_update(message.id, done)
                await self._recorded(message, done)
                self.delivered += len(delivered)
                success += [
                    RecipientReport(
                        x.address,
                        x.success_action,
                        "2.0.0" if x.status[0] != "2" else x.status,
                        x.diagnostic,
                        x.remote_mta,
                        state[x.address].orcpt,
                        self.clock(),
                        diagnostic_type="smtp" if x.from_server else "X-correo",
                    )
                    for x in delivered
                    if x.success_action and _notify(state[x.address], "SUCCESS")
                ]
                for x in delivered:
                    age = self.clock() - message.created  # accepted to delivered
                    self.metrics.delivered(self._metrics_route(x.address), "delivered", 1, age)
                    self.log.info(
                        "queue.delivered",
                        queue_id=message.id,
                        rcpt=x.address,
                        relay=x.remote_mta or "local",
                        reply=x.diagnostic,
                    )
            results += [x for x in batch if x.outcome != "delivered"]
        if success and returned is not None:  # RFC 3461 §6.1: never to the null sender
            try:
                await self._send_dsn(message, success, returned)
            except (StoreError, OSError):
                pass  # logged by _send_dsn; the deliveries themselves are committed
        if results:
            await self._conclude(message, due, results)

    async def _conclude(
        self,
        message: QueuedMessage,
        due: Sequence[QueueRecipientState],
        results: Sequence[RecipientResult],
    ) -> None:
        """Retry times, give-ups, one failure DSN, one delay DSN; then commit."""
        now = self.clock()
        state = {r.address: r for r in due}
        updates: list[RecipientUpdate] = []
        failed: list[RecipientReport] = []
        delayed: list[RecipientReport] = []
        for x in results:
            r = state[x.address]
            report = RecipientReport(
                x.address,
                "failed",
                x.status,
                x.diagnostic,
                x.remote_mta,
                r.orcpt,
                now,
                diagnostic_type="smtp" if x.from_server else "X-correo",
            )
            if x.outcome == "failed":
                self.failed += 1
                self.metrics.delivered(self._metrics_route(x.address), "bounced")
                updates.append(RecipientUpdate(x.address, "failed", 0.0, x.diagnostic))
                if _notify(r, "FAILURE"):
                    failed.append(report)
                self.log.info(
                    "queue.bounced", queue_id=message.id, rcpt=x.address, reason=x.diagnostic
                )
                continue
            decision = decide(self.policy, message.created, r.attempts + 1, now)
            if decision.action == "give_up":
                self.failed += 1
                self.metrics.delivered(self._metrics_route(x.address), "bounced")
                text = f"{x.diagnostic} (gave up after {r.attempts + 1} attempts)"
                updates.append(RecipientUpdate(x.address, "failed", 0.0, text))
                status = x.status if x.status[0] in "45" else "4.4.7"
                if _notify(r, "FAILURE"):
                    failed.append(replace(report, status=status, diagnostic=text))
                self.log.info("queue.expired", queue_id=message.id, rcpt=x.address, reason=text)
                continue
            self.deferred += 1
            self.metrics.delivered(self._metrics_route(x.address), "deferred")
            warn = should_warn(self.policy, message.created, now, r.warned) and _notify(r, "DELAY")
            updates.append(
                RecipientUpdate(
                    x.address, "queued", decision.at, x.diagnostic, warned=True if warn else None
                )
            )
            if warn:
                delayed.append(
                    RecipientReport(
                        x.address,
                        "delayed",
                        x.status if x.status.startswith("4") else "4.0.0",
                        x.diagnostic,
                        x.remote_mta,
                        r.orcpt,
                        now,
                        message.created + self.policy.give_up,
                        "smtp" if x.from_server else "X-correo",
                    )
                )
            self.log.info(
                "queue.deferred",
                queue_id=message.id,
                rcpt=x.address,
                status=x.status,
                reason=x.diagnostic,
                retry_in=round(decision.at - now, 1),
            )
        # DSN first, then the commit: a crash in between repeats the DSN, never loses it.
        if message.sender:  # RFC 3461 §6.1 / RFC 5321 §4.5.5: never to the null sender
            for reports in (failed, delayed):
                if reports:
                    await self._send_dsn(message, reports)
        if updates:
            if self.events is not None:  # webhooks: before the record, as DSNs are
                await self.events.queue_outcome(message, updates)
            await self.store.queue_update(message.id, updates)
            await self._recorded(message, updates)

    async def _recorded(self, message: QueuedMessage, updates: Sequence[RecipientUpdate]) -> None:
        """Tell :attr:`outcomes` of recorded ``updates``; its failure costs no delivery."""
        if self.outcomes is None or not message.authenticated:
            return
        try:
            await self.outcomes(message, updates)
        except StoreError as exc:
            self.log.info("queue.outcome_not_shown", queue_id=message.id, error=str(exc))

    def _metrics_route(self, address: str) -> str:
        """The metrics' route: "mailbox" for a local domain delivered here, "remote" for
        every other (an MX, a smart host, an LMTP hand-off)."""
        domain = _domain(address)
        local = self.directory.is_local_domain(domain) and domain not in self.handoff
        return "mailbox" if local else "remote"

    async def _received_count(self, queue_id: int) -> int:
        collector = HeaderCollector()
        body = self.store.queue_read(queue_id)
        try:
            async for chunk in body:
                if collector.feed(chunk) is not None:
                    break
            else:
                collector.finish()
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        return sum(1 for name, _ in parse_fields(collector.header) if name == "received")

    # -- remote delivery ---------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        key = self.table.destination(job.domain)
        dest = self._dests.get(key)
        if dest is None:
            dest = self._dests[key] = _Destination(key)
        dest.jobs.append(job)
        limit = self.config.outbound.max_per_destination
        while dest.workers < limit and dest.workers < len(dest.jobs):
            dest.workers += 1
            task = asyncio.create_task(self._worker(dest))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _worker(self, dest: _Destination) -> None:
        session: OutboundSmtpSession | None = None
        route: Route | None = None
        per_connection = max(1, self.config.outbound.max_messages_per_connection)
        try:
            async with self._connections:
                while dest.jobs and not self._stopping:
                    job = dest.jobs.popleft()
                    try:
                        if route is None:
                            route = await self._route(job.domain)
                        if route.error is not None:
                            err = route.error
                            outcome: Outcome = "failed" if err.permanent else "deferred"
                            job.done.set_result(
                                [
                                    RecipientResult(
                                        r.address, outcome, err.status, err.text, "", False
                                    )
                                    for r in job.recipients
                                ]
                            )
                            if dest.key.count(":") == 1:
                                route = None  # MX routes are per domain; look up the next
                            continue
                        if session is not None and (
                            not session.usable or session.messages >= per_connection
                        ):
                            await session.close()
                            session = None
                        if session is None:
                            quiet = job.message.sender in self.tls_results.quiet_senders
                            session, error = await self._connect(route, "" if quiet else job.domain)
                            if session is None:
                                self._defer_all(dest, job, error)
                                break
                        body = self.store.queue_read(job.message.id)
                        job.done.set_result(
                            await session.deliver(job.message, job.recipients, body)
                        )
                    except asyncio.CancelledError:
                        if not job.done.done():
                            job.done.cancel()
                        raise
                    except Exception as exc:
                        self.log.error("queue.worker_error", destination=dest.key, error=repr(exc))
                        if not job.done.done():
                            job.done.set_result(
                                [
                                    RecipientResult(
                                        r.address,
                                        "deferred",
                                        "4.3.0",
                                        f"local error: {exc}",
                                        "",
                                        False,
                                    )
                                    for r in job.recipients
                                ]
                            )
                        if session is not None:
                            await session.close(quit=False)
                            session = None
        finally:
            dest.workers -= 1
            if session is not None:
                await session.close()
            if not dest.jobs and dest.workers == 0:
                self._dests.pop(dest.key, None)

    def _defer_all(self, dest: _Destination, job: _Job, error: ConnectFailed) -> None:
        """Every host failed: this job and the rest queued for the destination wait."""
        jobs = [job]
        while dest.jobs:
            jobs.append(dest.jobs.popleft())
        for j in jobs:
            if not j.done.done():
                j.done.set_result(
                    [
                        RecipientResult(r.address, "deferred", error.status, error.text, "", False)
                        for r in j.recipients
                    ]
                )

    async def _route(self, domain: str) -> Route:
        """Where to send mail for ``domain`` now: its MTA-STS policy when the route is the
        domain's own MX hosts (not a transport entry or the smart host), then DNS."""
        hop = self.table.next_hop(domain)
        policy = None
        if self.sts is not None and hop is self.table.default:
            policy = await self.sts.policy_for(domain)
        enforced = policy if policy is not None and policy.mode == "enforce" else None
        dane: dict[str, DaneHost] = {}
        if self.dane is not None and hop is self.table.default:
            dane = await dane_hosts(self.dane, domain, hop.port)
            for host in dane.values():
                if host.error:  # RFC 8460 §4.3.2: no validated TLSA answer
                    self.tls_results.record_tls_result(
                        domain,
                        TlsResultType.DNSSEC_INVALID,
                        policy=TlsPolicy("tlsa"),
                        receiving_mx_hostname=host.name,
                        additional_information=host.error,
                    )

        def allow(host: str) -> bool:
            # RFC 8461 §2: a host with DANE TLSA records is held to them, not to MTA-STS
            return host in dane or enforced is None or enforced.allows(host)

        if hop is self.table.default:
            if len(self._tls_policies) > 10_000:
                self._tls_policies.clear()
            self._tls_policies[domain] = (
                TlsPolicy(
                    "sts",
                    (
                        "version: STSv1",
                        f"mode: {policy.mode}",
                        *(f"mx: {m}" for m in policy.mx),
                        f"max_age: {policy.max_age}",
                    ),
                    policy.mx,
                )
                if policy is not None and policy.mode != "none"
                else NO_POLICY
            )
        route = await resolve_route(
            hop,
            domain,
            self.resolver,
            self._rng,
            allow=allow if enforced is not None else None,
        )
        ca_file = self.ca_file
        if ca_file and route.error is None:
            route = Route(
                tuple(replace(t, ca_file=ca_file) if t.verify else t for t in route.targets)
            )
        route = apply_dane(route, dane, domain)  # RFC 7672 §2.2
        if policy is None or route.error is not None:
            return route
        if policy.mode == "testing":
            stray = [
                t.hostname for t in route.targets if not t.dane and not policy.allows(t.hostname)
            ]
            if stray:
                self.log.warning(
                    "queue.mta_sts_testing",
                    domain=domain,
                    not_in_policy=",".join(dict.fromkeys(stray)),
                )
            return route
        return apply_sts(route, policy, ca_file)

    def _tls_report(
        self, domain: str, target: Target, result: str, session: OutboundSmtpSession | None = None
    ) -> None:
        """Count one session for the recipient domain's TLS report (RFC 8460 §4)."""
        policy = self._tls_policies.get(domain)
        if target.dane:  # RFC 8460 §4.4: the TLSA records the session was held to
            policy = TlsPolicy("tlsa", tuple(r.text() for r in target.tlsa))
        if not domain or policy is None or target.protocol != "smtp":
            return  # not the domain's own MX hosts (smart host, transport entry, LMTP)
        source = ""
        if session is not None:
            sock = session.writer.get_extra_info("sockname")
            source = str(sock[0]) if sock else ""
        self.tls_results.record_tls_result(
            domain,
            result,
            policy=policy,
            sending_ip=source,
            receiving_mx_hostname=target.hostname,
            receiving_ip=target.address,
        )

    async def _connect(
        self, route: Route, domain: str = ""
    ) -> tuple[OutboundSmtpSession | None, ConnectFailed]:
        error = ConnectFailed("no host to try")
        out = self.config.outbound
        for target in route.targets:
            source = None
            if target.protocol == "smtp":  # SPF and PTR name the address mail leaves from
                listeners = self.config.listen.get("smtp", ())
                source = source_address(target.address, out.source_ipv4, out.source_ipv6, listeners)
            for use_tls in (True, False):
                try:
                    session = await OutboundSmtpSession.open(
                        target,
                        helo=self.helo,
                        timeouts=self.timeouts,
                        log=self.log,
                        use_tls=use_tls,
                        source=source,
                    )
                except ConnectFailed as exc:
                    error = exc
                    if exc.tls_result:
                        self._tls_report(domain, target, exc.tls_result)
                    self.log.info("queue.connect_failed", host=target.hostname, error=exc.text)
                    # Opportunistic TLS that fails: Postfix-style plaintext retry.
                    if exc.tls_failed and target.tls == "opportunistic":
                        continue
                    break
                if session.tls:
                    self._tls_report(domain, target, TlsResultType.SUCCESS, session)
                elif use_tls and not session.starttls_offered:
                    self._tls_report(domain, target, TlsResultType.STARTTLS_NOT_SUPPORTED, session)
                self.log.debug(
                    "queue.connected",
                    host=target.hostname,
                    address=target.address,
                    port=target.port,
                    tls=session.tls or "none",
                )
                return session, error
        return None, error


def _notify(r: QueueRecipientState, what: str) -> bool:
    """RFC 3461 §4.1: absent NOTIFY means FAILURE (and DELAY at our discretion)."""
    if not r.notify:
        return what in ("FAILURE", "DELAY")
    values = {v.strip().upper() for v in r.notify.split(",")}
    return what in values
