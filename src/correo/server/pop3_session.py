"""The asyncio shell around :mod:`correo.pop3`: one instance per POP3 connection.

The core answers most commands itself from the maildrop listing it was given; this
shell authenticates, locks the maildrop (one session at a time, RFC 1939 §8), streams
messages from the store, and applies deletions durably at QUIT (the UPDATE state).
"""

from __future__ import annotations

import asyncio
import time

from correo.delivery.quotawarn import usage_text
from correo.pop3 import (
    NEED_DATA,
    PAUSED,
    Auth,
    AuthCancel,
    AuthResponse,
    ConnectionClosed,
    DotStuffer,
    MaildropEntry,
    Pop3Connection,
    Pop3Limits,
    Pop3Reply,
    Quit,
    Respond,
    Retrieve,
    StartTls,
    TopFilter,
    UserPass,
)
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
from correo.store.api import INBOX, StoreError, StoreUnavailableError

__all__ = ["Pop3Session"]

#: RETR/TOP output is written once this much is queued (and at the end): a typical
#: message goes out as one write (over TLS: full records), a big one in bounded steps.
_SEND_AT = 256 * 1024


class Pop3Session:
    def __init__(self, ctx: ServerContext, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.id = new_session_id()
        limits = ctx.config.limits
        self.core = Pop3Connection(
            Pop3Limits(
                max_line=limits.pop3_line,
                max_auth_line=limits.auth_line,
                max_bad_commands=limits.bad_commands,
                allow_plaintext_auth=ctx.config.auth.allow_plaintext,
                stls_available=ctx.tls is not None,
            )
        )
        self.core.tls_active = conn.tls_active
        self._offer_mechanisms()
        self.account: str | None = None
        self.mechanism: Mechanism | None = None
        self.sasl_account: str | None = None  # SCRAM: verified, waiting for the last reply
        self.closing = False
        self.shutdown_requested = False
        self.in_transaction = False
        self.sizes: dict[int, int] = {}
        self._commands = ctx.metrics.commands.labels("pop3")
        self._replies = ctx.metrics.reply_counters("pop3")  # "+OK", "-ERR"

    async def run(self) -> None:
        log = self.ctx.log
        log.info("pop3.connect", session=self.id, peer=self.conn.peer)
        started = time.monotonic()
        try:
            self.conn.write(Pop3Reply(True, "correo POP3 server ready").to_bytes())
            if await self._flush():
                await self._loop()
        except asyncio.CancelledError:
            self.conn.write(Pop3Reply(False, "Server shutting down", code="SYS/TEMP").to_bytes())
            raise
        finally:
            if self.account is not None:
                self.ctx.maildrops_in_use.discard(self.account)
            await self.conn.close()
            log.info(
                "pop3.disconnect",
                session=self.id,
                peer=self.conn.peer,
                user=self.account,
                seconds=time.monotonic() - started,
            )

    async def _flush(self) -> bool:
        """Write the queued replies; False (connection dropped) if the peer won't read."""
        if not await self.conn.flush(self.ctx.config.limits.command_timeout):
            self.ctx.log.info("pop3.write_timeout", session=self.id, peer=self.conn.peer)
            self.closing = True
        return not self.conn.closed

    async def _loop(self) -> None:
        timeout = self.ctx.config.limits.command_timeout
        waiting_since = time.monotonic()  # when we began waiting for the next command
        while not self.closing and not self.conn.closed:
            try:
                # RFC 1939 §3: the autologout timer runs for a whole command, not per
                # byte, so a line dribbled a byte at a time (slowloris) still times out.
                data = await self.conn.read(remaining(timeout, waiting_since))
            except TimeoutError:
                # RFC 1939 §3: an autologout timer; no UPDATE state for an idle client.
                self.conn.write(Pop3Reply(False, "Autologout; idle for too long").to_bytes())
                return
            self.core.receive_data(data)
            handled = False
            while not self.closing:
                event = self.core.next_event()
                if event is NEED_DATA or event is PAUSED:
                    break
                if isinstance(event, ConnectionClosed):
                    self.closing = True
                    break
                await self._handle(event)
                handled = True
                await self.conn.pace()
            if not await self._flush():
                return
            if handled:
                waiting_since = time.monotonic()

    async def _handle(self, event: object) -> None:
        self._commands.inc()
        match event:
            case Respond(data=data):
                self._replies["-ERR" if data[:1] == b"-" else "+OK"].inc()
                self.conn.write(data)
            case Retrieve():
                await self._retrieve(event)
            case UserPass(user=user, password=password):
                await self._login(user, password)
            case Auth(mechanism=name, initial=initial):
                mechanism = server_mechanism(name, scram_context(self.ctx, self.conn))
                if mechanism is None:
                    self._send(False, "Unsupported SASL mechanism")
                    return
                self.mechanism = mechanism
                await self._sasl(mechanism.start(initial))
            case AuthResponse(data=data):
                if self.mechanism is None:
                    self._send(False, "No authentication in progress")
                    return
                await self._sasl(self.mechanism.step(data))
            case AuthCancel():
                self.mechanism = None
                self._send(False, "Authentication cancelled")
            case StartTls():
                await self._starttls()
            case Quit(deleted=deleted):
                await self._quit(deleted)
            case _:
                raise AssertionError(f"unhandled POP3 event {event!r}")

    def _send(self, ok: bool, text: str, code: str | None = None) -> None:
        self._replies["+OK" if ok else "-ERR"].inc()
        self.conn.write(self.core.send(Pop3Reply(ok, text, code=code)))

    async def _starttls(self) -> None:
        if self.ctx.tls is None or self.conn.tls_active:
            self._send(False, "TLS not available")
            return
        self._send(True, "Begin TLS negotiation")
        if not await self._flush():
            return
        if not await self.conn.upgrade_tls(self.ctx.tls, self.ctx.log, "pop3", self.id):
            self.closing = True
            return
        self.core.tls_started()
        self._offer_mechanisms()

    def _offer_mechanisms(self) -> None:
        offered = sasl_mechanisms(self.ctx, self.conn)
        if offered:
            self.core.mechanisms = (*offered, "LOGIN")

    async def _sasl(self, step: Step) -> None:
        if isinstance(step, Challenge):
            self.conn.write(self.core.send_challenge(step.data))
            return
        mechanism, self.mechanism = self.mechanism, None
        account, self.sasl_account = self.sasl_account, None
        if isinstance(step, Success) and account is not None:
            await self._open_maildrop(account)  # the client took SCRAM's server-final
            return
        if not isinstance(step, Credentials):
            self._send(False, "Malformed authentication data", code="AUTH")
            return
        if step.authzid not in ("", step.authcid):
            self._send(False, "Authorization identity not permitted", code="AUTH")
            return
        if step.proof is None:
            await self._login(step.authcid, step.password)
            return
        account = await self._check(step.authcid, "", step.proof)
        if account is not None:  # RFC 5802 §3, RFC 5034 §4: server-final as a challenge
            self.mechanism, self.sasl_account = mechanism, account
            self.conn.write(self.core.send_challenge(step.proof.server_final))

    async def _check(self, user: str, password: str, proof: ScramProof | None) -> str | None:
        """The account if the password (or SCRAM proof) is right; else sends -ERR."""
        outcome = await check_password(
            self.ctx,
            session=self.id,
            peer_ip=self.conn.peer_ip,
            user=user,
            password=password,
            proof=proof,
        )
        if outcome.locked:
            self._send(False, "Too many failed logins; try again later", code="SYS/TEMP")
            return None
        if outcome.account is None:
            self._send(False, "Authentication failed", code="AUTH")
        return outcome.account

    async def _login(self, user: str, password: str) -> None:
        account = await self._check(user, password, None)
        if account is not None:
            await self._open_maildrop(account)

    async def _open_maildrop(self, account: str) -> None:
        if account in self.ctx.maildrops_in_use:
            self._send(False, "Maildrop already locked by another session", code="IN-USE")
            return
        try:
            messages = await self.ctx.store.list_messages(account, INBOX)  # none: no INBOX yet
            state = await self.ctx.store.mailbox_state(account, INBOX) if messages else None
            quota = await self.ctx.store.get_quota(account)
        except StoreError as exc:  # the store is unreachable: no maildrop to open
            self.ctx.log.error("pop3.store_failed", session=self.id, error=str(exc))
            self._send(False, "Mailbox unavailable; try again later", code="SYS/TEMP")
            return  # RFC 3206 §4: a temporary failure, the client may log in again
        self.ctx.maildrops_in_use.add(account)
        self.account = account
        prefix = state.uidvalidity if state is not None else 0
        entries = [MaildropEntry(m.uid, m.size, f"{prefix}.{m.uid}") for m in messages]
        self.sizes = {m.uid: m.size for m in messages}
        self.ctx.log.info("pop3.maildrop", session=self.id, user=account, messages=len(entries))
        self._replies["+OK"].inc()
        self.conn.write(
            self.core.open_maildrop(
                entries, ("quota: " + usage_text(quota)) if usage_text(quota) else ""
            )
        )

    async def _retrieve(self, event: Retrieve) -> None:
        assert self.account is not None
        chunks = self.ctx.store.read_message(self.account, INBOX, event.uid, _SEND_AT)
        stuffer = DotStuffer()
        top = TopFilter(event.top_lines) if event.top_lines is not None else None
        # RFC 1939 §7: RETR's "+OK" may give the size; TOP's lines are not that size.
        size = self.sizes.get(event.uid, 0) if top is None else None
        started = False
        pending = 0  # octets queued: a message, its status line and "." go out in one write
        try:
            async for chunk in chunks:
                if not started:
                    self._replies["+OK"].inc()
                    self.conn.write(self.core.begin_message(size))
                    started = True
                data = stuffer.feed(top.feed(chunk) if top is not None else chunk)
                self.conn.write(data)
                pending += len(data)
                if pending >= _SEND_AT:
                    pending = 0
                    if not await self._flush():
                        return  # the client stopped reading: the session is over
                if top is not None and top.done:
                    break
        except StoreError as exc:
            if not started and isinstance(exc, StoreUnavailableError):
                self._send(False, "Temporary server failure", code="SYS/TEMP")  # RFC 3206 §4
                return
            if not started:
                self._replies["-ERR"].inc()
                self.conn.write(self.core.send(Pop3Reply(False, "Message no longer exists")))
                return
            # Half a multi-line answer is out: no -ERR can follow it, only a hang-up.
            self.ctx.log.warning("pop3.read_failed", session=self.id, error=str(exc))
            self.closing = True
            return
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if not started:
            self._replies["+OK"].inc()
            self.conn.write(self.core.begin_message(size))
        self.conn.write(stuffer.finish())
        self.core.message_sent()

    async def _quit(self, deleted: tuple[int, ...]) -> None:
        assert self.account is not None
        self.in_transaction = True  # a graceful shutdown lets the UPDATE state finish
        try:
            if deleted:
                await self.ctx.store.expunge(self.account, INBOX, deleted)
        except StoreError as exc:
            self.ctx.log.error("pop3.update_failed", session=self.id, error=str(exc))
            self._send(False, "Some deleted messages not removed", code="SYS/TEMP")
            return
        self.ctx.log.info("pop3.update", session=self.id, user=self.account, deleted=len(deleted))
        self._send(True, f"correo POP3 server signing off ({len(deleted)} messages deleted)")
