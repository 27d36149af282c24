"""What the queue runner files itself rather than sends out: copies for recipients in
local domains (through local delivery: Sieve, vacation and the junk filter apply to
queued mail too) and delivery status notifications to the envelope sender (RFC 3464),
filed locally or queued.  Mixed into :class:`correo.queue.runner.QueueRunner`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from correo.delivery.facts import FactsBuilder, finish_facts
from correo.delivery.local import LocalRecipient
from correo.queue.attempt import RecipientResult, SuccessAction
from correo.queue.dsn import (
    SUCCESS_ACTIONS,
    RecipientReport,
    compose_dsn,
    header_section,
    without_success,
)
from correo.store.api import (
    DeliveryTarget,
    Envelope,
    QueuedMessage,
    QueuedRecipient,
    QueueRecipientState,
    StoreError,
)
from correo.webhooks.events import QUEUE_DELIVERY

if TYPE_CHECKING:
    from correo.config import Config
    from correo.delivery.local import LocalDelivery
    from correo.directory import Directory
    from correo.log import Logger
    from correo.store.api import MailStore

__all__ = ["HandOff"]


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


class HandOff:
    """Mixed into QueueRunner, which provides the state declared here."""

    if TYPE_CHECKING:
        config: Config
        store: MailStore
        directory: Directory
        log: Logger
        mda: LocalDelivery | None
        clock: Callable[[], float]

        def kick(self) -> None: ...

    async def _deliver_local(
        self, message: QueuedMessage, recipients: Sequence[QueueRecipientState]
    ) -> list[RecipientResult]:
        """Recipients in local domains go to the store, never out."""
        QUEUE_DELIVERY.set(True)  # webhooks: the queue reports these itself (own task)
        targets: list[DeliveryTarget] = []
        local: list[LocalRecipient] = []
        forwards: list[QueuedRecipient] = []
        results: list[RecipientResult] = []
        ok: list[str] = []
        account_of: dict[str, str] = {}
        actions: dict[str, SuccessAction] = {}
        for r in recipients:
            res = self.directory.resolve(r.address)
            if res is None or (res.account is None and not res.forward):
                results.append(
                    RecipientResult(r.address, "failed", "5.1.1", "550 5.1.1 user unknown", "")
                )
                continue
            if res.account is not None:
                account_of[r.address] = res.account
                t = DeliveryTarget(res.account)
                if t not in targets:
                    targets.append(t)
                    local.append(LocalRecipient(res.account, r.address))
            notify = r.notify
            if res.account is not None:
                actions[r.address] = "delivered"
            elif len(res.forward) == 1:
                actions[r.address] = ""  # RFC 3461 §6.2.7.3: NOTIFY goes on with the mail
            else:
                # RFC 3461 §6.2.7.3: an alias to several addresses reports "expanded";
                # SUCCESS is not asked again of each of them.
                actions[r.address] = "expanded"
                notify = without_success(r.notify)
            if res.account is not None and res.forward:
                notify = without_success(r.notify)  # reported as delivered here
            forwards += [QueuedRecipient(f, notify, r.orcpt) for f in res.forward]
            ok.append(r.address)
        if not ok:
            return results
        prefix = f"Return-Path: <{message.sender}>\r\n".encode()  # RFC 5321 §4.4
        spool = self.store.new_spool()
        facts = FactsBuilder()
        envelope = Envelope(
            sender=message.sender,
            envid=message.envid,
            ret=message.ret,
            body=message.body,
            smtputf8=message.smtputf8,
            authenticated=message.authenticated,
        )
        try:
            spool.write(prefix)
            facts.feed(prefix)
            async for chunk in self.store.queue_read(message.id):
                spool.write(chunk)
                facts.feed(chunk)
            over: dict[str, bool] = {}  # account -> permanent: refused over quota
            if self.mda is not None and local:
                # Sieve, vacation and the junk filter apply to queued local mail too.
                report = await self.mda.deliver(
                    spool,
                    envelope,
                    local,
                    forwards,
                    queue_skip=len(prefix),
                    facts=await finish_facts(facts),
                    refusal="none",
                )
                for who, outcome in zip(local, report.outcomes, strict=False):
                    if outcome.status in ("4.2.2", "5.2.2"):
                        over[who.account] = outcome.status == "5.2.2"
            else:
                done = await self.store.deliver(
                    spool,
                    envelope,
                    targets,
                    forwards,
                    queue_skip=len(prefix),
                    facts=await finish_facts(facts) if targets else None,
                    quota_fallback={},
                )
                over = dict(done.over_quota)
        except (StoreError, OSError) as exc:
            spool.discard()
            text = f"451 4.3.0 local delivery failed: {exc}"
            return results + [RecipientResult(a, "deferred", "4.3.0", text, "", False) for a in ok]
        if forwards:
            self.kick()
        for address in [a for a in ok if account_of.get(a) in over]:
            ok.remove(address)  # RFC 3463 X.2.2: retried (mailbox full) or bounced (too large)
            if over[account_of[address]]:
                text = "552 5.2.2 message too large for the mailbox quota"
                results.append(RecipientResult(address, "failed", "5.2.2", text, "", False))
            else:
                text = "452 4.2.2 mailbox full"
                results.append(RecipientResult(address, "deferred", "4.2.2", text, "", False))
        return results + [
            RecipientResult(
                a,
                "delivered",
                "2.0.0",
                "250 2.0.0 delivered to mailbox"
                if actions[a] == "delivered"
                else "250 2.0.0 alias expanded",
                "",
                False,
                actions[a],
            )
            for a in ok
        ]

    async def _returned(self, message: QueuedMessage, *, success: bool) -> tuple[bytes, bool]:
        """What a DSN returns of the message, and whether that is the header section only."""
        limit = self.config.outbound.bounce_size_limit
        ret = (message.ret or "").upper()
        # RFC 3461 §4.3: without RET the choice is ours; a success notice needs no copy.
        headers_only = ret == "HDRS" or (success and ret != "FULL") or message.size > limit
        original = await self._read_prefix(message.id, limit if not headers_only else 256 * 1024)
        return (header_section(original) if headers_only else original), headers_only

    async def _send_dsn(
        self,
        message: QueuedMessage,
        reports: list[RecipientReport],
        returned: tuple[bytes, bool] | None = None,
    ) -> None:
        """Compose and file a DSN to the envelope sender, from the null sender."""
        if returned is None:
            success = all(r.action in SUCCESS_ACTIONS for r in reports)
            returned = await self._returned(message, success=success)
        original, headers_only = returned
        dsn = compose_dsn(
            reporting_mta=self.config.hostname,
            recipient=message.sender,
            reports=reports,
            original=original,
            headers_only=headers_only,
            arrival=message.created,
            now=self.clock(),
            envid=message.envid,
            utf8=message.smtputf8,  # RFC 6533
        )
        envelope = Envelope(
            sender="", helo=self.config.hostname, body="8BITMIME", smtputf8=message.smtputf8
        )
        spool = self.store.new_spool()
        try:
            resolution = (
                self.directory.resolve(message.sender)
                if self.directory.is_local_domain(_domain(message.sender))
                else None
            )
            if resolution is not None and resolution.account is not None:
                prefix = b"Return-Path: <>\r\n"
                spool.write(prefix + dsn)
                await self.store.deliver(
                    spool, envelope, [DeliveryTarget(resolution.account)], queue_skip=len(prefix)
                )
            elif self.directory.is_local_domain(_domain(message.sender)):
                spool.discard()
                self.log.warning("queue.dsn_undeliverable", sender=message.sender)
                return
            else:
                spool.write(dsn)
                await self.store.deliver(spool, envelope, [], [QueuedRecipient(message.sender)])
                self.kick()
        except (StoreError, OSError) as exc:
            spool.discard()
            self.log.error("queue.dsn_failed", queue_id=message.id, error=str(exc))
            raise
        self.log.info(
            "queue.dsn",
            queue_id=message.id,
            to=message.sender,
            action=reports[0].action,
            recipients=len(reports),
        )

    async def _read_prefix(self, queue_id: int, limit: int) -> bytes:
        data = bytearray()
        body: AsyncIterator[bytes] = self.store.queue_read(queue_id)
        try:
            async for chunk in body:
                data += chunk
                if len(data) >= limit:
                    break
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        return bytes(data[:limit])
