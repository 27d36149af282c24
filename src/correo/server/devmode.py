"""Development mode (``correo dev``): one catch-all mailbox, any login, optional chaos.

A developer points an application at correo to see what it sends.  In this mode every
address of every domain is local and lands in one account, every login is accepted and
opens that account, nothing is relayed or looked up on the network, and the SMTP
service can refuse or slow down transactions at random so that a sender's retry logic
gets exercised.  None of it is reachable from the configuration file: only
``correo dev`` (on loopback unless told otherwise) builds a :class:`DevMode`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from correo.directory import AddressError, Resolution, SqliteDirectory
from correo.directory.addresses import normalize_domain
from correo.smtp import Reply
from correo.store.api import MailStore

__all__ = [
    "DEV_ACCOUNT",
    "ENVELOPE_FIELD",
    "CatchAllDirectory",
    "Chaos",
    "DevMode",
    "read_message_bytes",
]

#: The one account every message is filed into and every login opens.
DEV_ACCOUNT = "inbox@localhost"
#: The header field that keeps the envelope recipients (Bcc included), first in the
#: message: with one mailbox for everyone it is the only record of who mail was for.
ENVELOPE_FIELD = "X-Envelope-To"
_STAGES = frozenset({"rcpt", "data"})


class CatchAllDirectory(SqliteDirectory):
    """A directory in which every address resolves to ``account`` and every password fits.

    The SQLite file underneath only has to exist; the lookups that sessions, routing and
    delivery make are answered here, so the server's own code paths stay the ones a
    production server runs.
    """

    def __init__(self, path: Path, account: str = DEV_ACCOUNT) -> None:
        super().__init__(path)
        self.account = account
        self._account_domain = account.rpartition("@")[2]
        if not super().is_local_domain(self._account_domain):
            self.add_domain(self._account_domain)

    def is_local_domain(self, domain: str) -> bool:
        try:
            normalize_domain(domain)
        except (AddressError, ValueError):
            return False
        return True

    def resolve(self, address: str) -> Resolution | None:
        _, at, domain = address.rpartition("@")
        if not at or not self.is_local_domain(domain):
            return None
        return Resolution(self.account, (), None)

    def verify_password(self, address: str, password: str) -> str | None:
        return self.account  # any login: nothing here is anyone's real mail

    def may_send_as(self, account: str, address: str) -> bool:
        return True

    def owned_addresses(self, account: str) -> frozenset[str]:
        return frozenset({self.account})

    def user_exists(self, address: str) -> bool:
        return self.resolve(address) is not None

    def users(self) -> list[str]:
        return [self.account]

    def domains(self) -> list[str]:
        return [self._account_domain]


@dataclass
class Chaos:
    """Random refusals and a fixed delay at RCPT and at the end of DATA.

    ``reject_rate`` and ``tempfail_rate`` are probabilities (0 to 1, their sum at most 1)
    of a permanent (550) or temporary (451) refusal; ``delay`` seconds pass before each
    answer at a stage in ``stages``.
    """

    reject_rate: float = 0.0
    tempfail_rate: float = 0.0
    delay: float = 0.0
    stages: frozenset[str] = _STAGES
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        for name in ("reject_rate", "tempfail_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1")
        if self.reject_rate + self.tempfail_rate > 1.0:
            raise ValueError("reject-rate and tempfail-rate add up to more than 1")
        if not 0.0 <= self.delay <= 600.0:
            raise ValueError("delay must be between 0 and 600 seconds")
        if not self.stages or not self.stages <= _STAGES:
            raise ValueError("chaos stages are rcpt and data")

    @property
    def active(self) -> bool:
        return bool(self.reject_rate or self.tempfail_rate or self.delay)

    def verdict(self, stage: str) -> Reply | None:
        """The refusal to send at ``stage`` this time, or None to carry on."""
        if stage not in self.stages:
            return None
        draw = self.rng.random()
        what = "recipient" if stage == "rcpt" else "message"
        if draw < self.reject_rate:
            return Reply(550, "5.7.1", f"correo dev: {what} refused (--reject-rate)")
        if draw < self.reject_rate + self.tempfail_rate:
            return Reply(451, "4.3.0", f"correo dev: {what} deferred (--tempfail-rate)")
        return None

    async def before(self, stage: str) -> Reply | None:
        """Wait ``delay`` at a chaos stage, then draw its verdict."""
        if stage in self.stages and self.delay > 0:
            await asyncio.sleep(self.delay)
        return self.verdict(stage)


@dataclass
class DevMode:
    """What sessions consult when the server runs as ``correo dev``."""

    account: str = DEV_ACCOUNT
    chaos: Chaos = field(default_factory=Chaos)

    def envelope_field(self, recipients: Iterable[str]) -> bytes:
        """``X-Envelope-To:`` with each envelope recipient on a line of its own."""
        shown = [r for r in recipients if r] or ["unknown"]
        # RFC 5322 §2.2.3: folded at the commas, so a long list keeps lines short
        return (f"{ENVELOPE_FIELD}: " + ",\r\n\t".join(shown) + "\r\n").encode()


async def read_message_bytes(
    store: MailStore, account: str, mailbox: str, uid: int, end: int | None = None
) -> bytes:
    """A stored message (or its first ``end`` octets); StoreError if it is gone."""
    if end is None:
        inline = await store.read_inline(account, mailbox, uid)
        if inline is not None:
            return inline
    parts = [chunk async for chunk in store.read_message(account, mailbox, uid, end=end)]
    return b"".join(parts)
