"""The mail server process: opens the store and directory, listens, shuts down gracefully.

``correo serve`` runs everything in one asyncio loop.  On SIGTERM/SIGINT the listeners
close first (no new connections), idle sessions get a 421 / -ERR and are closed, and
sessions in the middle of a transaction are given ``grace`` seconds to finish, so
nothing acknowledged is lost and nothing half-received is acknowledged.  SIGHUP reads
the configuration and certificates again (``MailServer.reload``); under systemd
(``Type=notify``) readiness, reloads and the stop are reported with sd_notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from correo.certs.manager import CertificateManager, acme_names
from correo.config import Config, ConfigError, load_config
from correo.config_rules import serve_problems
from correo.delivery.local import LocalDelivery
from correo.delivery.quotawarn import QuotaWarner, default_limits
from correo.directory import Directory
from correo.directory.factory import open_directory
from correo.dns import DnsPythonResolver, Resolver
from correo.log import LEVELS, Logger, get_logger
from correo.metrics import Metrics, SessionCounts
from correo.queue.runner import QueueRunner
from correo.reports.inbound import ReportIntake
from correo.reports.outbound import ReportSender
from correo.reports.schedule import ReportScheduler
from correo.server.connection import Connection, capped, serve_plain, serve_tls
from correo.server.context import ServerContext
from correo.server.crossproto import HttpGuard
from correo.server.devmode import DevMode
from correo.server.gcpolicy import GcPolicy
from correo.server.imap import bodies as imap_bodies
from correo.server.imap.session import ImapSession
from correo.server.index_pool import IndexPool, attach, detach
from correo.server.lmtp_session import LmtpSession
from correo.server.managesieve_session import ManageSieveSession
from correo.server.pop3_session import Pop3Session
from correo.server.proxy import ProxyPolicy
from correo.server.reload import applied, restart_keys
from correo.server.sdnotify import notify, notify_reloading
from correo.server.signers import follow_signers, load_signers
from correo.server.smtp_session import SmtpSession
from correo.server.startup import DataFolderLock, StartupError, startup_problem
from correo.server.throttle import AuthThrottle, PeerLimit, ThrottlePolicy
from correo.server.tls import (
    TlsConfigError,
    bound_tls_read_buffer,
    replace_chain,
    server_context,
)
from correo.server.watchdog import LoopWatchdog
from correo.server.web_listener import WebListener
from correo.store.factory import open_store
from correo.web.acme_http import http_listener
from correo.web.app import https_listener
from correo.web.devapi import add_routes as dev_api_routes
from correo.web.jmap_submission import submission_outcome
from correo.web.monitoring import metrics_listener
from correo.web.webhook_files import add_routes as webhook_file_routes
from correo.webhooks.events import WebhookEvents
from correo.webhooks.sender import WebhookSender, listener_url

__all__ = ["MailServer", "StartupError", "run_server"]

#: service -> (protocol, implicit TLS)
_SERVICES: dict[str, tuple[str, bool]] = {
    "smtp": ("smtp", False),
    "submission": ("smtp", False),
    "submissions": ("smtp", True),
    "pop3": ("pop3", False),
    "pop3s": ("pop3", True),
    "imap": ("imap", False),
    "imaps": ("imap", True),
    "lmtp": ("lmtp", False),
    "sieve": ("sieve", False),
    "http": ("http", False),  # ACME http-01 and a redirect (aiohttp, like https)
    "https": ("https", True),
    "metrics": ("metrics", False),  # Prometheus, health, status: never on https
}


_TOO_MANY = {
    "smtp": b"421 4.7.0 Too many connections, try again later\r\n",
    "lmtp": b"421 4.7.0 Too many connections, try again later\r\n",
    "sieve": b'BYE (TRYLATER) "Too many connections"\r\n',
    "imap": b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
    "pop3": b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
}


_STREAM_LIMIT = 2**20  # StreamReader buffer of a mail connection


class Handler(Protocol):
    """A mail connection's coroutine; ``peer``: the client a load balancer named."""

    def __call__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: tuple[str, int] | None = None,
    ) -> Awaitable[None]: ...


class _Session(Protocol):
    shutdown_requested: bool

    @property
    def in_transaction(self) -> bool: ...

    async def run(self) -> None: ...


@dataclass
class _Live:
    session: _Session
    task: asyncio.Task[None]
    ip: str
    service: str = ""


