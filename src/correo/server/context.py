"""What every session shares: configuration, store, directory, TLS, limits, logger."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from correo.config import Config
from correo.directory import Directory
from correo.log import Logger
from correo.metrics import Metrics
from correo.server.imap.shared import SharedMailboxes
from correo.server.throttle import AuthThrottle
from correo.store.api import MailStore

if TYPE_CHECKING:
    from correo.delivery.local import LocalDelivery
    from correo.dns import Resolver
    from correo.mailauth.signing import DkimSigner
    from correo.reports.inbound import ReportIntake
    from correo.server.devmode import DevMode

__all__ = ["ServerContext", "new_session_id"]

_counter = itertools.count(1)
_prefix = secrets.token_hex(3)


def new_session_id() -> str:
    """Short, unique, log-friendly ids: a per-process prefix and a counter."""
    return f"{_prefix}{next(_counter):06x}"


@dataclass
class ServerContext:
    config: Config
    store: MailStore
    directory: Directory
    tls: ssl.SSLContext | None
    throttle: AuthThrottle
    log: Logger
    maildrops_in_use: set[str] = field(default_factory=set)
    #: Concurrent password verifications (each costs ~19 MiB and tens of ms of CPU).
    auth_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    #: Set after queuing outbound mail: the queue runner wakes at once.
    queue_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    #: Local delivery with Sieve and the junk filter; set by MailServer.start.
    mda: LocalDelivery | None = None
    #: DNS for SPF/DKIM/DMARC; set by MailServer.start from [dns].
    resolver: Resolver | None = None
    #: Report addresses, received reports, DMARC results counted (docs/reports.md).
    reports: ReportIntake | None = None
    #: DKIM signers by domain for submitted mail.
    dkim_signers: dict[str, DkimSigner] = field(default_factory=dict)
    #: Mailbox snapshots and change feeds that IMAP sessions share.
    imap: SharedMailboxes = field(default_factory=SharedMailboxes)
    #: Listening addresses by service as bound (port 0 in the config becomes a real one).
    bound: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: ``correo dev`` only: the catch-all account, the message API and chaos.
    dev: DevMode | None = None
    #: Prometheus metrics of this server (docs/operations.md).
    metrics: Metrics = field(default_factory=Metrics)
    #: Set when a graceful shutdown begins: /readyz answers 503 from then on.
    stopping: bool = False
    #: Addresses per service the server binds (set by MailServer.start), for /readyz.
    listeners: dict[str, int] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return self.config.hostname
