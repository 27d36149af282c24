"""The values of the mail store API (:mod:`correo.store.api`): envelopes, messages,
mailboxes, the queue, quotas, certificates, reports, webhooks, and the store's errors.

Kept apart from the :class:`~correo.store.api.MailStore` protocol so that each file
stays small; :mod:`correo.store.api` re-exports every name, which is where callers
import them from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "INBOX",
    "Changes",
    "Delivered",
    "DeliveryTarget",
    "Envelope",
    "MailboxError",
    "MailboxInfo",
    "MailboxState",
    "MailboxStatus",
    "MessageFacts",
    "MessageInfo",
    "QueueEntry",
    "QueueRecipientState",
    "QueueSummary",
    "QueuedMessage",
    "QueuedRecipient",
    "Quota",
    "QuotaExceededError",
    "QuotaLimit",
    "ReceivedReport",
    "RecipientUpdate",
    "Record",
    "ReportTally",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "TlsCertificate",
    "WebhookCall",
    "WebhookEntry",
    "local_zone",
]


INBOX = "INBOX"


class StoreError(Exception):
    """The store could not complete an operation (disk full, corrupt database…)."""


class StoreFullError(StoreError):
    """The disk or quota under the store is full: temporary, retried once space is freed."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached (its database is down or restarting): temporary, and
    nothing was acknowledged; the store reconnects by itself."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope of an accepted message (RFC 5321 §2.3.1)."""

    sender: str  # "" for the null reverse-path
    helo: str = ""
    peer: str = ""
    authenticated: str | None = None
    envid: str | None = None  # RFC 3461 ENVID
    ret: str | None = None  # RFC 3461 RET=FULL|HDRS
    body: str | None = None  # 7BIT | 8BITMIME | BINARYMIME
    smtputf8: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One local copy to file: an account's mailbox."""

    account: str
    mailbox: str = INBOX
    flags: tuple[str, ...] = ()
    # False: the quota warning itself, a notice of the server's own: never refused
    quota: bool = True


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    """A recipient left for the outbound MTA, with its RFC 3461 parameters."""

    address: str
    notify: str | None = None
    orcpt: str | None = None
    # the account whose Sieve redirect this is: not queued when that account's copies
    # are refused over quota (the retry of that recipient redirects again)
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where each local copy went, and the queue id if anything was queued."""

    uids: tuple[tuple[DeliveryTarget, int], ...]
    queue_id: int | None = None
    # accounts refused over quota (see MailStore.deliver's quota_fallback), each with
    # True when the message alone is larger than the limit (permanent, RFC 3463 5.2.2)
    over_quota: tuple[tuple[str, bool], ...] = ()
    # the UIDVALIDITY of each copy's mailbox, in the order of ``uids``: APPENDUID
    # (RFC 4315 §3) without another read of the mailbox
    validities: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """``internal_date`` is a UTC timestamp; ``zone`` its offset in minutes east of UTC,
    as APPEND gave it (RFC 9051 §2.3.3: INTERNALDATE is returned as it was set)."""

    uid: int
    size: int
    internal_date: float
    flags: tuple[str, ...] = ()
    modseq: int = 0
    zone: int = 0


def local_zone(when: float) -> int:
    """The server's UTC offset in minutes at ``when``: the zone of a delivery's INTERNALDATE."""
    return time.localtime(when).tm_gmtoff // 60


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What IMAP needs of a message's structure, computed once when it is stored.

    ``envelope``, ``bodystructure`` and ``body`` are the IMAP wire forms (RFC 9051
    §7.5.2); ``tree`` is the serialised part tree with byte offsets for BODY[section];
    ``sent_date`` the Date: field as a timestamp for SEARCH SENT*.
    """

    envelope: bytes
    bodystructure: bytes
    body: bytes
    tree: bytes
    sent_date: float | None = None


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    name: str
    special_use: str | None = None
    subscribed: bool = True


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """STATUS data (RFC 9051 §6.3.11)."""

    messages: int
    uidnext: int
    uidvalidity: int
    unseen: int
    deleted: int
    size: int
    highestmodseq: int
    recent: int
    deleted_size: int = 0  # RFC 9208 §4.2 DELETED-STORAGE: octets of \Deleted messages


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a mailbox after a MODSEQ: the session's view catches up from this."""

    highestmodseq: int
    messages: tuple[MessageInfo, ...]  # added or with changed flags, by UID
    expunged: tuple[int, ...]  # UIDs


class MailboxError(StoreError):
    """A mailbox operation was refused; ``code`` is the IMAP response code to use."""

    def __init__(self, message: str, code: str = "CANNOT") -> None:
        super().__init__(message)
        self.code = code


#: A quota limit to set: octets or messages, None for no limit, "default" for the
#: server's ``[delivery] quota`` (which may change later).
QuotaLimit = int | None | Literal["default"]