class MailServer:
    """Every listener of ``config`` on one loop.

    ``resolver`` replaces the DNS of ``[dns]`` (tests, ``correo dev``: no network);
    ``directory`` an already open directory; ``dev`` turns on development mode.
    """

    def __init__(
        self,
        config: Config,
        log: Logger | None = None,
        *,
        resolver: Resolver | None = None,
        directory: Directory | None = None,
        dev: DevMode | None = None,
    ) -> None:
        self.config = config
        self._resolver = resolver
        self._dev = dev
        self.log = log or get_logger()
        self.store = open_store(config, recover=True)  # SQLite, or [store] url
        self.directory: Directory | None = directory
        self.ctx: ServerContext | None = None
        self._servers: list[asyncio.Server] = []
        self._live: dict[asyncio.Task[None], _Live] = {}
        self._per_ip = PeerLimit(config.limits.connections_per_ip, config.limits.ipv6_prefix)
        self.metrics = Metrics(process=True)
        self._on_tls = self.metrics.tls_version  # one bound method for every connection
        self.log.keep_recent(500)  # warnings and errors for correo status
        self.bound: dict[str, list[tuple[str, int]]] = {}
        self.runner: QueueRunner | None = None
        self.webhooks: WebhookSender | None = None  # [[webhooks]] calls
        self.certs: CertificateManager | None = None  # [acme] (docs/tls.md)
        self._web: list[WebListener] = []  # aiohttp listeners (https)
        self._lock = DataFolderLock(config.data_dir)  # one server per data folder
        self._binding: tuple[str, str, int] | None = None  # the listener being started
        self._signers: asyncio.Task[None] | None = None  # follows `correo dkim rotate`
        self._index_pool: IndexPool | None = None  # [limits] index_workers
        self.reports: ReportScheduler | None = None  # DMARC and TLS reports we send
        self._proxy: ProxyPolicy | None = None  # [server] proxy_protocol (server/proxy.py)

    async def start(self) -> None:
        config = self.config
        self._lock.acquire()
        tls: ssl.SSLContext | None = None
        cert, key = config.path(config.tls.certificate), config.path(config.tls.key)
        if cert.exists() and key.exists():
            tls = server_context(cert, key)
        bound_tls_read_buffer()  # asyncio's 256 KiB per TLS connection (server/tls.py)
        await self.store.open()
        self.store.observe_commits(self.metrics.commit)
        self._index_pool = attach(self.store, config.limits.index_workers, self.log)
        # [delivery] quota: the limits of accounts without their own; one warning mail at 90 %
        self.store.set_default_quota(
            *default_limits(config.delivery.quota, config.delivery.quota_messages)
        )
        self.store.observe_quota(QuotaWarner(self.store, config.hostname, self.log))
        if self.directory is None:  # DATA/directory.db, or the shared one of [store] url
            self.directory = await asyncio.to_thread(open_directory, config, watch=True)
        auth = config.auth
        counters = self.directory.login_counters()  # shared by every node, or None
        throttle = AuthThrottle(
            ThrottlePolicy(
                free_failures=auth.free_failures,
                base_delay=auth.base_delay,
                max_delay=auth.max_delay,
                lockout_failures=auth.lockout_failures,
                lockout_seconds=auth.lockout_seconds,
                ipv6_prefix=config.limits.ipv6_prefix,
            ),
            clock=time.monotonic if counters is None else time.time,  # one clock for all nodes
            counters=counters,
        )
        self.ctx = ServerContext(config, self.store, self.directory, tls, throttle, self.log)
        self.ctx.bound = self.bound  # filled below as the listeners start
        imap_bodies.configure(config.limits.body_cache)
        if config.acme.directory and tls is not None:  # the stored certificate, if any
            names = acme_names(config, self.directory.domains())
            self.certs = CertificateManager(
                config, self.store, self.log, [tls], names, metrics=self.metrics
            )
            await self.certs.load()
        self.ctx.dev = self._dev
        self.ctx.resolver = self._resolve()
        signed_at, self.ctx.dkim_signers = await asyncio.to_thread(load_signers, self.directory)
        self._signers = asyncio.create_task(  # `correo dkim rotate` on any node counts
            follow_signers(self.ctx, self.directory, self.log, signed_at), name="correo-dkim"
        )
        self.ctx.metrics = self.metrics
        self.ctx.listeners = {
            s: len(a) for s, a in config.listen.items() if s in _SERVICES and a
        }  # what /readyz waits for
        self.metrics.sessions = self._session_counts
        self.ctx.mda = LocalDelivery(  # Sieve, junk filter, vacation
            config,
            self.store,
            self.directory,
            self.log,
            resolver=self._resolve(),
            wakeup=self.ctx.queue_wakeup,
            metrics=self.metrics,
        )
        self.ctx.reports = ReportIntake(config, self.store, self.directory, self.log)
        # [[webhooks]] (docs/webhooks.md): queued by delivery and the queue runner,
        # read from self.config at each event, so a reload applies them
        self.webhooks = WebhookSender(
            lambda: self.config,
            self.store,
            self.log,
            base_url=lambda: listener_url(self.config.hostname, self.bound),
        )
        self.ctx.mda.events = WebhookEvents(
            lambda: self.config, self.store, wakeup=self.webhooks.wakeup
        )
        await self._start_lmtp_socket()
        handshake_timeout = capped(config.limits.command_timeout, 30.0)
        if config.proxy_protocol:  # load balancers name the client first (docs/cluster.md)
            self._proxy = ProxyPolicy(
                config.proxy_protocol,
                timeout=capped(config.limits.command_timeout, 10.0),
                log=self.log,
                backlog=config.limits.listen_backlog,
            )
        for service, addresses in config.listen.items():
            if service not in _SERVICES:
                continue  # configured for a later release of correo
            protocol, implicit = _SERVICES[service]
            if implicit and tls is None:
                raise RuntimeError(f"{service} needs a TLS certificate ({cert}) and key ({key})")
            for host, port in addresses:
                self._binding = (service, host, port)
                if protocol in ("https", "http", "metrics"):  # aiohttp
                    self.bound.setdefault(service, []).extend(
                        await self._web_listener(service).start(host, port)
                    )
                    continue
                handle = self._handler(service, protocol, implicit)
                if self._proxy is not None and self._proxied(service):
                    # behind a load balancer: the PROXY header, then TLS (server/proxy.py)
                    self.bound.setdefault(service, []).extend(
                        await self._proxy.listen(
                            host,
                            port,
                            _streams(handle),
                            service=service,
                            tls=tls if implicit else None,
                            handshake_timeout=handshake_timeout,
                        )
                    )
                    continue
                if implicit and tls is not None:  # reads through a gate (server/connection.py)
                    server = await serve_tls(
                        handle,
                        host,
                        port,
                        context=tls,
                        # a client that never completes it is dropped after command_timeout
                        handshake_timeout=handshake_timeout,
                        limit=_STREAM_LIMIT,
                        backlog=config.limits.listen_backlog,
                    )
                else:
                    server = await serve_plain(
                        handle,
                        host,
                        port,
                        limit=_STREAM_LIMIT,
                        backlog=config.limits.listen_backlog,
                    )
                self._servers.append(server)
                for sock in server.sockets:
                    name = sock.getsockname()
                    self.bound.setdefault(service, []).append((str(name[0]), int(name[1])))
        self._binding = None
        if self.certs is not None:
            self.certs.start()  # the CA validates over the listeners opened above
        if config.outbound.enabled:  # the outbound MTA (correo.queue.runner)
            resolver = self._resolve()
            self.runner = QueueRunner(
                config,
                self.store,
                self.directory,
                self.log,
                resolver,
                wakeup=self.ctx.queue_wakeup,
                mda=self.ctx.mda,
                metrics=self.metrics,
            )
            self.runner.events = self.ctx.mda.events
            store = self.store  # JMAP EmailSubmission deliveryStatus (RFC 8621 §7)
            self.runner.outcomes = lambda m, u: submission_outcome(store, m, u)
            self.runner.start()
        self._start_reports()
        self.webhooks.start()
        self._observe_dns()
        self.log.info(
            "server.ready",
            hostname=config.hostname,
            services=" ".join(f"{s}={h}:{p}" for s, addrs in self.bound.items() for h, p in addrs),
        )

    async def reload(self) -> None:
        """SIGHUP: read correo.toml and the certificate files again, keep every session.

        What can change live is applied; a key that needs a restart is named in the log
        and keeps its running value.  A configuration or certificate that does not load
        leaves everything as it was.
        """
        notify_reloading()  # sd_notify(3): systemctl reload waits for READY=1
        try:
            await self._reload()
        finally:
            notify("READY=1")

    async def _reload(self) -> None:
        assert self.ctx is not None
        old = self.config
        files = self.ctx.tls is not None and self.certs is None  # [acme] installs its own
        try:
            new, pair = await asyncio.to_thread(_read_config, old.data_dir, files)
        except (ConfigError, TlsConfigError, OSError, ValueError) as exc:
            self.log.error("server.reload_failed", error=str(exc))  # old config stays
            return
        try:
            if pair is not None and self.ctx.tls is not None:
                replace_chain(self.ctx.tls, pair[0], pair[1], new.data_dir / "tls")
        except (TlsConfigError, OSError) as exc:  # the files changed in between
            self.log.error("server.reload_failed", error=str(exc))
            return
        for name in restart_keys(old, new):
            self.log.warning("server.reload_needs_restart", key=name)
        new = applied(old, new)  # what needs a restart keeps its running value
        self.config = self.ctx.config = new  # sessions read their limits from ctx.config
        if self.ctx.mda is not None:
            self.ctx.mda.config = new  # [delivery]
        self.store.set_default_quota(
            *default_limits(new.delivery.quota, new.delivery.quota_messages)
        )
        imap_bodies.configure(new.limits.body_cache)  # [limits] body_cache
        self.log.info("server.reloaded")  # before [log] level, which may silence it
        self.log.threshold = LEVELS[new.log.level]

    def _proxied(self, service: str) -> bool:
        """Whether ``service``'s listeners read a PROXY header from trusted balancers."""
        return self._proxy is not None and service in self.config.proxy_protocol_services

    def _web_listener(self, service: str) -> WebListener:
        """The aiohttp listener of ``service``, made on first use (one per service)."""
        assert self.ctx is not None
        for listener in self._web:
            if listener.service == service:
                return listener
        if service == "metrics":  # plain HTTP: metrics, health, status
            return self._monitoring()
        if service == "http":
            answer = self.certs.http01 if self.certs is not None else None
            listener = http_listener(
                self.ctx, answer=answer, admit=self._admit, release=self._per_ip.release
            )
        else:
            routes = [dev_api_routes] if self._dev is not None else []  # correo dev's message API
            routes.append(webhook_file_routes)  # attachment links of webhooks
            listener = https_listener(
                self.ctx, admit=self._admit, release=self._per_ip.release, routes=routes
            )
        listener.admit = self._counted(service, listener.admit)  # metrics
        listener.backlog = self.config.limits.listen_backlog
        if self._proxied(service):
            listener.proxy = self._proxy
        self._web.append(listener)
        return listener

    def _monitoring(self) -> WebListener:
        """The ``metrics`` listener (correo.web.monitoring), made on first use."""
        assert self.ctx is not None
        listener = metrics_listener(self.ctx, admit=self._admit, release=self._per_ip.release)
        listener.admit = self._counted("metrics", listener.admit)
        listener.backlog = self.config.limits.listen_backlog
        if self._proxied("metrics"):
            listener.proxy = self._proxy
        self._web.append(listener)
        return listener

    def _counted(
        self, service: str, admit: Callable[[str], str | None]
    ) -> Callable[[str], str | None]:
        """``admit`` of an aiohttp listener, counting its connections (metrics)."""
        accepted = self.metrics.connections.labels(service)
        refused = self.metrics.connections_refused.labels(service)

        def counted(ip: str) -> str | None:
            slot = admit(ip)
            (refused if slot is None else accepted).inc()
            return slot

        return counted

    def _admit(self, ip: str) -> str | None:
        """A connection slot for ``ip`` (release it with ``_per_ip.release``), or None
        past ``[limits] connections`` in all or ``connections_per_ip`` per network."""
        open_now = len(self._live) + sum(w.open_connections for w in self._web)
        if open_now >= self.config.limits.connections:
            return None
        return self._per_ip.admit(ip)

    def _resolve(self) -> Resolver:
        dns = self.config.dns
        return self._resolver or DnsPythonResolver(dns.nameservers, dnssec=dns.dnssec)

    async def _start_lmtp_socket(self) -> None:
        """The LMTP unix socket (``[lmtp] socket``), mode 0660, for a local MTA."""
        if not self.config.lmtp.socket:
            return
        path = self.config.path(self.config.lmtp.socket)
        path.unlink(missing_ok=True)  # a stale socket from an earlier run
        handle = self._handler("lmtp", "lmtp", False, screen=False)
        server = await asyncio.start_unix_server(  # local MTAs only: no HTTP screen
            handle, str(path), limit=_STREAM_LIMIT, backlog=self.config.limits.listen_backlog
        )
        os.chmod(path, 0o660)
        self._servers.append(server)

    def _handler(
        self, service: str, protocol: str, implicit: bool, *, screen: bool = True
    ) -> Handler:
        async def handle(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            peer: tuple[str, int] | None = None,
        ) -> None:
            assert self.ctx is not None
            conn = Connection(reader, writer, tls=implicit, peer=peer)
            slot = self._admit(conn.peer_ip)
            if slot is None:
                self.log.warning("server.too_many_connections", service=service, peer=conn.peer)
                self.metrics.connections_refused.labels(service).inc()
                conn.write(_TOO_MANY[protocol])
                await conn.close(linger=1.0)
                return
            if screen:  # a web page's request to a mail port
                conn.guard = HttpGuard(tagged=protocol == "imap")
            self.metrics.connections.labels(service).inc()
            if implicit:
                self.metrics.tls_version(conn.tls_version)
            conn.on_tls = self._on_tls  # STARTTLS
            try:
                # served here, not in a coroutine of its own: one object less per session
                session = self._session(conn, service, protocol)
                task = asyncio.current_task()
                assert task is not None
                self._live[task] = _Live(session, task, conn.peer_ip, service)
                try:
                    await session.run()
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # a bug must cost one session, never the server
                    self.log.error(
                        "server.session_crashed", service=service, peer=conn.peer, error=repr(exc)
                    )
                    await conn.close()
                finally:
                    del self._live[task]
            finally:
                self._per_ip.release(slot)
                if conn.http_hangup:
                    self.log.warning("server.http_hangup", service=service, peer=conn.peer)

        return handle

    def _session(self, conn: Connection, service: str, protocol: str) -> _Session:
        assert self.ctx is not None
        session: _Session
        if protocol == "smtp":
            session = SmtpSession(self.ctx, conn, service)
        elif protocol == "imap":
            session = ImapSession(self.ctx, conn)
        elif protocol == "lmtp":
            session = LmtpSession(self.ctx, conn)
        elif protocol == "sieve":
            session = ManageSieveSession(self.ctx, conn)
        else:
            session = Pop3Session(self.ctx, conn)
        return session

    def _session_counts(self) -> SessionCounts:
        """Open connections per listener and IMAP sessions in IDLE, read at each scrape."""
        open_: dict[str, int] = {}
        idle = 0
        for live in self._live.values():
            open_[live.service] = open_.get(live.service, 0) + 1
            idle += isinstance(live.session, ImapSession) and live.session.idling
        for web in self._web:
            open_[web.service] = open_.get(web.service, 0) + web.open_connections
        return SessionCounts(open_, idle)

    def _observe_dns(self) -> None:
        """Count the lookups and cache hits of every resolver the server made."""
        assert self.ctx is not None
        mda, runner = self.ctx.mda, self.runner
        resolvers = [self.ctx.resolver, runner.resolver if runner is not None else None]
        if mda is not None and mda.junk is not None:
            resolvers.append(mda.junk.resolver)  # DNSBL
        for resolver in resolvers:
            if isinstance(resolver, DnsPythonResolver):
                resolver.metrics = self.metrics

    def _start_reports(self) -> None:
        """The daily DMARC and TLS reports (docs/reports.md): sent by whichever node
        claims the run; their own sessions and messages are never reported."""
        assert self.ctx is not None and self.ctx.reports is not None
        assert self.directory is not None
        sender = ReportSender(
            self.config,
            self.store,
            self.directory,
            self._resolve(),
            self.log,
            kick=self.ctx.queue_wakeup.set,
        )
        tallies = [self.ctx.reports.tallies]
        if self.runner is not None:
            self.runner.tls_results.quiet_senders |= sender.sender_addresses()
            tallies.append(self.runner.tls_results.tallies)
        self.reports = ReportScheduler(sender, tallies, self.log)
        self.reports.start()

    async def stop(self, grace: float = 30.0) -> None:
        """Close listeners, then sessions: idle ones now, busy ones after ``grace``."""
        notify("STOPPING=1")  # sd_notify(3)
        if self.ctx is not None:
            self.ctx.stopping = True  # /readyz answers 503 from now on
        if self.runner is not None:
            await self.runner.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.reports is not None:
            await self.reports.stop()
        if self.certs is not None:
            await self.certs.stop()
        self.log.info("server.stopping", sessions=len(self._live))
        for server in self._servers:
            server.close()
        for listener in self._web:
            listener.close()
        if self._proxy is not None:
            self._proxy.close()  # connections still sending their PROXY header
        for live in list(self._live.values()):
            live.session.shutdown_requested = True
            if not live.session.in_transaction:
                live.task.cancel()
        if self._live:
            _, pending = await asyncio.wait([lv.task for lv in self._live.values()], timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for listener in self._web:
            await listener.stop()
        await self._stop_signers()
        await detach(self.store, self._index_pool)
        await self.store.close()
        if self.directory is not None:
            await asyncio.to_thread(self.directory.close)
        self._lock.release()
        self.log.info("server.stopped")

    async def _stop_signers(self) -> None:
        if self._signers is not None:
            self._signers.cancel()
            await asyncio.gather(self._signers, return_exceptions=True)
            self._signers = None

    async def abandon(self, exc: Exception) -> StartupError | None:
        """After a failed start: close what it opened; the one-line reason, if known."""
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.stop()
        if self.certs is not None:
            with contextlib.suppress(Exception):
                await self.certs.stop()
        for server in self._servers:
            server.close()
        if self._proxy is not None:
            self._proxy.close()
        for listener in self._web:
            with contextlib.suppress(Exception):
                await listener.stop()
        await self._stop_signers()
        with contextlib.suppress(Exception):
            await detach(self.store, self._index_pool)
        with contextlib.suppress(Exception):
            await self.store.close()
        if self.directory is not None:
            await asyncio.to_thread(self.directory.close)
        self._lock.release()
        problem = startup_problem(exc, self._binding, self.config.data_dir / "correo.toml")
        return None if problem is None else StartupError(problem)


def _streams(handle: Handler) -> Callable[[tuple[str, int] | None], asyncio.Protocol]:
    """For a listener behind a load balancer: the stream protocol of a connection whose
    client the balancer named (``source``), as ``asyncio.start_server`` would make it."""

    def protocol(source: tuple[str, int] | None) -> asyncio.Protocol:
        return asyncio.StreamReaderProtocol(
            asyncio.StreamReader(limit=_STREAM_LIMIT),
            lambda reader, writer: handle(reader, writer, source),
        )

    return protocol


def _read_config(data_dir: Path, tls: bool) -> tuple[Config, tuple[bytes, bytes] | None]:
    """For a reload, off the loop: the new configuration, checked as ``serve`` checks it,
    and (``tls``) its certificate and key, after a trial load."""
    config = load_config(data_dir)
    problem = next(serve_problems(config), None)
    if problem is not None:
        raise ConfigError(problem)
    if not tls:
        return config, None
    cert, key = config.path(config.tls.certificate), config.path(config.tls.key)
    pair = cert.read_bytes(), key.read_bytes()
    server_context(cert, key)  # raises TlsConfigError; the install repeats it (fast)
    return config, pair


async def run_server(
    config: Config,
    on_ready: Callable[[MailServer], None] | None = None,
    *,
    server: MailServer | None = None,
) -> None:
    """Run until SIGTERM or SIGINT (``server``: one built with options of its own)."""
    server = server or MailServer(config)
    watchdog = LoopWatchdog(server.log)  # logs event=loop.blocked when a callback hogs the loop
    watchdog.start()
    # Before start(): a SIGTERM right after server.ready is logged (a service manager, a
    # test) must stop the server gracefully, not kill it with the default action.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP's default action ends the process: ignored until the server is up
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    try:
        await server.start()
    except Exception as exc:  # a port in use, a second server: one line, no traceback
        watchdog.stop()
        problem = await server.abandon(exc)
        if problem is None:
            raise
        raise problem from None
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        if not reloads:  # a second SIGHUP during a reload is folded into it
            task = asyncio.create_task(server.reload(), name="correo-reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    # full collections walk only what is new since the last one (server/gcpolicy.py)
    log = server.log
    gc_policy = GcPolicy(
        server.metrics.gc_pause,
        slow=lambda g, s, cpu: log.warning(
            "gc.pause", generation=g, ms=round(s * 1000), cpu_ms=round(cpu * 1000)
        ),
    )
    gc_policy.start()
    # before READY: the start-up heap goes to the permanent generation without a walk (a
    # full collection of it costs about 100 ms on the loop, which the watchdog reports);
    # its few garbage cycles wait for the hourly unfreeze
    gc.freeze()
    if on_ready is not None:
        on_ready(server)
    notify("READY=1")  # sd_notify(3): every listener is bound (Type=notify)
    await stop.wait()
    loop.remove_signal_handler(signal.SIGHUP)
    for task in list(reloads):
        await asyncio.gather(task, return_exceptions=True)
    await server.stop()
    gc_policy.stop()
    watchdog.stop()
