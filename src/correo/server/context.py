"""What every session shares: configuration, store, directory, TLS, limits, logger."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import ssl
from dataclasses import dataclass, field

from correo.config import Config
from correo.directory import Directory
from correo.log import Logger
from correo.server.throttle import AuthThrottle
from correo.store.api import MailStore

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

    @property
    def hostname(self) -> str:
        return self.config.hostname
