"""The asyncio shell around :mod:`correo.smtp`: one instance per SMTP connection.

The sans-I/O core parses and keeps protocol state; this module supplies policy (who may
relay, who may send as whom, limits), performs effects (TLS, password checks, storing
the message) and turns every outcome into a reply.  Roles:

* ``mx`` — mail for local domains from anyone, no AUTH (RFC 5321);
* ``submission`` / ``submissions`` — AUTH required, under TLS (RFC 6409, RFC 8314).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from correo.delivery.facts import FactsBuilder, finish_facts
from correo.delivery.local import DeliveryReport, LocalRecipient
from correo.delivery.routing import RecipientRoute, route_recipient
from correo.delivery.trace import protocol_name, received_field, return_path_field
from correo.mailauth.inbound import Action, AuthVerdict, MessageAuthenticator
from correo.mailauth.results import strip_forged_results
from correo.mailauth.signing import SigningStream
from correo.message.headers import (
    HeaderCollector,
    Originators,
    addresses_in,
    originators,
    parse_fields,
)
from correo.queue.dsn import return_path_authenticated, without_success
from correo.queue.routing import handoff_domains
from correo.sasl import (
    Challenge,
    Credentials,
    Mechanism,
    ScramProof,
    Step,
    Success,
    server_mechanism,
)
from correo.server.auth import check_password, sasl_mechanisms, scram_context
from correo.server.connection import Connection, remaining
from correo.server.context import ServerContext, new_session_id
from correo.server.store_failure import smtp_reply
from correo.smtp import (
    NEED_DATA,
    Auth,
    AuthCancel,
    AuthResponse,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    SmtpLimits,
    StartTls,
    State,
    Vrfy,
    ehlo_reply,
)
from correo.store.api import (
    DeliveryTarget,
    Envelope,
    MessageFacts,
    QueuedRecipient,
    Spool,
    StoreError,
    spool_insert,
    spool_read,
)

__all__ = ["SmtpSession"]

_NOTIFY_VALUES = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}


@dataclass
class _Transaction:
    sender: str
    params: dict[str, str | None]
    targets: list[DeliveryTarget] = field(default_factory=list)
    remote: list[QueuedRecipient] = field(default_factory=list)
    rcpt_count: int = 0
    spool: Spool | None = None
    headers: HeaderCollector | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    facts: FactsBuilder | None = None
    auth: MessageAuthenticator | None = None
    signing: SigningStream | None = None
    quarantine: bool = False
    auth_summary: tuple[str, str] | None = None  # (SPF result, DMARC result) for the log
    queue_id: str = ""
    #: One entry per accepted RCPT: its local recipient, or None if only forwarded.
    rcpts: list[LocalRecipient | None] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    #: Report kinds ("dmarc", "tlsrpt") whose report address is a recipient.
    report_kinds: set[str] = field(default_factory=set)


class SmtpSession:
    def __init__(self, ctx: ServerContext, conn: Connection, role: str) -> None:
        self.ctx = ctx
        self.conn = conn
        self.role = role
        self.submission = role in ("submission", "submissions")
        self.id = new_session_id()
        limits = ctx.config.limits
        self.core = ServerConnection(
            SmtpLimits(
                max_command_line=limits.command_line,
                max_data_line=limits.data_line,
                max_message_size=limits.message_size,
                max_auth_line=limits.auth_line,
                max_unknown_commands=limits.bad_commands,
            )
        )
        self.core.tls_active = conn.tls_active
        self.helo = ""
        self.extended = False
        self.user: str | None = None
        self.tx: _Transaction | None = None
        self.mechanism: Mechanism | None = None
        self.sasl_account: str | None = None  # SCRAM: verified, waiting for the last reply
        self.messages = 0
        self.closing = False
        self.shutdown_requested = False
        self.last_code = 0
        protocol = "lmtp" if role == "lmtp" else "smtp"  # metrics, bound once per session
        self._commands = ctx.metrics.commands.labels(protocol)
        self._replies = ctx.metrics.code_counters(protocol)
        self._accepted = ctx.metrics.accepted.labels(role)

    # -- driving loop ---------------------------------------------------------------

    async def run(self) -> None:
        log = self.ctx.log
        log.info("smtp.connect", session=self.id, peer=self.conn.peer, role=self.role)
        started = time.monotonic()
        try:
            self.conn.write(Reply(220, None, f"{self.ctx.hostname} ESMTP correo").to_bytes())
            if await self._flush():
                await self._loop()
        except asyncio.CancelledError:
            # Graceful shutdown between transactions (RFC 5321 §3.8).
            self.conn.write(
                Reply(421, "4.3.2", "Service shutting down, try again later").to_bytes()
            )
            raise
        finally:
            self._abort_transaction()
            await self.conn.close()
            log.info(
                "smtp.disconnect",
                session=self.id,
                peer=self.conn.peer,
                messages=self.messages,
                seconds=time.monotonic() - started,
            )

    @property
    def in_transaction(self) -> bool:
        """True from an accepted MAIL to the reply after the data: don't cut it off."""
        return self.tx is not None

    async def _flush(self) -> bool:
        """Write the queued replies; False (connection dropped) if the peer won't read."""
        if not await self.conn.flush(self.ctx.config.limits.command_timeout):
            self.ctx.log.info("smtp.write_timeout", session=self.id, peer=self.conn.peer)
            self.closing = True
        return not self.conn.closed

    async def _loop(self) -> None:
        limits = self.ctx.config.limits
        debug = self.ctx.log.enabled("debug")
        waiting_since = time.monotonic()  # when we began waiting for the next command
        while not self.closing and not self.conn.closed:
            in_data = self.core.state in (State.DATA, State.BDAT)
            if in_data:
                timeout = limits.data_timeout  # RFC 5321 §4.5.3.2.6: per block of data
            else:
                # RFC 5321 §4.5.3.2.7: the wait for a whole command, not for each byte of
                # it, so a line dribbled a byte at a time (slowloris) cannot hold a slot.
                timeout = remaining(limits.command_timeout, waiting_since)
            try:
                data = await self.conn.read(timeout)
            except TimeoutError:
                self.conn.write(
                    Reply(421, "4.4.2", f"{self.ctx.hostname} Timeout, closing").to_bytes()
                )
                self.ctx.log.info("smtp.timeout", session=self.id, peer=self.conn.peer)
                return
            self.core.receive_data(data)
            handled = in_data
            while not self.closing:
                event = self.core.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    return
                handled = True
                if not isinstance(event, DataChunk):  # the end of the data is answered too
                    self._commands.inc()
                if debug and not isinstance(event, DataChunk):
                    started = time.monotonic()
                    await self._handle(event)
                    self.ctx.log.debug(
                        "smtp.command",
                        session=self.id,
                        command=type(event).__name__,
                        reply=self.last_code,
                        ms=round((time.monotonic() - started) * 1000, 2),
                    )
                else:
                    await self._handle(event)
                await self.conn.pace()
            if not await self._flush():
                return
            if handled:
                waiting_since = time.monotonic()
            if self.shutdown_requested and self.tx is None:
                self.conn.write(Reply(421, "4.3.2", "Service shutting down").to_bytes())
                return

    def _reply(self, code: int, status: str | None, text: str | tuple[str, ...]) -> None:
        self._send(Reply(code, status, text))

    def _send(self, reply: Reply) -> None:
        self.last_code = reply.code
        self._replies[reply.code // 100].inc()
        self.conn.write(self.core.send(reply))

    async def _handle(self, event: object) -> None:
        match event:
            case DataChunk(data=data):
                self._data_chunk(data)
            case DataEnd():
                if not await self._dev_refused("data", event.last):
                    await self._data_end(event)
            case Helo():
                self._helo(event)
            case MailFrom():
                self._mail(event)
            case RcptTo():
                if not await self._dev_refused("rcpt"):
                    await self._rcpt(event)
            case Data():
                self._data()
            case Rset():
                self._abort_transaction()
                self._reply(250, "2.0.0", "Ok")
            case Noop():
                self._reply(250, "2.0.0", "Ok")
            case Quit():
                self._reply(221, "2.0.0", "Bye")
                self.closing = True
            case StartTls():
                await self._starttls()
            case Auth():
                await self._auth_start(event)
            case AuthResponse(data=data):
                await self._auth_step(data)
            case AuthCancel():
                self.mechanism = None
                self._reply(501, "5.0.0", "Authentication cancelled")
            case Vrfy():
                self._reply(
                    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
                )
            case Expn():
                self._reply(502, "5.5.1", "EXPN not available")
            case Help():
                self._reply(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS AUTH",
                )
            case CommandError(reply=reply, close=close):
                self.ctx.log.debug("smtp.error", session=self.id, reply=reply.code)
                self._send(reply)
                if close:
                    self.closing = True
            case _:
                raise AssertionError(f"unhandled SMTP event {event!r}")

    async def _dev_refused(self, stage: str, last: bool = True) -> bool:
        """``correo dev --delay/--reject-rate/--tempfail-rate``: True if refused here."""
        dev = self.ctx.dev
        if dev is None or not last or self.tx is None:
            return False
        reply = await dev.chaos.before(stage)
        if reply is None:
            return False
        self._send(reply)
        if stage == "data":
            self._abort_transaction()
        return True

    # -- commands -------------------------------------------------------------------

    def _extensions(self) -> list[str]:
        ext = ["PIPELINING"]
        size = self.ctx.config.limits.message_size
        ext.append(f"SIZE {size}" if size else "SIZE")
        ext += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
        if not self.conn.tls_active and self.ctx.tls is not None:
            ext.append("STARTTLS")
        may_auth = self.conn.tls_active or self.ctx.config.auth.allow_plaintext
        if self.submission and may_auth and self.user is None:
            ext.append(" ".join(["AUTH", *sasl_mechanisms(self.ctx, self.conn), "LOGIN"]))
        return ext

    def _helo(self, event: Helo) -> None:
        self._abort_transaction()
        self.helo = event.name
        self.extended = event.extended
        if event.extended:
            reply = ehlo_reply(self.ctx.hostname, event.name, self._extensions())
            self._send(reply)
        else:
            self._reply(250, None, f"{self.ctx.hostname}")

    async def _starttls(self) -> None:
        if self.ctx.tls is None:
            self._reply(454, "4.7.0", "TLS not available")
            return
        self._reply(220, "2.0.0", "Ready to start TLS")
        if not await self._flush():
            return
        if not await self.conn.upgrade_tls(self.ctx.tls, self.ctx.log, "smtp", self.id):
            self.closing = True
            return
        self.core.tls_started()
        self.helo = ""

    async def _auth_start(self, event: Auth) -> None:
        if not self.submission:
            self._reply(503, "5.5.1", "Authentication not enabled on this port; use submission")
            return
        if not self.conn.tls_active and not self.ctx.config.auth.allow_plaintext:
            self._reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
            return
        if self.tx is not None:
            self._reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
            return
        mechanism = server_mechanism(event.mechanism, scram_context(self.ctx, self.conn))
        if mechanism is None:
            self._reply(504, "5.5.4", "Unrecognized authentication type")
            return
        self.mechanism = mechanism
        await self._auth_result(mechanism.start(event.initial))

    async def _auth_step(self, data: bytes) -> None:
        if self.mechanism is None:
            self._reply(503, "5.5.1", "No authentication in progress")
            return
        await self._auth_result(self.mechanism.step(data))

    async def _auth_result(self, step: Step) -> None:
        if isinstance(step, Challenge):
            self._reply(334, None, base64.b64encode(step.data).decode())
            return
        mechanism, self.mechanism = self.mechanism, None
        account, self.sasl_account = self.sasl_account, None
        if isinstance(step, Success) and account is not None:
            self.user = account  # the client took SCRAM's server-final message
            self._reply(235, "2.7.0", "Authentication successful")
            return
        if not isinstance(step, Credentials):
            self._reply(501, "5.5.2", "Malformed authentication data")
            return
        if step.authzid not in ("", step.authcid):
            # RFC 4954 §6: we let no one act for another; a failed AUTH is still answered.
            self._reply(535, "5.7.8", "Authorization identity not permitted")
            return
        account = await self._verify(step.authcid, step.password, step.proof)
        if account is None:
            return
        if step.proof is not None:  # RFC 5802 §3, RFC 4954 §4: server-final as a challenge
            self.mechanism, self.sasl_account = mechanism, account
            self._reply(334, None, base64.b64encode(step.proof.server_final).decode())
            return
        self.user = account
        self._reply(235, "2.7.0", "Authentication successful")

    async def _verify(self, user: str, password: str, proof: ScramProof | None) -> str | None:
        """Check a password or a SCRAM proof (throttled); sends the failure reply itself
        (RFC 4954 §6)."""
        outcome = await check_password(
            self.ctx,
            session=self.id,
            peer_ip=self.conn.peer_ip,
            user=user,
            password=password,
            proof=proof,
        )
        if outcome.locked:
            self._reply(454, "4.7.0", "Too many failed authentications; try again later")
        elif outcome.account is None:
            self._reply(535, "5.7.8", "Authentication credentials invalid")
        return outcome.account

    def _mail(self, event: MailFrom) -> None:
        if self.submission and self.user is None:
            self._reply(530, "5.7.0", "Authentication required")
            return
        if self.shutdown_requested:
            self._reply(421, "4.3.2", "Service shutting down")
            self.closing = True
            return
        params = event.params
        unknown = set(params) - {"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH"}
        if unknown:
            self._reply(555, "5.5.4", f"Unsupported MAIL parameter {sorted(unknown)[0]}")
            return
        limit = self.ctx.config.limits.message_size
        size = params.get("SIZE")
        if size is not None:
            if not size.isdigit() or len(size) > 20:
                self._reply(501, "5.5.4", "Bad SIZE parameter")
                return
            if limit and int(size) > limit:
                self._reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
                return
        body = (params.get("BODY") or "7BIT").upper()
        if body not in ("7BIT", "8BITMIME"):
            self._reply(555, "5.5.4", "Unsupported BODY type")
            return
        ret = params.get("RET")
        if ret is not None and ret.upper() not in ("FULL", "HDRS"):
            self._reply(501, "5.5.4", "Bad RET parameter")
            return
        if "SMTPUTF8" in params and params["SMTPUTF8"] is not None:
            self._reply(501, "5.5.4", "SMTPUTF8 takes no value")
            return
        sender = "" if event.path.address is None else str(event.path.address)
        if self.submission and sender:
            assert self.user is not None
            if not self.ctx.directory.may_send_as(self.user, sender):
                self.ctx.log.warning("smtp.spoof", session=self.id, user=self.user, sender=sender)
                self._reply(553, "5.7.1", f"Sender address rejected: not owned by {self.user}")
                return
        self.tx = _Transaction(sender=sender, params=dict(params))
        self._reply(250, "2.1.0", "Sender OK")

    async def _rcpt(self, event: RcptTo) -> None:
        tx = self.tx
        assert tx is not None  # the core refuses RCPT outside a transaction
        if tx.rcpt_count >= self.ctx.config.limits.recipients:
            self._reply(452, "4.5.3", "Too many recipients")
            return
        params = event.params
        unknown = set(params) - {"NOTIFY", "ORCPT"}
        if unknown:
            self._reply(555, "5.5.4", f"Unsupported RCPT parameter {sorted(unknown)[0]}")
            return
        notify = params.get("NOTIFY")
        if notify is not None:
            values = {v.strip().upper() for v in notify.split(",")}
            if not values <= _NOTIFY_VALUES or ("NEVER" in values and len(values) > 1):
                self._reply(501, "5.5.4", "Bad NOTIFY parameter")  # RFC 3461 §4.1
                return
        address = event.path.address
        assert address is not None
        if address.domain == "":  # <postmaster> (RFC 5321 §4.5.1)
            domains = self.ctx.directory.domains()
            if not domains:
                self._reply(550, "5.1.1", "No postmaster here")
                return
            local_part, domain = "postmaster", domains[0]
        else:
            local_part, domain = address.local, address.domain
        with self.ctx.directory.one_look():  # domain, address, postmaster: one view
            route = route_recipient(
                self.ctx.directory,
                local_part,
                domain,
                may_relay=self.submission and self.user is not None,
                # LMTP hand-off of local domains and NOTIFY=SUCCESS go through the queue
                handoff=handoff_domains(self.ctx.config.outbound.transport),
                notify_success=notify is not None and "SUCCESS" in notify.upper(),
                postmaster=self.ctx.config.delivery.postmaster,  # RFC 5321 §4.5.1
            )
        kind = self._report_kind(local_part, domain)
        if kind is not None:  # a report address takes reports, with or without an account
            tx.report_kinds.add(kind)
            if not route.accepted:
                route = RecipientRoute(250, "2.1.5", "Report address OK")
        self.ctx.log.debug(
            "smtp.rcpt", session=self.id, rcpt=f"{local_part}@{domain}", reply=route.code
        )
        if route.accepted and route.local and not route.remote:
            full = await self._over_quota(tx, [t.account for t in route.local if t.quota])
            if full is not None:
                self.ctx.log.info("smtp.over_quota", session=self.id, rcpt=f"{local_part}@{domain}")
                self._reply(*full)
                return
        if route.accepted:
            tx.rcpt_count += 1
            for target in route.local:
                if target not in tx.targets:
                    tx.targets.append(target)
            for remote in route.remote:
                tx.remote.append(QueuedRecipient(remote, notify, params.get("ORCPT")))
            first = route.local[0].account if route.local else None
            tx.rcpts.append(LocalRecipient(first, f"{local_part}@{domain}") if first else None)
        self._reply(route.code, route.status, route.text)

    async def _over_quota(
        self, tx: _Transaction, accounts: list[str]
    ) -> tuple[int, str, str] | None:
        """The RCPT reply when no account of the recipient has room (RFC 9208 usage;
        the delivery checks again atomically): 552 5.2.2 when the SIZE= the client
        declared (RFC 1870) can never fit, else 452 4.2.2 (RFC 3463 X.2.2)."""
        if not accounts:
            return None
        size = tx.params.get("SIZE")
        octets = max(1, int(size)) if size is not None and size.isdigit() else 1
        permanent = True
        mda = self.ctx.mda
        for account in accounts:
            try:
                if mda is not None and not await mda.quota_limited(account):
                    return None  # no limit: it fits (the delivery checks again)
                verdict = await self.ctx.store.quota_refusal(account, octets)
            except StoreError:
                return None  # the store is down: the delivery will say so
            if verdict is None:
                return None
            permanent = permanent and verdict
        if permanent:
            return 552, "5.2.2", "Message too large for the mailbox quota"
        return 452, "4.2.2", "Mailbox full; try again later"

    def _report_kind(self, local_part: str, domain: str) -> str | None:
        reports = self.ctx.reports
        if reports is None or self.submission or self.core.lmtp:
            return None
        return reports.kind_of(local_part, domain)

    async def _take_reports(self, tx: _Transaction, spool: Spool) -> None:
        """Keep the DMARC/TLS reports a message to a report address carries."""
        assert self.ctx.reports is not None
        if spool.size > self.ctx.reports.max_message:  # never read whole: refused
            self.ctx.log.warning("reports.refused", session=self.id, reason="too large")
            return
        data = await spool_read(spool)
        await self.ctx.reports.take_in(data, tx.report_kinds, session=self.id)

    def _data(self) -> None:
        tx = self.tx
        assert tx is not None
        self._open_spool(tx)
        self._reply(354, None, "End data with <CR><LF>.<CR><LF>")

    def _open_spool(self, tx: _Transaction) -> None:
        tx.spool = self.ctx.store.new_spool()
        tx.headers = HeaderCollector()
        resolver = self.ctx.resolver
        if not self.submission and not self.core.lmtp and resolver is not None:
            # SPF, DKIM, DMARC and ARC on inbound mail (MX role), streamed with the data.
            tx.auth = MessageAuthenticator(
                resolver,
                ip=self.conn.peer_ip,
                helo=self.helo,
                mail_from=tx.sender,
                authserv_id=self.ctx.hostname,
            )

    def _data_chunk(self, data: bytes) -> None:
        tx = self.tx
        if tx is None:
            return  # the core refused this BDAT; it only drains the octets
        if tx.spool is None:  # first BDAT chunk (RFC 3030)
            self._open_spool(tx)
        if tx.auth is not None:
            tx.auth.feed(data)
        assert tx.headers is not None
        if not tx.headers.complete:
            rest = tx.headers.feed(data)
            if rest is None:
                return
            data = rest
            self._begin_message(tx)
        self._spool(tx, data)

    def _spool(self, tx: _Transaction, data: bytes) -> None:
        """Stream message bytes to the store's spool and the IMAP facts builder."""
        assert tx.spool is not None
        try:
            tx.spool.write(data)
        except OSError as exc:
            self.ctx.log.error("smtp.spool_failed", session=self.id, error=str(exc))
            tx.spool.discard()
            tx.spool = _BrokenSpool()
            tx.facts = None
        if tx.facts is not None:
            tx.facts.feed(data)
        if tx.signing is not None:
            tx.signing.feed(data)

    def _begin_message(self, tx: _Transaction) -> None:
        """Header section complete: write trace fields, submission fix-ups, header."""
        assert tx.spool is not None and tx.headers is not None
        fields = parse_fields(tx.headers.header)
        tx.queue_id = new_session_id()
        trace = received_field(
            helo=self.helo or "unknown",
            peer_ip=self.conn.peer_ip,
            hostname=self.ctx.hostname,
            protocol=protocol_name(
                extended=self.extended,
                tls=self.conn.tls_active,
                authenticated=self.user is not None,
                lmtp=self.core.lmtp,
            ),
            queue_id=tx.queue_id,
            tls=self.conn.tls_description,
            authenticated=self.user if self.submission else None,
            recipient=str(tx.targets[0].account)
            if len(tx.targets) == 1 and not tx.remote
            else None,
        )
        tx.facts = FactsBuilder()
        self._spool(tx, return_path_field(tx.sender))
        sender_domain = _domain_of(fields, ("from",))
        signer = self.ctx.dkim_signers.get(sender_domain) if self.submission else None
        if signer is not None:
            tx.signing = signer.stream()  # sees exactly what is queued after Return-Path
        self._spool(tx, trace)
        if self.ctx.dev is not None:  # one mailbox for every address: keep who it was for
            self._spool(tx, self.ctx.dev.envelope_field(r.address for r in tx.rcpts if r))
        header = tx.headers.header
        if tx.auth is not None:
            header = strip_forged_results(header, self.ctx.hostname)  # RFC 8601 §5
        self._spool(tx, header)
        if self.submission:
            names = {name for name, _ in fields}
            # RFC 6409 §8.3 and §8.2: the MSA may add a missing Message-ID and Date.
            if "message-id" not in names:
                domain = self.ctx.hostname
                self._spool(tx, f"Message-ID: {make_msgid(domain=domain)}\r\n".encode())
            if "date" not in names:
                self._spool(
                    tx, f"Date: {format_datetime(datetime.now(UTC), usegmt=True)}\r\n".encode()
                )
        tx.fields = fields

    async def _data_end(self, event: DataEnd) -> None:
        tx = self.tx
        if tx is None:
            self._reply(503, "5.5.1", "No transaction")
            return
        if not event.last:
            self._reply(250, "2.0.0", "Chunk received")
            return
        spool = tx.spool
        if event.error is not None:
            self._send(event.error)
            self.ctx.log.info("smtp.rejected", session=self.id, reply=event.error.code)
            self._abort_transaction()
            return
        if spool is None:  # RFC 3030 §2: "BDAT 0 LAST" may be the only chunk
            self._open_spool(tx)
            spool = tx.spool
        assert tx.headers is not None and spool is not None
        if not tx.headers.complete:
            tx.headers.finish()
            self._begin_message(tx)
        reply = self._content_policy(tx)
        prefix = b""
        verdict: AuthVerdict | None = None
        if reply is None and tx.auth is not None:
            verdict = await tx.auth.finish(tx.fields)  # the same header section
            prefix = verdict.header
            tx.auth_summary = (
                str(verdict.spf.result),
                verdict.dmarc.status if verdict.dmarc is not None else "none",
            )
            if self.ctx.reports is not None and not tx.report_kinds:  # reports: not counted
                to = next((r.address for r in tx.rcpts if r is not None), "")
                self.ctx.reports.record_dmarc(verdict, self.conn.peer_ip, tx.sender, to)
            if verdict.action is not Action.ACCEPT:
                self.ctx.log.info(
                    "smtp.auth_results",
                    session=self.id,
                    id=tx.queue_id,
                    spf=verdict.spf.result,
                    dmarc=verdict.dmarc.status if verdict.dmarc is not None else None,
                    action=verdict.action.value,
                )
            if verdict.action is Action.REJECT:  # RFC 7489 §6.3 p=reject
                reply = Reply(550, "5.7.1", verdict.reject_text)
            elif verdict.action is Action.JUNK:  # p=quarantine
                tx.targets = [replace(t, mailbox="Junk") for t in tx.targets]
                tx.quarantine = True
        if reply is None and tx.signing is not None:
            prefix = await tx.signing.finish_async()  # a worker process's core
        if reply is None and isinstance(spool, _BrokenSpool):
            reply = Reply(451, "4.3.0", "Local error writing the message; try again later")
        if reply is not None:
            self._send(reply)
            self._abort_transaction()
            return
        ret = tx.params.get("RET")
        if not self.submission and not self.core.lmtp:
            # The MX's sender is unauthenticated: notices return headers only, and
            # success notices need an authenticated return path (queue/dsn.py).
            ret = "HDRS"  # RFC 3461 §4.3
            if not return_path_authenticated(tx.sender, verdict):
                tx.remote = [replace(r, notify=without_success(r.notify)) for r in tx.remote]
        envelope = Envelope(
            sender=tx.sender,
            helo=self.helo,
            peer=self.conn.peer_ip,
            authenticated=self.user,
            envid=tx.params.get("ENVID"),
            ret=ret,
            body=tx.params.get("BODY"),
            smtputf8="SMTPUTF8" in tx.params,
        )
        skip = len(return_path_field(tx.sender))
        try:
            if prefix and not isinstance(spool, _BrokenSpool):
                await spool_insert(spool, skip, prefix)
            inserted = (skip, len(prefix))
            facts = None
            if tx.facts is not None and tx.targets:
                facts = await finish_facts(tx.facts, inserted)
            if tx.report_kinds and self.ctx.reports is not None:
                await self._take_reports(tx, spool)
            if tx.targets or tx.remote:
                delivered = await self._deliver(tx, spool, envelope, skip, facts)
            else:  # only report addresses: their reports are kept, not the message
                spool.discard()
                delivered = DeliveryReport((), None)
        except (StoreError, OSError) as exc:
            self.ctx.log.error("smtp.store_failed", session=self.id, error=str(exc))
            self._send(smtp_reply(exc))  # 451 4.3.0, or 452 4.3.1 for a full disk
            tx.spool = None  # consumed by the delivery
            self._abort_transaction()
            return
        if delivered.refused is not None:  # RFC 5429 §2.1: Sieve reject before the 250
            refused = delivered.refused
            self._send(Reply(refused.code, refused.status, refused.text))
            self.tx = None
            return
        tx.spool = None
        if delivered.queue_id is not None:
            self.ctx.queue_wakeup.set()  # the queue runner delivers it now
        self.messages += 1
        self._accepted.inc()
        self.ctx.log.info(
            "smtp.accepted",
            session=self.id,
            id=tx.queue_id,
            peer=self.conn.peer,
            user=self.user,
            sender=tx.sender or "<>",
            local=len(tx.targets),
            queued=len(tx.remote),
            size=spool.size,
            queue_id=delivered.queue_id,
            spf=tx.auth_summary[0] if tx.auth_summary else None,
            dmarc=tx.auth_summary[1] if tx.auth_summary else None,
            ms=round((time.monotonic() - tx.started) * 1000, 1),
        )
        self.tx = None
        self._answer_data(tx, delivered)

    async def _deliver(
        self,
        tx: _Transaction,
        spool: Spool,
        envelope: Envelope,
        skip: int,
        facts: MessageFacts | None,
    ) -> DeliveryReport:
        """Local delivery (Sieve, junk filter) and queueing, in one store transaction."""
        mda = self.ctx.mda
        local = [r for r in tx.rcpts if r is not None]
        if mda is None or not local:
            d = await self.ctx.store.deliver(
                spool, envelope, tx.targets, tx.remote, queue_skip=skip, facts=facts
            )
            return DeliveryReport((), d.queue_id)
        started = time.monotonic()
        report = await mda.deliver(
            spool,
            envelope,
            local,
            tx.remote,
            queue_skip=skip,
            facts=facts,
            refusal="each" if self.core.lmtp else "all",
            check_peer=not self.core.lmtp,
            session=self.id,
            quarantine=tx.quarantine,
        )
        self.ctx.metrics.mailbox_outcomes([o.code for o in report.outcomes], since=started)
        return report

    def _answer_data(self, tx: _Transaction, delivered: DeliveryReport) -> None:
        """The reply to the end of the data (LMTP overrides: one per recipient)."""
        self._send(Reply(250, "2.0.0", f"Ok: queued as {tx.queue_id}"))

    def _content_policy(self, tx: _Transaction) -> Reply | None:
        fields = tx.fields
        received = sum(1 for name, _ in fields if name == "received")
        if received >= self.ctx.config.smtp.max_received_headers:
            return Reply(554, "5.4.6", "Too many Received headers: mail loop detected")
        if self.submission:
            assert self.user is not None
            if tx.headers is not None and tx.headers.overflow:
                return Reply(552, "5.3.4", "Header section too large")
            return self._originator_policy(originators(fields), tx.sender)
        return None

    def _originator_policy(self, found: Originators, owned: str = "") -> Reply | None:
        """Every From/Sender address must be the user's (the same parse IMAP shows).

        ``owned``: the envelope sender, which MAIL FROM already found the user's in this
        transaction; the same address is not looked up again.
        """
        assert self.user is not None
        if found.from_fields == 0 or not found.addresses:
            return Reply(550, "5.6.0", "Message has no From: header")
        if found.from_fields > 1 or found.sender_fields > 1:  # RFC 5322 §3.6
            return Reply(550, "5.6.0", "Message must have one From: and at most one Sender:")
        for address in found.addresses:
            if owned and address == owned:
                continue
            if not self.ctx.directory.may_send_as(self.user, address):
                shown = address if len(address) <= 200 else address[:200] + "..."
                self.ctx.log.warning(
                    "smtp.spoof", session=self.id, user=self.user, header_from=shown
                )
                # RFC 5321 §4.5.3.1.5: a reply line stays short, whatever was sent
                return Reply(553, "5.7.1", f"From: address {shown} not owned by {self.user}")
        if found.problems:  # owned as we read it, but another reader may see otherwise
            self.ctx.log.warning(
                "smtp.spoof", session=self.id, user=self.user, problem=found.problems[0]
            )
            return Reply(553, "5.7.1", f"From: or Sender: has {found.problems[0]}")
        return None

    def _abort_transaction(self) -> None:
        tx = self.tx
        if tx is not None and tx.spool is not None:
            tx.spool.discard()
        self.tx = None


def _domain_of(fields: list[tuple[str, str]], names: tuple[str, ...]) -> str:
    """The lowercased domain of the first address in the first of ``names`` present."""
    for name, value in fields:
        if name in names:
            for address in addresses_in(value):
                return address.rpartition("@")[2].lower()
    return ""


class _BrokenSpool:
    """Stands in after a spool write failed, so the rest of the data is drained (the
    message is refused with 451 at its end: nothing of it is ever read)."""

    size = 0
    in_memory = True

    def write(self, data: bytes) -> None:
        pass

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        return b""

    def chunks(self, start: int = 0, chunk_size: int = 65536) -> Iterator[bytes]:
        return iter(())

    def insert(self, offset: int, data: bytes) -> None:
        pass

    def discard(self) -> None:
        pass
