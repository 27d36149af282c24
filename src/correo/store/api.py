"""The mail store API, in mail terms; its values are in :mod:`correo.store.types`.

Every protocol server (SMTP delivery, POP3, later IMAP and the queue runner) changes
mail only through this interface, so the SQLite implementation used now and a
PostgreSQL one later are interchangeable.  All methods are ``async``: the embedded
implementation runs its blocking I/O on threads, a networked one would use an async
driver.

Durability contract: when an awaited write method returns, the change is on stable
storage (fsync'd).  Implementations batch concurrent writes into one flush (group
commit) so this costs one disk flush per batch, not per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from typing import Protocol

from correo.store.types import (
    INBOX,
    Changes,
    Delivered,
    DeliveryTarget,
    Envelope,
    MailboxError,
    MailboxInfo,
    MailboxState,
    MailboxStatus,
    MessageFacts,
    MessageInfo,
    QueuedMessage,
    QueuedRecipient,
    QueueEntry,
    QueueRecipientState,
    QueueSummary,
    Quota,
    QuotaExceededError,
    QuotaLimit,
    ReceivedReport,
    RecipientUpdate,
    Record,
    ReportTally,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    TlsCertificate,
    WebhookCall,
    WebhookEntry,
    local_zone,
)

__all__ = [
    "INBOX",
    "Changes",
    "Delivered",
    "DeliveryTarget",
    "Envelope",
    "MailStore",
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
    "Spool",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "TlsCertificate",
    "WebhookCall",
    "WebhookEntry",
    "local_zone",
    "spool_insert",
    "spool_read",
]


class Spool(Protocol):
    """A message being received: bytes stream in, bounded memory.

    Small messages stay in memory; large ones spill to a file in the store's own
    temporary area, so committing them is a rename, not a copy.

    Delivery reads a spool back (the header for Sieve and the junk filter, the whole
    message for a copy) and splices late header fields in (Authentication-Results,
    DKIM-Signature, X-Spam-*) through these methods only, never through a concrete
    class, so every store's spools behave alike.  While ``in_memory`` is true they do no
    I/O; otherwise they read or rewrite a file: :func:`spool_read` and
    :func:`spool_insert` then run them in a worker thread, off the event loop.
    """

    size: int

    @property
    def in_memory(self) -> bool:
        """True while every byte is in memory (reading and inserting cost no I/O)."""
        ...

    def write(self, data: bytes) -> None: ...

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``start``..``end`` (None: to the end) of what was written so far."""
        ...

    def chunks(self, start: int = 0, chunk_size: int = 65536) -> Iterator[bytes]:
        """The bytes from ``start`` on, in pieces of at most ``chunk_size``."""
        ...

    def insert(self, offset: int, data: bytes) -> None:
        """Insert ``data`` at ``offset``: header fields known only at the end."""
        ...

    def discard(self) -> None: ...


async def spool_read(spool: Spool, start: int = 0, end: int | None = None) -> bytes:
    """:meth:`Spool.read`, in a worker thread when the spool is a file."""
    if spool.in_memory:
        return spool.read(start, end)
    return await asyncio.to_thread(spool.read, start, end)


async def spool_insert(spool: Spool, offset: int, data: bytes) -> None:
    """:meth:`Spool.insert`, in a worker thread when the spool is a file (a rewrite)."""
    if spool.in_memory:
        spool.insert(offset, data)
    else:
        await asyncio.to_thread(spool.insert, offset, data)


