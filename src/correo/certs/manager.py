"""Keeps an ACME certificate in service: obtained at start, renewed, shared through the store.

The certificate is obtained when none is stored (or the names changed), renewed at two
thirds of its lifetime, and retried with a doubling delay after a failure, while the
certificate already in service keeps serving.  Each one obtained goes into the store
first (every node of a cluster reads it there), then into every live TLS context with
``load_cert_chain`` on the same context object: new handshakes get it, established
sessions go on.  Until the first arrives the ``[tls]`` certificate (self-signed after
``correo init``) serves.

The ACME protocol runs in a daemon thread (:mod:`correo.certs.flow`, synchronous);
challenge answers are handed to the event loop, where the listeners read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from correo.certs import flow
from correo.certs.validation import validation_certificate
from correo.config import Config
from correo.log import Logger
from correo.metrics import Metrics
from correo.server.tls import TlsConfigError, replace_chain
from correo.server.tls_alpn import ACME_TLS_ALPN, AlpnChallenges
from correo.store.api import MailStore, TlsCertificate

__all__ = ["CertificateManager", "acme_names", "renewal_time"]

T = TypeVar("T")

#: First retry after a failed order; doubled per failure up to _RETRY_MAX.  Let's
#: Encrypt allows 5 failed validations per name and hour: this stays under it.
RETRY_FIRST = 300.0
RETRY_MAX = 6 * 3600.0
#: The store is read this often at most apart (a certificate another node obtained).
CHECK_INTERVAL = 3600.0
#: The whole order, in its thread, must end within this (the thread is then abandoned).
ORDER_BUDGET = flow.ISSUE_DEADLINE + 6 * flow.REQUEST_TIMEOUT


def acme_names(config: Config, domains: list[str]) -> tuple[str, ...]:
    """``[acme] names``, or the hostname and mta-sts./autoconfig. of every local domain."""
    if config.acme.names:
        wanted = list(config.acme.names)
    else:
        wanted = [config.hostname]
        for domain in domains:
            wanted += [f"mta-sts.{domain}", f"autoconfig.{domain}"]
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in wanted))


def renewal_time(chain: bytes) -> tuple[float, float]:
    """(renew at, expiry) of a chain's first certificate: two thirds into its lifetime."""
    leaf = x509.load_pem_x509_certificates(chain)[0]
    start = leaf.not_valid_before_utc.timestamp()
    end = leaf.not_valid_after_utc.timestamp()
    return start + (end - start) * 2 / 3, end


