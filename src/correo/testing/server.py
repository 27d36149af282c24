"""A real correo for a test: every service on free loopback ports, in a temporary folder.

The server runs in this process, on an event loop of its own in a background thread,
so it starts in tens of milliseconds; the slow parts of a first start (the TLS
certificate, the DKIM keys) are made once per test session (:class:`Material`) and
shared by every server of that session.  Mail for remote domains goes through the real
queue to an :class:`~correo.testing.capture.OutboundCapture` on loopback: nothing
leaves the machine.  DNS answers come from a :class:`~correo.dns.FakeResolver` the test
can add records to (``server.dns``); it knows the server's own SPF, DKIM and DMARC
records.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import email
import email.policy
import shutil
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any, TypeVar

from correo.config import (
    Config,
    JunkSettings,
    LmtpSettings,
    LogSettings,
    OutboundSettings,
    TlsSettings,
)
from correo.directory import Directory, PasswordScheme, SqliteDirectory
from correo.directory.dkim_files import FileKeyStore
from correo.directory.passwords import DEFAULT_PARAMETERS
from correo.dns import FakeResolver
from correo.log import Logger
from correo.mailauth.keys import dns_record, ensure_domain_keys
from correo.server.app import MailServer
from correo.server.devmode import read_message_bytes
from correo.server.tls import generate_self_signed
from correo.store.api import INBOX, QueueEntry, StoreError
from correo.testing.capture import OutboundCapture, OutboundMessage

__all__ = ["DOMAIN", "CorreoTestServer", "MailTimeout", "Material"]

T = TypeVar("T")

DOMAIN = "example.test"
HOST = "127.0.0.1"
SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "sieve", "https")
#: argon2id at its cheapest: the passwords of a test server protect nothing, and a
#: login should not cost a test 50 ms of CPU.
_TEST_PASSWORDS = dataclasses.replace(DEFAULT_PARAMETERS, time_cost=1, memory_cost=1024)
_CALL_TIMEOUT = 60.0


class MailTimeout(AssertionError):
    """The mail a test waited for did not arrive in time."""


@dataclass(frozen=True, slots=True)
class Material:
    """What every test server of a session shares: a certificate and DKIM keys."""

    folder: Path
    domain: str
    cert: Path
    key: Path
    #: (name, TXT value) of the domain's DKIM, SPF and DMARC records
    records: tuple[tuple[str, str], ...]

    @classmethod
    def create(cls, folder: Path, domain: str = DOMAIN) -> Material:
        """Generate them once (an RSA key takes a good part of a second)."""
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / "tls" / "cert.pem", folder / "tls" / "key.pem"
        generate_self_signed(cert, key, "localhost")
        keys = ensure_domain_keys(FileKeyStore(folder), domain)
        records = [(f"{k.selector}._domainkey.{domain}", dns_record(k.key)) for k in keys]
        records.append((domain, "v=spf1 ip4:127.0.0.0/8 ip6:::1 -all"))
        records.append((f"_dmarc.{domain}", "v=DMARC1; p=none"))
        return cls(folder, domain, cert, key, tuple(records))

    @property
    def dkim(self) -> Path:
        return self.folder / "dkim"


class CorreoTestServer:
    """One running test server; see docs/testing.md for a tour.

    Addresses are ``(host, port)`` tuples: ``smtp`` (MX, no login), ``submission``
    (STARTTLS, then AUTH), ``submissions``, ``imap``, ``imaps``, ``pop3``, ``pop3s``,
    ``sieve`` and ``https``.
    """

    smtp: tuple[str, int]
    submission: tuple[str, int]
    submissions: tuple[str, int]
    imap: tuple[str, int]
    imaps: tuple[str, int]
    pop3: tuple[str, int]
    pop3s: tuple[str, int]
    sieve: tuple[str, int]
    https: tuple[str, int]

    def __init__(self, folder: Path, material: Material) -> None:
        self.data_dir = folder
        self.material = material
        self.domain = material.domain
        self.cafile = material.cert
        self.dns = FakeResolver({name: {"TXT": [value]} for name, value in material.records})
        self.capture = OutboundCapture()
        self.startup_seconds = 0.0
        self.server: MailServer | None = None
        self.directory: Directory | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._log: IO[str] | None = None

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    def start(cls, folder: Path, material: Material | None = None) -> CorreoTestServer:
        """A started server whose files live in ``folder`` (created if missing)."""
        started = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        server = cls(folder, material or Material.create(folder / "material"))
        try:
            server._start()
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.perf_counter() - started
        return server

    def _start(self) -> None:
        material = self.material
        if material.dkim.is_dir():
            shutil.copytree(material.dkim, self.data_dir / "dkim", dirs_exist_ok=True)
        self.directory = SqliteDirectory(
            self.data_dir / "directory.db",
            passwords=PasswordScheme(_TEST_PASSWORDS),
            remember_logins=300.0,
        )
        self.directory.add_domain(self.domain)
        self._log = open(self.data_dir / "correo.log", "a", encoding="utf-8")  # noqa: SIM115
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(ready),), name="correo-test-server", daemon=True
        )
        self._thread.start()
        ready.result(_CALL_TIMEOUT)
        assert self.server is not None
        for service, addresses in self.server.bound.items():
            setattr(self, service, addresses[0])

    def _config(self) -> Config:
        material = self.material
        return Config(
            data_dir=self.data_dir,
            hostname="localhost",
            listen=dict.fromkeys(SERVICES, ((HOST, 0),)),
            tls=TlsSettings(str(material.cert), str(material.key)),
            lmtp=LmtpSettings(socket=""),
            junk=JunkSettings(enabled=False),  # what a test sends lands where it expects
            log=LogSettings(level="info"),
            outbound=OutboundSettings(
                relayhost=f"[{self.capture.address[0]}]:{self.capture.address[1]}",
                relayhost_tls="none",
                mta_sts=False,
            ),
        )

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.capture.start(HOST)
            assert self._log is not None
            self.server = MailServer(
                self._config(),
                Logger(self._log, "info"),
                resolver=self.dns,
                directory=self.directory,
            )
            self.capture.max_size = self.server.config.limits.message_size
            await self.server.start()
        except BaseException as exc:
            ready.set_exception(exc)
            await self._shutdown()
            return
        ready.set_result(None)
        await self._stopping.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=2.0)
        await self.capture.stop()

    def stop(self) -> None:
        """Stop every listener and close the store; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is not None and self._stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop has already finished
        if thread is not None:
            thread.join(_CALL_TIMEOUT)
        if self.directory is not None and (self.server is None or thread is None):
            self.directory.close()  # the server closes it when it ran
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> CorreoTestServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = _CALL_TIMEOUT) -> T:
        """Run ``coro`` on the server's loop and wait for its result here."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the correo test server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- accounts -----------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> str:
        """Create an account (its domain becomes local if it was not); returns its name."""
        directory = self._directory()
        domain = address.rpartition("@")[2]
        if domain and not directory.is_local_domain(domain):
            directory.add_domain(domain)
        directory.add_user(address, password)
        name = directory.account_name(address)
        assert self.server is not None
        self._call(self.server.store.create_account(name))
        return name

    def add_alias(self, alias: str, target: str) -> None:
        """Deliver mail for ``alias`` (``@domain``: every unknown name there) to ``target``."""
        self._directory().add_alias(alias, target)

    def _directory(self) -> Directory:
        if self.directory is None:
            raise RuntimeError("the correo test server is not running")
        return self.directory

    def _account(self, address: str) -> str:
        found = self._directory().resolve(address)
        if found is None or found.account is None:
            raise LookupError(f"{address} is not a local account of this test server")
        return found.account

    # -- reading mail -------------------------------------------------------------------

    def messages(self, address: str, folder: str = INBOX) -> list[EmailMessage]:
        """Every message in ``folder`` of the account ``address`` delivers to, oldest first."""
        account = self._account(address)
        _, found = self._call(self._read(account, folder, set()))
        return [_parse(raw) for _, raw in found]

    def wait_for(
        self,
        address: str,
        predicate: Callable[[EmailMessage], bool] | None = None,
        timeout: float = 5.0,
        folder: str = INBOX,
    ) -> EmailMessage:
        """The first message of ``folder`` that ``predicate`` accepts (any, without one).

        Waits up to ``timeout`` seconds for it to arrive; raises :class:`MailTimeout`
        (an AssertionError) with what the folder holds otherwise.
        """
        account = self._account(address)
        deadline = time.monotonic() + timeout
        checked: set[int] = set()
        seen: list[str] = []
        while True:
            modseq, found = self._call(self._read(account, folder, checked))
            for uid, raw in found:
                checked.add(uid)
                message = _parse(raw)
                if predicate is None or predicate(message):
                    return message
                seen.append(str(message.get("Subject", "")))
            left = deadline - time.monotonic()
            if left <= 0:
                raise MailTimeout(
                    f"no matching message for {address} in {folder} after {timeout} s; "
                    f"it holds {len(checked)}" + (f" (subjects: {seen[:10]!r})" if seen else "")
                )
            self._call(self._wait_change(account, folder, modseq, min(left, 0.5)))

    async def _read(
        self, account: str, folder: str, skip: set[int]
    ) -> tuple[int, list[tuple[int, bytes]]]:
        assert self.server is not None
        store = self.server.store
        try:
            modseq = (await store.mailbox_state(account, folder)).highestmodseq
        except StoreError:
            modseq = -1  # no such folder (yet)
        found = []
        for info in await store.list_messages(account, folder):
            if info.uid in skip:
                continue
            try:
                found.append((info.uid, await read_message_bytes(store, account, folder, info.uid)))
            except StoreError:
                continue  # expunged meanwhile
        return modseq, found

    async def _wait_change(self, account: str, folder: str, modseq: int, timeout: float) -> None:
        assert self.server is not None
        if modseq < 0:
            await asyncio.sleep(min(timeout, 0.05))
            return
        try:
            await self.server.store.wait_for_change(account, folder, modseq, timeout)
        except StoreError:
            await asyncio.sleep(min(timeout, 0.05))

    # -- outbound mail ------------------------------------------------------------------

    def queue(self) -> list[QueueEntry]:
        """The outbound queue: messages not yet handed to the capture (or deferred)."""
        assert self.server is not None
        return self._call(self.server.store.queue_list())

    def flush_queue(self) -> int:
        """Make every queued message due now (a deferred one is tried again at once)."""
        return self._call(self._flush())

    async def _flush(self) -> int:
        assert self.server is not None and self.server.ctx is not None
        count = await self.server.store.queue_retry()
        self.server.ctx.queue_wakeup.set()
        return count

    def outbound(self) -> list[OutboundMessage]:
        """Mail the server relayed to remote domains, as it arrived at the capture."""
        return [captured.parse() for captured in self.capture.captured()]

    def wait_for_outbound(
        self, predicate: Callable[[OutboundMessage], bool] | None = None, timeout: float = 5.0
    ) -> OutboundMessage:
        """The first outbound message ``predicate`` accepts, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.outbound():
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                raise MailTimeout(
                    f"no matching outbound message after {timeout} s; "
                    f"{len(self.capture.captured())} captured, {len(self.queue())} queued"
                )
            time.sleep(0.02)

    # -- clients ------------------------------------------------------------------------

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and only it)."""
        context = ssl.create_default_context(cafile=str(self.cafile))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def log(self) -> str:
        """The server's log lines so far."""
        if self._log is not None:
            self._log.flush()
        path = self.data_dir / "correo.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message