@dataclass(frozen=True, slots=True)
class Quota:
    """An account's limits and usage (RFC 9208 §5: STORAGE and MESSAGE resources).

    ``storage`` is in octets and ``messages`` in messages, None meaning no limit; the
    ``*_default`` flags say the limit is the server's default, not set for the account.
    Usage counts every message copy in every mailbox, \\Deleted ones until expunged.
    """

    storage: int | None
    messages: int | None
    used_storage: int
    used_messages: int
    storage_default: bool = True
    messages_default: bool = True

    def refusal(self, size: int, count: int = 1) -> bool | None:
        """None when ``count`` messages of ``size`` octets fit now; True when they could
        never fit (larger than the limit itself: permanent), False when not now."""
        if (self.storage is not None and size > self.storage) or (
            self.messages is not None and count > self.messages
        ):
            return True
        if (self.storage is not None and self.used_storage + size > self.storage) or (
            self.messages is not None and self.used_messages + count > self.messages
        ):
            return False
        return None

    def crossed(self, size: int, count: int) -> bool:
        """True when adding ``size`` octets and ``count`` messages to this usage passes
        90 % of a limit from below (the one moment the warning is sent)."""
        for used, add, limit in (
            (self.used_storage, size, self.storage),
            (self.used_messages, count, self.messages),
        ):
            if limit is not None and add > 0 and used * 10 < limit * 9 <= (used + add) * 10:
                return True
        return False


class QuotaExceededError(MailboxError):
    """A write would pass the account's quota (RFC 9208 §4.4 OVERQUOTA); nothing was
    written. ``permanent``: the message alone is larger than the limit (RFC 3463 5.2.2)."""

    def __init__(self, account: str, permanent: bool = False) -> None:
        super().__init__(f"{account} is over its quota", "OVERQUOTA")
        self.account = account
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class MailboxState:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    exists: int


@dataclass(frozen=True, slots=True)
class QueueSummary:
    """The outbound queue at a glance (metrics, ``correo status``)."""

    messages: int  # counted up to the cap asked for
    recipients: int  # still waiting for delivery, counted up to the cap
    oldest: float | None  # creation time of the first message still queued


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    sender: str
    size: int
    created: float
    recipients: tuple[tuple[str, str, str], ...] = field(
        default=()
    )  # (address, status, last error)


@dataclass(frozen=True, slots=True)
class Record:
    """One of an account's sending identities or submissions (kind ``identity`` or
    ``submission``): its JSON ``data`` and the account-wide counter values at which it
    was created and last changed, so a client holding an older value learns what moved.
    A removed record stays as a tombstone (``removed``) for the change log."""

    id: str
    data: str
    created: int
    changed: int
    removed: bool = False


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """A certificate obtained by ACME, kept in the store so every node serves the same one.

    ``name`` is its key (the first of ``names``).  ``chain`` (PEM, the server's own
    certificate first) is empty until one is issued; ``renew_at`` is when the next
    attempt is due, ``failures`` the attempts failed in a row and ``last_error`` why the
    last one failed.  A row without ``names`` holds an ACME account key instead.
    """

    name: str
    names: tuple[str, ...]
    chain: bytes
    key: bytes  # PEM private key, unencrypted: the store is as private as the key files
    updated: float
    renew_at: float = 0.0
    failures: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class ReceivedReport:
    """A DMARC aggregate (RFC 7489 §7.2) or TLS (RFC 8460 §4) report that reached us.

    ``kind`` is ``"dmarc"`` or ``"tlsrpt"``; ``data`` the parsed report as JSON text
    (bounded by the parser), ``domain`` the policy domain it is about.
    """

    id: int
    kind: str
    org: str
    report_id: str
    domain: str
    begin: float
    end: float
    received: float
    data: str = ""


@dataclass(frozen=True, slots=True)
class ReportTally:
    """One aggregated row of results waiting to be reported: ``key`` (JSON) says what
    was counted for ``domain``, ``count`` how often between ``first`` and ``last``."""

    kind: str
    domain: str
    key: str
    count: int
    first: float
    last: float


@dataclass(frozen=True, slots=True)
class QueueRecipientState:
    """One recipient of a queued message and where its delivery stands."""

    address: str
    notify: str | None
    orcpt: str | None
    status: str  # "queued", "delivered" or "failed"
    attempts: int
    next_attempt: float
    last_error: str = ""
    warned: bool = False  # a delay DSN was sent


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting for the outbound MTA, with its envelope (RFC 3461 fields)."""

    id: int
    sender: str
    size: int
    created: float
    envid: str | None
    ret: str | None
    body: str | None
    smtputf8: bool
    authenticated: str | None
    recipients: tuple[QueueRecipientState, ...]


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    """The outcome of one delivery attempt for one recipient."""

    address: str
    status: str  # "queued" (retry at next_attempt), "delivered" or "failed"
    next_attempt: float = 0.0
    last_error: str = ""
    counted: bool = True  # False for "not attempted" (e.g. the run was interrupted)
    warned: bool | None = None


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """One HTTP POST to make: ``payload`` is the event's JSON data, ``key`` its
    idempotency id (sent as ``Webhook-Id`` on every attempt)."""

    key: str
    url: str
    event: str  # delivered, bounced, deferred or received
    payload: bytes


@dataclass(frozen=True, slots=True)
class WebhookEntry:
    """A queued webhook call and where its delivery stands."""

    id: int
    key: str
    url: str
    event: str
    payload: bytes
    created: float
    attempts: int
    next_attempt: float
    last_error: str = ""
    lease_until: float = 0.0
