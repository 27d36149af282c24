"""The asyncio shell around :mod:`correo.managesieve`: one instance per connection.

Scripts live in the store (``sieve_*`` methods); every script is validated by
:func:`correo.sieve.check` before it is stored, so delivery only ever meets scripts
that parsed when they were uploaded (it still falls back to the implicit keep).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time

from correo.managesieve import (
    NEED_DATA,
    Authenticate,
    Capability,
    CheckScript,
    CommandError,
    ConnectionClosed,
    DeleteScript,
    GetScript,
    HaveSpace,
    ListScripts,
    Logout,
    Noop,
    PutScript,
    RenameScript,
    Response,
    SaslCancel,
    SaslResponse,
    SetActive,
    SieveServerConnection,
    StartTls,
    Unauthenticate,
    capability_block,
    quote,
    script_block,
    script_list,
)
from correo.sasl import Challenge, Credentials, Failed, Mechanism, Step, Success, server_mechanism
from correo.server.auth import check_password, sasl_mechanisms, scram_context
from correo.server.connection import Connection, remaining
from correo.server.context import ServerContext, new_session_id
from correo.sieve import SIEVE_EXTENSIONS, check
from correo.store.api import MailboxError, StoreError

__all__ = ["ManageSieveSession"]

_OK = Response("OK")


class ManageSieveSession:
    def __init__(self, ctx: ServerContext, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.core = SieveServerConnection()
        self.core.tls_active = conn.tls_active
        self.id = new_session_id()
        self.user: str | None = None
        self.mechanism: Mechanism | None = None
        self.sasl_account: str | None = None  # SCRAM: verified, waiting for the last reply
        self.closing = False
        self.shutdown_requested = False
        #: How long a client that does not read its replies may hold the session.
        self.write_timeout = ctx.config.limits.command_timeout
        self._commands = ctx.metrics.commands.labels("sieve")
        self._replies = ctx.metrics.reply_counters("sieve")  # OK, NO, BYE

    @property
    def in_transaction(self) -> bool:
        return False

    # -- driving loop -------------------------------------------------------------------

    async def run(self) -> None:
        log = self.ctx.log
        log.info("sieve.connect", session=self.id, peer=self.conn.peer)
        started = time.monotonic()
        try:
            self._capabilities()  # RFC 5804 §1.7: the greeting is the capability list
            await self.conn.flush(self.write_timeout)
            await self._loop()
        except asyncio.CancelledError:
            self.conn.write(Response("BYE", "TRYLATER", "Server shutting down").to_bytes())
            raise
        finally:
            await self.conn.close()
            log.info(
                "sieve.disconnect",
                session=self.id,
                user=self.user,
                seconds=round(time.monotonic() - started, 3),
            )

    async def _loop(self) -> None:
        timeout = self.ctx.config.limits.command_timeout
        waiting_since = time.monotonic()  # when we began waiting for the next command
        while not self.closing and not self.conn.closed:
            try:
                # The timeout runs for a whole command, not per read: a command (or a
                # refused literal) dribbled a byte at a time still ends (slowloris).
                data = await self.conn.read(remaining(timeout, waiting_since))
            except TimeoutError:
                self.conn.write(Response("BYE", None, "Timeout").to_bytes())
                return
            self.core.receive_data(data)
            handled = False
            while not self.closing:
                event = self.core.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    return
                await self._handle(event)
                await self.conn.pace()
                handled = True
            await self.conn.flush(self.write_timeout)
            if handled:
                waiting_since = time.monotonic()

    def _respond(self, kind: str, code: str | None = None, text: str | None = None) -> None:
        self._replies[kind].inc()
        self.conn.write(self.core.send(Response(kind, code, text)))

    def _capabilities(self) -> None:
        items: list[tuple[str, str | None]] = [("IMPLEMENTATION", "correo")]
        offered = sasl_mechanisms(self.ctx, self.conn) if self.user is None else []
        items.append(("SASL", " ".join(offered)))
        items.append(("SIEVE", " ".join(SIEVE_EXTENSIONS)))
        if not self.conn.tls_active and self.ctx.tls is not None:
            items.append(("STARTTLS", None))
        if self.user is not None:
            items.append(("OWNER", self.user))  # RFC 5804 §1.7
        items += [("UNAUTHENTICATE", None), ("VERSION", "1.0")]  # RFC 5804 §2.14, §1.7
        self.conn.write(self.core.send_data(capability_block(items)))
        self._respond("OK", None, "correo ManageSieve ready")

    async def _handle(self, event: object) -> None:
        self._commands.inc()
        match event:
            case CommandError(response=response, close=close):
                self._replies[response.kind].inc()
                self.conn.write(self.core.send(response))
                self.closing = close
            case Capability():
                self._capabilities()
            case Noop(tag=tag):
                self._respond("OK", f"TAG {quote(tag).decode()}" if tag else None, "Done")
            case Logout():
                self._respond("OK", None, "Logout completed")
                self.closing = True
            case StartTls():
                await self._starttls()
            case Authenticate():
                await self._authenticate(event)
            case SaslResponse(data=data):
                await self._sasl_step(data)
            case SaslCancel():
                self.mechanism = None
                self._respond("NO", None, "Authentication cancelled")
            case Unauthenticate():
                self.user = None
                self._respond("OK")
            case _:
                assert self.user is not None  # the core's state table guarantees it
                try:
                    await self._script_command(event, self.user)
                except MailboxError as exc:
                    self._respond("NO", exc.code, str(exc))
                except StoreError as exc:
                    self.ctx.log.error("sieve.store_failed", session=self.id, error=str(exc))
                    self._respond("NO", "TRYLATER", "Temporary server error")

    async def _script_command(self, event: object, user: str) -> None:
        store = self.ctx.store
        settings = self.ctx.config.delivery
        match event:
            case ListScripts():
                self.conn.write(self.core.send_data(script_list(await store.sieve_list(user))))
                self._respond("OK")
            case GetScript(name=name):
                text = await store.sieve_get(user, name)
                if text is None:
                    self._respond("NO", "NONEXISTENT", "No such script")
                    return
                self.conn.write(self.core.send_data(script_block(text)))
                self._respond("OK")
            case HaveSpace(name=name, size=size):
                refusal = await self._space(user, name, size)
                if refusal is None:
                    self._respond("OK")
                else:
                    self._respond("NO", refusal[0], refusal[1])
            case PutScript(name=name, script=script):
                refusal = await self._space(user, name, len(script))  # before any parsing
                if refusal is not None:
                    self._respond("NO", refusal[0], refusal[1])
                    return
                text = await self._validate(script, user)
                if text is None:
                    return
                await store.sieve_put(user, name, text)
                self._changed(user)
                self.ctx.log.info("sieve.put", session=self.id, user=user, script=name)
                self._respond("OK")
            case CheckScript(script=script):
                if len(script) > settings.max_script_size:
                    self._respond("NO", "QUOTA/MAXSIZE", "Script too big")
                elif await self._validate(script, user) is not None:
                    self._respond("OK")
            case SetActive(name=name):
                await store.sieve_activate(user, name or None)
                self._changed(user)
                self.ctx.log.info("sieve.activate", session=self.id, user=user, script=name)
                self._respond("OK")
            case DeleteScript(name=name):
                await store.sieve_delete(user, name)
                self._changed(user)
                self._respond("OK")
            case RenameScript(old=old, new=new):
                await store.sieve_rename(user, old, new)
                self._changed(user)
                self._respond("OK")
            case _:
                raise AssertionError(f"unhandled ManageSieve event {event!r}")

    def _changed(self, user: str) -> None:
        """The next delivery must see the new script at once, not after the cache ages."""
        if self.ctx.mda is not None:
            self.ctx.mda.forget(user)

    async def _validate(self, script: bytes, user: str) -> str | None:
        """The script text if it is valid; otherwise the NO is already sent (§2.6).

        Parsing a script of up to ``max_script_size`` bytes runs off the event loop.
        A literal vacation ``:from`` must be one of the user's own addresses.
        """
        try:
            text = script.decode("utf-8")
        except UnicodeDecodeError:
            self._respond("NO", None, "Script is not UTF-8")
            return None
        directory = self.ctx.directory

        def sender_allowed(address: str) -> bool:
            return directory.may_send_as(user, address)

        errors = await asyncio.to_thread(check, text, sender_allowed=sender_allowed)
        if errors:
            self._respond("NO", None, "; ".join(str(e) for e in errors[:5]))
            return None
        return text

    async def _space(self, user: str, name: str, size: int) -> tuple[str, str] | None:
        settings = self.ctx.config.delivery
        if size > settings.max_script_size:
            return "QUOTA/MAXSIZE", f"Script exceeds {settings.max_script_size} bytes"
        scripts = await self.ctx.store.sieve_list(user)
        if len(scripts) >= settings.max_scripts and name not in {n for n, _ in scripts}:
            return "QUOTA/MAXSCRIPTS", f"At most {settings.max_scripts} scripts"
        return None

    # -- TLS and authentication ------------------------------------------------------

    async def _starttls(self) -> None:
        if self.ctx.tls is None:
            self._respond("NO", None, "TLS not available")
            return
        self._respond("OK", None, "Begin TLS negotiation now")
        if not await self.conn.upgrade_tls(self.ctx.tls, self.ctx.log, "sieve", self.id):
            self.closing = True
            return
        self.core.tls_started()
        self._capabilities()  # RFC 5804 §2.2: capabilities again after the handshake

    async def _authenticate(self, event: Authenticate) -> None:
        if not self.conn.tls_active and not self.ctx.config.auth.allow_plaintext:
            self._respond("NO", "ENCRYPT-NEEDED", "Use STARTTLS first")  # RFC 5804 §2.1
            return
        name = event.mechanism.upper()
        scram = scram_context(self.ctx, self.conn)
        mechanism = server_mechanism(name, scram) if name != "LOGIN" else None
        if mechanism is None:
            self._respond("NO", None, "Unsupported SASL mechanism")
            return
        initial = None
        if event.initial is not None:
            initial = self._decode(event.initial)
            if initial is None:
                return
        self.mechanism = mechanism
        await self._sasl_result(mechanism.start(initial))

    async def _sasl_step(self, data: bytes) -> None:
        if self.mechanism is None:
            self._respond("NO", None, "No authentication in progress")
            return
        decoded = self._decode(data)
        if decoded is not None:
            await self._sasl_result(self.mechanism.step(decoded))

    def _decode(self, data: bytes) -> bytes | None:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            self.mechanism = None
            self._respond("NO", None, "Bad base64 in SASL response")
            return None

    async def _sasl_result(self, step: Step) -> None:
        if isinstance(step, Challenge):
            self.conn.write(self.core.send_challenge(step.data))
            return
        mechanism, self.mechanism = self.mechanism, None
        account, self.sasl_account = self.sasl_account, None
        if isinstance(step, Success) and account is not None:
            self.user = account  # the client took SCRAM's server-final message
            self._respond("OK", None, "Authenticated")
            return
        if isinstance(step, Failed):
            self._respond("NO", None, step.reason)
            return
        if not isinstance(step, Credentials):
            self._respond("NO", None, "Authentication failed")
            return
        outcome = (
            await check_password(
                self.ctx,
                session=self.id,
                peer_ip=self.conn.peer_ip,
                user=step.authcid,
                password=step.password,
                proof=step.proof,
            )
            if step.authzid in ("", step.authcid)
            else None
        )
        if outcome is None or outcome.account is None:
            locked = outcome is not None and outcome.locked
            self._respond("NO", "TRYLATER" if locked else None, "Authentication failed")
            return
        if step.proof is not None:  # RFC 5802 §3: server-final as a last challenge
            self.mechanism, self.sasl_account = mechanism, outcome.account
            self.conn.write(self.core.send_challenge(step.proof.server_final))
            return
        self.user = outcome.account
        self._respond("OK", None, "Authenticated")