class MailStore(Protocol):
    """What correo needs from a mail store."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def new_spool(self) -> Spool: ...

    async def deliver(
        self,
        spool: Spool,
        envelope: Envelope,
        targets: Sequence[DeliveryTarget],
        queued: Sequence[QueuedRecipient] = (),
        *,
        queue_skip: int = 0,
        facts: MessageFacts | None = None,
        internal_date: float | None = None,
        internal_zone: int | None = None,
        quota_fallback: Mapping[str, Sequence[QueuedRecipient]] | None = None,
    ) -> Delivered:
        """File one message, atomically and durably, for every target and the queue.

        Quota, checked in the same transaction as the write (no two writers can both
        pass a limit): with ``quota_fallback`` None, a target whose account cannot take
        the message fails the whole call with :class:`QuotaExceededError`, nothing
        written (IMAP APPEND). With a mapping, each refused account's targets (and the
        redirects it owns) are left out, its fallback recipients queued instead, and
        :attr:`Delivered.over_quota` names it; the others are filed (SMTP, LMTP).

        ``internal_zone``: minutes east of UTC to show INTERNALDATE in (APPEND's own);
        None means the server's local zone at ``internal_date`` (SMTP, LMTP deliveries).

        The queued copy omits the spool's first ``queue_skip`` bytes (the Return-Path
        that only final delivery adds, RFC 5321 §4.4).
        """
        ...

    async def create_account(self, account: str) -> None: ...

    async def delete_account(self, account: str) -> None:
        """Remove everything of the account in one transaction: mailboxes, messages,
        subscriptions, Sieve scripts, vacation memory, junk-filter counts (data keyed by
        the name would otherwise pass to the next account given that address)."""
        ...

    async def set_aside_account(self, account: str) -> str | None:
        """Move everything of the account to a new tombstone name in one transaction:
        the address, a space and a deletion stamp, which no login name can be. Returns
        it, or None when nothing was stored under ``account``; the address starts empty."""
        ...

    async def kept_accounts(self) -> list[tuple[str, int]]:
        """Tombstone names (data set aside) with their message counts, by name."""
        ...

    async def list_messages(self, account: str, mailbox: str = INBOX) -> list[MessageInfo]: ...

    def read_message(
        self,
        account: str,
        mailbox: str,
        uid: int,
        chunk_size: int = 65536,
        start: int = 0,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start``..``end`` of a message; StoreError if it no longer exists."""
        ...

    async def read_inline(self, account: str, mailbox: str, uid: int) -> bytes | None:
        """The whole message if the store keeps it inline (small: one indexed read, no
        chunks), else None: stream it with :meth:`read_message`. StoreError if it is gone.
        """
        ...

    async def read_inlines(
        self, account: str, mailbox: str, uids: Sequence[int]
    ) -> dict[int, bytes]:
        """The whole messages among ``uids`` that the store keeps inline, in one read
        (a FETCH of many small bodies is one round trip, not one per message); the
        others (big, or gone) are left out. The caller bounds ``uids`` in bytes."""
        ...

    async def expunge(self, account: str, mailbox: str, uids: Sequence[int]) -> int:
        """Remove messages durably; returns how many were removed."""
        ...

    async def mailbox_state(self, account: str, mailbox: str = INBOX) -> MailboxState: ...

    async def wait_for_change(
        self, account: str, mailbox: str, modseq: int, timeout: float, counter: int | None = None
    ) -> bool:
        """Wait until the mailbox's HIGHESTMODSEQ exceeds ``modseq``; False on timeout.

        ``counter``: the :meth:`change_counter` the caller read ``modseq`` under; while it
        is unchanged the store need not look (idle sessions by the thousand).
        """
        ...

    # -- mailboxes, flags, copies: what IMAP needs (RFC 9051) ----------------------------

    async def list_mailboxes(self, account: str) -> list[MailboxInfo]: ...

    async def create_mailbox(
        self,
        account: str,
        name: str,
        special_use: str | None = None,
        subscribe: bool = True,
        *,
        limit: int = 0,
    ) -> None:
        """Creates ``name`` and its missing superiors; MailboxError ALREADYEXISTS when it
        exists, LIMIT when the account would hold more than ``limit`` mailboxes (0: any).

        ``subscribe``: mailboxes the server creates (delivery, special-use, import) are
        subscribed so LSUB clients see them; IMAP CREATE passes False (RFC 9051 §6.3.4
        creates no subscription).
        """
        ...

    async def delete_mailbox(self, account: str, name: str) -> None:
        """MailboxError HASCHILDREN while a name lies below it (exact, case-sensitive)."""
        ...

    async def rename_mailbox(self, account: str, old: str, new: str, *, limit: int = 0) -> None:
        """Renames ``old`` and exactly its inferiors (case-sensitive), creating missing
        superiors of ``new``; renaming INBOX moves its messages (RFC 9051 §6.3.6).

        MailboxError CANNOT for a move below itself, LIMIT past ``limit`` mailboxes.
        """
        ...

    async def set_subscribed(
        self, account: str, name: str, subscribed: bool, *, limit: int = 0
    ) -> None:
        """Subscriptions are names, not mailboxes: any name may be subscribed, and deleting
        a mailbox keeps its subscription (RFC 9051 §6.3.7). MailboxError LIMIT when a new
        subscription would make more than ``limit`` (0: any)."""
        ...

    async def list_subscriptions(self, account: str) -> list[str]:
        """Every subscribed name, sorted, whether or not the mailbox exists."""
        ...

    async def mailbox_status(self, account: str, mailbox: str) -> MailboxStatus: ...

    async def take_recent(self, account: str, mailbox: str) -> int:
        """The first UID that is \\Recent for the caller; later callers see none of them."""
        ...

    async def fetch_facts(
        self, account: str, mailbox: str, uids: Sequence[int], *, tree: bool = True
    ) -> dict[int, MessageFacts]:
        """Stored structure facts by UID (messages stored without facts are absent).

        ``tree=False`` leaves the part tree out (``b""``): ENVELOPE and BODYSTRUCTURE
        alone need not read it.
        """
        ...

    async def save_facts(self, account: str, mailbox: str, uid: int, facts: MessageFacts) -> None:
        """Attach facts computed later to a message stored without them."""
        ...

    async def store_flags(
        self,
        account: str,
        mailbox: str,
        uids: Sequence[int],
        mode: str,
        flags: Sequence[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageInfo], list[int]]:
        """Set (``mode`` "replace"), add ("add") or remove ("remove") flags durably.

        Returns the messages whose flags changed (new MODSEQ each) and, with
        UNCHANGEDSINCE (RFC 7162 §3.1.3), the UIDs that failed the test.
        """
        ...

    async def copy_messages(
        self, account: str, source: str, uids: Sequence[int], target: str, *, move: bool = False
    ) -> list[tuple[int, int]]:
        """Copy (or move, atomically) messages; returns (source UID, new UID) pairs."""
        ...

    async def copy_across(
        self,
        source_account: str,
        source: str,
        uids: Sequence[int],
        target_account: str,
        target: str,
        *,
        move: bool = False,
        keep_flags: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None,
    ) -> list[tuple[int, int]]:
        """:meth:`copy_messages` between two accounts' mailboxes (shared mailboxes,
        RFC 4314); (source UID, new UID) pairs.

        The target account's quota is charged, for a MOVE too when the owner changes:
        QuotaExceededError and nothing written (RFC 9208 §4.4). ``keep_flags``: given a
        message's flags, those the copy keeps (the rest are the user's to set only with
        rights it lacks there, RFC 4314 §4). MailboxError NONEXISTENT for either mailbox.
        """
        ...

    async def changes_since(self, account: str, mailbox: str, modseq: int) -> Changes: ...

    def change_counter(self, account: str, mailbox: str) -> int:
        """Count of this process's commits that touched the mailbox, read without I/O.

        Unchanged since the last look means no change *from this process*; writers in
        other processes (the CLI) are not counted, so callers still poll now and then.
        """
        ...

    def account_counter(self, account: str) -> int:
        """:meth:`change_counter` for all of the account at once: any mailbox's messages,
        its mailbox names and its subscriptions (what NOTIFY watches, RFC 5465)."""
        ...

    async def wait_for_account(self, account: str, counter: int, timeout: float) -> bool:
        """Wait until :meth:`account_counter` is no longer ``counter``; False on timeout.

        Like :meth:`change_counter`, only commits this process made or heard of count:
        a caller looks at the store itself now and then.
        """
        ...

    # -- URLAUTH (RFC 4467 §2.2): one secret access key per mailbox ----------------------

    async def urlauth_key(self, account: str, mailbox: str, *, create: bool = False) -> bytes:
        """The mailbox access key that signs the mailbox's URLAUTH URLs: 32 random octets,
        made (durably) on first use when ``create``; b"" when there is none.

        The key belongs to this mailbox only: a mailbox deleted and made again under the
        same name starts without one. MailboxError NONEXISTENT for a missing mailbox.
        """
        ...

    async def urlauth_reset(self, account: str, mailbox: str | None = None) -> None:
        """Forget the mailbox's access key, or every key of the account when None: the
        URLs authorised with them stop working (RESETKEY). MailboxError NONEXISTENT."""
        ...

    async def text_candidates(
        self, account: str, mailbox: str, needles: Sequence[str]
    ) -> tuple[set[int], set[int]]:
        """(UIDs that may contain all ``needles``, UIDs not indexed yet).

        The first is a superset of the matches, to verify, and includes the second;
        needles and indexed text are compared as given (callers casefold both).
        """
        ...

    async def index_text(self, account: str, mailbox: str, texts: dict[int, str]) -> None:
        """Record the searchable text of messages by UID for :meth:`text_candidates`."""
        ...

    async def index_texts(self, texts: Mapping[tuple[str, str], Mapping[int, str]]) -> None:
        """:meth:`index_text` for many (account, mailbox) at once, as one index write."""
        ...

    async def queue_list(self) -> list[QueueEntry]: ...

    async def queue_due(
        self, now: float, limit: int = 100, exclude: Collection[int] = ()
    ) -> list[QueuedMessage]:
        """Messages with a recipient still ``queued`` whose next attempt is due.

        ``exclude``: ids the caller is already working on (the runner's in-flight set),
        so a full queue does not return the same busy messages on every refill.
        """
        ...

    async def queue_get(self, queue_id: int) -> QueuedMessage | None: ...

    def queue_read(self, queue_id: int, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """The queued message's bytes (without the local-delivery Return-Path)."""
        ...

    async def queue_update(self, queue_id: int, updates: Sequence[RecipientUpdate]) -> bool:
        """Record attempt outcomes durably; True when the message left the queue.

        A message is removed only once every recipient is delivered or failed.
        """
        ...

    async def queue_delete(self, queue_id: int) -> bool: ...

    async def queue_retry(self, queue_id: int | None = None, now: float | None = None) -> int:
        """Make queued recipients (of one message, or all) due now; returns how many."""
        ...

    async def queue_next_due(self) -> float | None:
        """The earliest next attempt of any queued recipient, or None if the queue is idle."""
        ...

    async def queue_summary(self, cap: int = 1_000_000) -> QueueSummary:
        """Queue size and age; counts stop at ``cap`` so the cost stays bounded however
        full the queue is (it runs at every metrics scrape)."""
        ...

    # -- quotas (RFC 9208): one quota root per account, usage kept exact by the store --

    def set_default_quota(self, storage: int | None, messages: int | None) -> None:
        """The limits of accounts that have none of their own (``[delivery] quota``)."""
        ...

    async def get_quota(self, account: str) -> Quota:
        """The account's limits (its own, else the default) and its usage now."""
        ...

    async def quota_refusal(self, account: str, size: int, count: int = 1) -> bool | None:
        """An early answer (SMTP RCPT, before filing) to :meth:`Quota.refusal`: None may
        come from this node's copy of the quota, a moment old (the write itself checks
        again, atomically); a refusal always comes from a fresh read."""
        ...

    async def set_quota(self, account: str, storage: QuotaLimit, messages: QuotaLimit) -> Quota:
        """Set the account's limits durably (creating its store entry); returns the quota."""
        ...

    def observe_quota(self, observer: Callable[[str], None] | None) -> None:
        """Call ``observer(account)`` on the event loop after a commit of this process
        took the account's usage past 90 % of a limit (a warning is due); None stops it."""
        ...

    def observe_commits(self, observer: Callable[[float, int], None] | None) -> None:
        """Call ``observer(seconds, writes)`` after every group commit of mail writes, on
        the committing thread; None stops it."""
        ...

    # -- MDA: Sieve scripts, vacation memory, junk-filter tokens --------------------------
    # Kept here rather than in the directory: scripts, vacation memory and token counts
    # are per-account user data that follow the mailboxes (backup, account deletion).

    async def sieve_list(self, account: str) -> list[tuple[str, bool]]:
        """The account's scripts as (name, active), by name."""
        ...

    async def sieve_get(self, account: str, name: str) -> str | None: ...

    async def sieve_put(self, account: str, name: str, text: str) -> None:
        """Create or replace a script (an active one stays active, RFC 5804 §2.6)."""
        ...

    async def sieve_delete(self, account: str, name: str) -> None:
        """MailboxError code NONEXISTENT or ACTIVE (RFC 5804 §2.10)."""
        ...

    async def sieve_rename(self, account: str, old: str, new: str) -> None:
        """MailboxError code NONEXISTENT or ALREADYEXISTS (RFC 5804 §2.11.1)."""
        ...

    async def sieve_activate(self, account: str, name: str | None) -> None:
        """Make ``name`` the only active script; None deactivates all (RFC 5804 §2.8)."""
        ...

    async def sieve_active(self, account: str) -> tuple[str, str] | None:
        """(name, text) of the active script, or None."""
        ...

    async def vacation_seen(self, account: str, handle: str, sender: str, days: int) -> bool:
        """Check-and-record a vacation response (RFC 5230 §4.2), durably.

        True when ``sender`` already got the ``handle`` response within ``days``
        (no reply now); otherwise records the reply as sent now and returns False.
        """
        ...

    async def junk_counts(
        self, account: str, tokens: Collection[str]
    ) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """(spam messages, ham messages, token -> (spam count, ham count)) for the account."""
        ...

    async def junk_learn(
        self, account: str, tokens: Collection[str], spam: bool, *, unlearn: bool = False
    ) -> None:
        """Count one message's tokens as spam or ham (or take a count back), bounded in size."""
        ...

    # -- import bookkeeping: message digests ------------------------------------------
    # Importers skip messages already present, so a rerun adds no duplicates.

    async def message_digests(self, account: str, mailbox: str) -> dict[int, str]:
        """SHA-256 (hex) of every message's stored bytes in a mailbox, by UID.

        Each store records a body's digest with the body (:meth:`deliver`), so new mail
        is never hashed here; a body stored without one (by an older version) is hashed
        now and remembered, so the answer is complete however the mail arrived.
        """
        ...

    async def record_digests(self, account: str, mailbox: str, digests: dict[int, str]) -> None:
        """Remember digests the caller computed while storing (UID -> SHA-256 hex).

        A digest the store already holds for a body is kept (the first one learnt)."""
        ...

    # -- SAVEDATE (RFC 8514) ------------------------------------------------------------

    async def save_dates(self, account: str, mailbox: str, uids: Sequence[int]) -> dict[int, float]:
        """When each of ``uids`` was saved into the mailbox (delivery, APPEND, COPY, MOVE),
        as a Unix time; messages stored before save dates were kept are absent."""
        ...

    # -- METADATA (RFC 5464): annotations of the account and of its mailboxes ---------
    # Entry names arrive checked and lower-cased (``/private/…`` or ``/shared/…``);
    # ``mailbox`` None is the server (account) level.  A mailbox's entries follow it
    # through a RENAME and end with it.

    async def metadata_get(
        self, account: str, mailbox: str | None, entries: Sequence[str]
    ) -> dict[str, bytes]:
        """Every entry that is one of ``entries`` or lies below one (``entry/…``);
        MailboxError NONEXISTENT when the mailbox does not exist."""
        ...

    async def metadata_set(
        self,
        account: str,
        mailbox: str | None,
        values: Mapping[str, bytes | None],
        *,
        max_entries: int = 0,
    ) -> None:
        """Set (bytes) or remove (None) entries, all or none; MailboxError
        ``METADATA TOOMANY`` when the account would hold more than ``max_entries``
        entries in all (0: no limit), NONEXISTENT when the mailbox does not exist."""
        ...

    # -- Access control lists (RFC 4314): mailboxes shared with other accounts ---------
    # Identifiers are account names or ``anyone``; rights are RFC 4314 §2.1 letters.
    # Entries follow the mailbox through a RENAME and end with it, and go with either
    # account.  The owner's own rights are not stored: the caller grants them.

    async def acl_get(self, account: str, mailbox: str) -> dict[str, str]:
        """Identifier -> rights of ``account``'s ``mailbox``; MailboxError NONEXISTENT."""
        ...

    async def acl_set(self, account: str, mailbox: str, identifier: str, rights: str) -> None:
        """Replace ``identifier``'s rights ("" removes the entry); MailboxError
        NONEXISTENT when the mailbox does not exist."""
        ...

    async def acl_rights(self, account: str, mailbox: str, identifier: str) -> str:
        """The rights ``identifier`` holds there (its entry and ``anyone``'s), sorted;
        "" for a missing mailbox, so a caller cannot tell it from one not shared."""
        ...

    async def acl_shared(self, identifier: str) -> list[tuple[str, str, str]]:
        """(owner, mailbox, rights) of every other account's mailbox with an entry for
        ``identifier`` or ``anyone``, sorted."""
        ...

    # -- TLS certificates obtained by ACME (docs/tls.md) ---------------------------------

    async def tls_cert_get(self, name: str) -> TlsCertificate | None:
        """The certificate (or account key) stored under ``name``."""
        ...

    async def tls_cert_put(self, cert: TlsCertificate) -> None:
        """Store ``cert`` under its name, replacing what was there (durable on return)."""
        ...

    async def tls_cert_list(self) -> list[TlsCertificate]:
        """Every stored certificate and account key, by name."""
        ...

    # -- DMARC and TLS reports (docs/reports.md) ------------------------------------------

    async def report_add(self, report: ReceivedReport) -> int:
        """Keep a received report (its ``id`` is ignored); returns its id.  The same
        (kind, org, report_id) again is the same report: the first id is returned."""
        ...

    async def report_list(self, kind: str | None = None, limit: int = 1000) -> list[ReceivedReport]:
        """Received reports, newest first, without their ``data``."""
        ...

    async def report_get(self, report_id: int) -> ReceivedReport | None:
        """One received report with its ``data``."""
        ...

    async def report_prune(self, before: float) -> int:
        """Remove received reports that arrived before ``before``; how many went."""
        ...

    async def report_tally(self, tallies: Sequence[ReportTally], *, max_rows: int = 10_000) -> int:
        """Add each tally's count to its (kind, domain, key) row, made at need; a new row
        for a (kind, domain) already holding ``max_rows`` is dropped.  Returns how many
        tallies were dropped (the bound on what a flood of distinct results costs)."""
        ...

    async def report_tally_domains(self, kind: str) -> list[str]:
        """The domains that have rows of ``kind`` waiting."""
        ...

    async def report_take(self, kind: str, domain: str) -> list[ReportTally]:
        """Remove and return every row of (kind, domain), in one transaction."""
        ...

    async def report_claim(
        self, name: str, owner: str, now: float, interval: float, lease: float
    ) -> float | None:
        """Take the job ``name`` for ``owner`` when it last finished ``interval`` seconds
        or more before ``now`` and no other owner holds it: it is then held until
        ``now + lease`` and the time it last finished (0.0 if never) is returned; else
        ``None``.  On a cluster only one node wins (the daily report run, rate limits)."""
        ...

    async def report_done(self, name: str, owner: str, when: float) -> None:
        """The job ``name`` held by ``owner`` finished at ``when``: its lease ends."""
        ...

    async def report_release(self, name: str, owner: str) -> None:
        """Give the job back unfinished (its last finish time is kept)."""
        ...

    # -- sending identities and submissions (JMAP Identity, EmailSubmission) --------------
    # One counter per (account, kind) orders every change, like a mailbox's MODSEQ.

    async def records(self, account: str, kind: str, since: int = 0) -> tuple[int, list[Record]]:
        """The counter now and every record of ``kind`` changed after ``since`` (0: all
        live ones; above 0, tombstones of removed ones too), oldest change first."""
        ...

    async def record_get(self, account: str, kind: str, ident: str) -> Record | None:
        """The live record ``ident`` of ``kind``, or None (never made, or removed): one
        keyed read, where ``records`` would read them all (a queue outcome's submission)."""
        ...

    async def record_put(
        self, account: str, kind: str, ident: str, data: str | None, *, keep: int = 0
    ) -> int:
        """Create or replace a record (``data`` JSON), or remove it (``data`` None, a
        no-op for an unknown id); the new counter, durable on return.  ``keep`` > 0:
        also forget the oldest live records of the kind beyond that many."""
        ...

    # -- web sessions: the webmail's logins, good on every node (docs/webmail.md) --------

    async def web_session_put(self, key: str, account: str, expires: float) -> None:
        """Keep (or extend) session ``key`` of ``account`` until ``expires`` (Unix time),
        durably; sessions already expired are forgotten on the way. ``key`` is a digest
        of the session's secret, never the secret."""
        ...

    async def web_session_get(self, key: str) -> tuple[str, float] | None:
        """The account and expiry of session ``key``; None when unknown or expired."""
        ...

    async def web_session_delete(self, key: str) -> None:
        """Forget session ``key`` (a logout); nothing happens when it is unknown."""
        ...

    async def web_sessions_end(self, account: str, keep: str = "") -> int:
        """End every session of ``account`` but ``keep`` (a password change); how many."""
        ...

    # -- webhooks: HTTP calls waiting to be made, durable like the mail queue -----------
    # (correo.webhooks; docs/webhooks.md).  Leases as for the queue: on PostgreSQL one
    # node makes each attempt; a node that dies leaves a lease that runs out.

    async def webhook_add(self, calls: Sequence[WebhookCall], now: float) -> list[int]:
        """Queue ``calls`` in one durable write, due at ``now``; their ids, in order."""
        ...

    async def webhook_due(
        self, now: float, limit: int, exclude: Collection[int] = (), lease: float = 300.0
    ) -> list[WebhookEntry]:
        """Calls whose next attempt is due, leased to this node for ``lease`` seconds
        (calls another node holds are skipped; this node's own old leases are not)."""
        ...

    async def webhook_done(self, webhook_id: int) -> None:
        """The call was answered 2xx (or is given up): forget it, durably."""
        ...

    async def webhook_failed(self, webhook_id: int, next_attempt: float, error: str) -> None:
        """Count a failed attempt, record why, and end the lease until ``next_attempt``."""
        ...

    async def webhook_list(self) -> list[WebhookEntry]:
        """Every queued call, oldest first (payloads left out: ``b""``)."""
        ...

    async def webhook_get(self, webhook_id: int) -> WebhookEntry | None: ...

    async def webhook_retry(self, webhook_id: int | None, now: float) -> int:
        """Make one call (or all) due at ``now``; how many."""
        ...

    async def webhook_delete(self, webhook_id: int) -> bool: ...

    async def webhook_next_due(self) -> float | None:
        """When the earliest call is due (leases counted), or None when none is queued."""
        ...

    async def webhook_key(self) -> bytes:
        """The store's key for signing attachment links, made on first use and shared by
        every node, so a link one node wrote is honoured by all and survives restarts."""
        ...

    async def expunged_digests(self, account: str, mailbox: str, modseq: int) -> dict[int, str]:
        """SHA-256 (hex) of what each UID expunged after ``modseq`` held, where the
        store had recorded it (:meth:`message_digests` records every one it lists)."""
        ...