class CertificateManager:
    """One certificate for ``names``, kept in ``store`` and served by ``contexts``."""

    def __init__(
        self,
        config: Config,
        store: MailStore,
        log: Logger,
        contexts: list[ssl.SSLContext],
        names: tuple[str, ...],
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics  # orders issued, renewed, failed
        self.store = store
        self.log = log
        self.contexts = contexts
        self.names = names
        self.key = names[0]
        self.scratch = config.data_dir / "tls"
        ca = config.acme.ca_file
        self.order_ca: Path | None = config.path(ca) if ca else None
        self.alpn = AlpnChallenges()
        if config.acme.challenge == "tls-alpn-01":
            self.alpn.attach(contexts)
        self._http: dict[str, str] = {}  # http-01 token -> key authorization
        self._installed = b""
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle -------------------------------------------------------------------

    async def load(self) -> None:
        """Serve the stored certificate, if any, before the listeners open."""
        self._loop = asyncio.get_running_loop()
        stored = await self.store.tls_cert_get(self.key)
        if stored is not None and stored.chain:
            self._install(stored)

    def start(self) -> None:
        """Obtain or renew from now on (the listeners answering challenges are up)."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="correo-acme")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def http01(self, token: str) -> str | None:
        """The key authorization to serve at /.well-known/acme-challenge/TOKEN (§8.3)."""
        return self._http.get(token)

    # -- the schedule -----------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = await self._cycle()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store, say: try again later, keep serving
                self.log.error("tls.acme_error", error=repr(exc)[:500])
                delay = RETRY_FIRST
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(1.0, delay))

    async def _cycle(self) -> float:
        """Serve what the store has; order when due.  Returns seconds until the next look."""
        stored = await self.store.tls_cert_get(self.key)
        if stored is not None and stored.chain and stored.chain != self._installed:
            self._install(stored)  # obtained by another node, or by an earlier run
        now = time.time()
        if stored is not None and stored.names == self.names and now < stored.renew_at:
            return min(stored.renew_at - now, CHECK_INTERVAL)
        return await self._order(stored)

    async def _order(self, stored: TlsCertificate | None) -> float:
        account = await self._account_key()
        acme = self.config.acme
        # The key of the certificate being renewed is kept (DANE TLSA records name it).
        key = stored.key if stored is not None and stored.chain else b""
        order = flow.Order(
            acme.directory, acme.email, self.names, acme.challenge, account, self.order_ca, key
        )
        self.log.info("tls.acme_order", names=",".join(self.names), challenge=acme.challenge)
        started = time.time()
        try:
            issued = await self._in_thread(lambda: flow.obtain(order, self, self._stop))
            renew_at, expires = renewal_time(issued.chain)
            record = TlsCertificate(
                self.key, self.names, issued.chain, issued.key, time.time(), renew_at
            )
            self._check(record)
        except Exception as exc:
            return await self._failed(stored, exc, started)
        await self.store.tls_cert_put(record)  # durable first: every node serves this one
        self._install(record)
        if self.metrics is not None:
            self.metrics.acme_outcome("renewed" if key else "issued")
        self.log.info(
            "tls.certificate_issued",
            names=",".join(self.names),
            issuer=issuer_of(issued.chain),
            expires=_when(expires),
            renew_at=_when(renew_at),
        )
        return max(1.0, renew_at - time.time())

    async def _failed(self, stored: TlsCertificate | None, exc: Exception, started: float) -> float:
        """Record why, keep what serves, retry later (doubling, bounded)."""
        if self.metrics is not None:
            self.metrics.acme_outcome("failed")
        same = stored is not None and stored.names == self.names
        failures = (stored.failures if stored is not None and same else 0) + 1
        delay = min(RETRY_FIRST * 2 ** (failures - 1), RETRY_MAX)
        why = str(exc) or type(exc).__name__
        now = time.time()
        base = stored or TlsCertificate(self.key, self.names, b"", b"", now)
        await self.store.tls_cert_put(
            replace(
                base,
                names=self.names,
                renew_at=now + delay,
                failures=failures,
                last_error=why[:2000],
            )
        )
        self.log.warning(
            "tls.acme_failed",
            names=",".join(self.names),
            error=why,
            failures=failures,
            retry_in=int(delay),
            seconds=round(now - started, 1),
            serving="acme" if self._installed else "tls-file",
        )
        return float(delay)

    async def _account_key(self) -> bytes:
        """One account key per ACME directory, in the store: every node uses the same."""
        name = f"account {self.config.acme.directory}"
        stored = await self.store.tls_cert_get(name)
        if stored is not None and stored.key:
            return stored.key
        key = flow.new_key()
        await self.store.tls_cert_put(TlsCertificate(name, (), b"", key, time.time()))
        return key

    # -- putting certificates into service --------------------------------------------

    def _check(self, record: TlsCertificate) -> None:
        """The issued pair must load (raises TlsConfigError) before it goes anywhere."""
        replace_chain(
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), record.chain, record.key, self.scratch
        )

    def _install(self, record: TlsCertificate) -> None:
        """Into every listener's context, on the loop thread (where handshakes run)."""
        _, expires = renewal_time(record.chain)
        if expires <= time.time():
            self.log.warning("tls.certificate_expired", names=",".join(record.names))
            return
        try:
            for ctx in self.contexts:
                replace_chain(ctx, record.chain, record.key, self.scratch)
        except TlsConfigError as exc:
            self.log.error("tls.certificate_unusable", names=",".join(record.names), error=exc)
            return
        self._installed = record.chain
        self.log.info("tls.certificate_installed", names=",".join(record.names))

    # -- the Responder the flow calls from its thread ---------------------------------

    def publish(self, challenge: flow.Challenge) -> None:
        if challenge.kind == "tls-alpn-01":
            cert, key = validation_certificate(challenge.name, challenge.key_authorization)
            validation = _validation_context(cert, key, self.scratch)
            self._on_loop(lambda: self.alpn.add(challenge.name, validation))
        else:
            self._on_loop(
                lambda: self._http.__setitem__(challenge.token, challenge.key_authorization)
            )

    def withdraw(self, challenge: flow.Challenge) -> None:
        if challenge.kind == "tls-alpn-01":
            self._on_loop(lambda: self.alpn.remove(challenge.name))
        else:
            self._on_loop(lambda: self._http.pop(challenge.token, None))

    def _on_loop(self, change: Callable[[], object]) -> None:
        """Make ``change`` on the event loop's thread and wait until it is made."""
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            try:
                change()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise flow.AcmeFailure("the server did not take the challenge answer in time")

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """``work`` in a daemon thread (a stuck order cannot hold up shutdown), bounded."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def deliver(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            result: T | None = None
            error: BaseException | None = None
            try:
                result = work()
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(deliver, result, error)

        threading.Thread(target=run, name="correo-acme", daemon=True).start()
        try:
            return await asyncio.wait_for(future, ORDER_BUDGET)
        except TimeoutError:
            raise flow.AcmeFailure(f"the order took more than {ORDER_BUDGET:.0f} s") from None


def _validation_context(cert: bytes, key: bytes, scratch: Path) -> ssl.SSLContext:
    """A context presenting the validation certificate with ALPN acme-tls/1 only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8737 §4: TLS 1.2 or higher
    ctx.set_alpn_protocols([ACME_TLS_ALPN.decode("ascii")])  # RFC 8737 §3
    replace_chain(ctx, cert, key, scratch)
    return ctx


def issuer_of(chain: bytes) -> str:
    """The issuer of a chain's first certificate, as its common name (or the whole DN)."""
    leaf = x509.load_pem_x509_certificates(chain)[0]
    names = leaf.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else leaf.issuer.rfc4514_string()


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
