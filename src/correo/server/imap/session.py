"""The asyncio shell around :mod:`correo.imap`: one instance per IMAP connection.

The sans-I/O core frames and parses commands and enforces the state table; this
module runs each command against the store and the session's view of its selected
mailbox (:mod:`correo.server.imap.view`), and writes the responses.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from correo.imap import commands as c
from correo.imap.acl import CAPABILITIES as ACL_CAPS
from correo.imap.acl import DeleteAcl, GetAcl, ListRights, MyRights, SetAcl
from correo.imap.extended import CancelUpdate
from correo.imap.metadata import GetMetadata, SetMetadata
from correo.imap.multisearch import MultiSearch
from correo.imap.notify import Notify
from correo.imap.reader import ImapLimits
from correo.imap.responses import (
    mailbox_name,
    tagged,
    untagged,
)
from correo.imap.server import (
    NEED_DATA,
    PAUSED,
    AppendAborted,
    AppendChunk,
    AppendDone,
    AppendEnd,
    AppendStart,
    AuthCancel,
    AuthResponse,
    CatenateStart,
    CatenateText,
    CatenateUrl,
    CommandEvent,
    ConnectionClosed,
    IdleDone,
    ImapConnection,
    Respond,
)
from correo.imap.states import ImapState
from correo.imap.urlauth import GenUrlAuth, ResetKey, UrlFetch
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
from correo.server.imap.acl import (
    cmd_deleteacl,
    cmd_getacl,
    cmd_listrights,
    cmd_myrights,
    cmd_setacl,
)
from correo.server.imap.acl import guard as acl_guard
from correo.server.imap.appends import Append, append_done, append_start, drop_appends
from correo.server.imap.catenate import catenate_text, catenate_url
from correo.server.imap.compress import Deflate
from correo.server.imap.context import (
    cmd_cancelupdate,
    contexts_changed,
)
from correo.server.imap.idle import cmd_idle
from correo.server.imap.mailboxes import (
    cmd_create,
    cmd_delete,
    cmd_list,
    cmd_lsub,
    cmd_namespace,
    cmd_rename,
    cmd_select,
    cmd_status,
    cmd_subscribe,
)
from correo.server.imap.messages import (
    cmd_close,
    cmd_copy,
    cmd_expunge,
    cmd_fetch,
    cmd_search,
    cmd_sort,
    cmd_store,
    cmd_thread,
)
from correo.server.imap.metadata import cmd_getmetadata, cmd_setmetadata
from correo.server.imap.multisearch import cmd_esearch
from correo.server.imap.names import (
    SPECIAL_USE,
)
from correo.server.imap.notify import NotifyState, absorb, cmd_notify, notify_read
from correo.server.imap.quota import CAPABILITIES as QUOTA_CAPS
from correo.server.imap.quota import cmd_getquota, cmd_getquotaroot, cmd_setquota
from correo.server.imap.urlauth import cmd_genurlauth, cmd_resetkey, cmd_urlfetch
from correo.server.imap.view import MailboxView
from correo.server.store_failure import imap_reply
from correo.store.api import (
    INBOX,
    MailboxError,
    MessageInfo,
    StoreError,
)

__all__ = ["ImapSession"]

_BASE_CAPS = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ENABLE", "ID", "IDLE")
_AUTH_CAPS = (
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "CONDSTORE",
    "QRESYNC",
    "BINARY",
    "MULTIAPPEND",
    "CATENATE",  # RFC 4469
    "NOTIFY",  # RFC 5465
    "UTF8=ACCEPT",
    "STATUS=SIZE",
    "SORT",
    "SORT=DISPLAY",  # RFC 5957
    "ESORT",  # RFC 5267 §3
    "CONTEXT=SEARCH",  # RFC 5267 §4
    "CONTEXT=SORT",
    "URLAUTH",  # RFC 4467
    "URLAUTH=BINARY",  # RFC 5524
    "THREAD=REFERENCES",
    "THREAD=ORDEREDSUBJECT",
    "COMPRESS=DEFLATE",
    "CREATE-SPECIAL-USE",  # RFC 6154 §3
    "OBJECTID",  # RFC 8474
    "PREVIEW",  # RFC 8970
    "WITHIN",  # RFC 5032
    "UNAUTHENTICATE",  # RFC 8437
    "METADATA",  # RFC 5464
    "METADATA-SERVER",
    "LIST-METADATA",  # RFC 9590
    "SAVEDATE",  # RFC 8514
    "REPLACE",  # RFC 8508
    "MULTISEARCH",  # RFC 7377
    "UIDONLY",  # RFC 9586
    *QUOTA_CAPS,  # RFC 9208
    *ACL_CAPS,  # RFC 4314
)
# Without a change counted by this process, re-read the change feed at most this often
# (writers in other processes, e.g. the CLI import, are only seen by the query).
_RECHECK = 1.0

Handler = Callable[["ImapSession", str, Any], Awaitable[None]]

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class ImapSession:
    def __init__(self, ctx: ServerContext, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.id = new_session_id()
        limits = ctx.config.limits
        #: How long a client that does not read its replies may hold the session.
        self.write_timeout = limits.command_timeout
        self.core = ImapConnection(
            ImapLimits(
                max_append=limits.message_size or 1 << 40,
                max_bad_commands=limits.bad_commands,
                max_auth_line=limits.auth_line,
                allow_plaintext_auth=ctx.config.auth.allow_plaintext,
            ),
            tls_active=conn.tls_active,
        )
        self.user: str | None = None
        self.view: MailboxView | None = None
        self.mechanism: Mechanism | None = None
        self.sasl_account: str | None = None  # SCRAM: verified, waiting for the last reply
        self.auth_tag = ""
        self.appends: list[Append] = []
        self.append_failed: str | None = None
        self.deflate: Deflate | None = None
        self.closing = False
        self.shutdown_requested = False
        self.busy = False
        self.seen_counter = -1  # store.change_counter() when the feed was last read
        self.notify: NotifyState | None = None  # RFC 5465 NOTIFY SET
        self.checked_at = 0.0
        self.idling = False  # in IDLE (RFC 2177), for the metrics
        self._last = b""  # the last response written: a tagged one is counted (_count)
        self._commands = ctx.metrics.commands.labels("imap")
        self._replies = ctx.metrics.status_counters("imap")  # shared by every session

    # -- plumbing -------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self.busy or bool(self.appends)

    def write(self, data: bytes) -> None:
        self._last = data
        self.conn.write(self.deflate.deflate(data) if self.deflate is not None else data)

    def _count(self) -> None:
        """Count the tagged reply (OK, NO, BAD) an event ended with, if it ended with one:
        untagged data and continuations ("*", "+") are not replies to a command."""
        parts = self._last[:64].split(b" ", 2)
        if len(parts) > 2 and parts[0] != b"*" and parts[0] != b"+":
            counter = self._replies.get(parts[1])
            if counter is not None:
                counter.inc()

    def capabilities(self) -> tuple[str, ...]:
        caps = list(_BASE_CAPS)
        if self.core.state is ImapState.NOT_AUTHENTICATED:
            if not self.conn.tls_active and self.ctx.tls is not None:
                caps.append("STARTTLS")
            if self.conn.tls_active or self.ctx.config.auth.allow_plaintext:
                caps += [f"AUTH={name}" for name in sasl_mechanisms(self.ctx, self.conn)]
            else:
                caps.append("LOGINDISABLED")
            return tuple(caps)
        size = self.ctx.config.limits.message_size
        caps += _AUTH_CAPS
        if size:
            caps.append(f"APPENDLIMIT={size}")
        if self.deflate is not None:
            caps.remove("COMPRESS=DEFLATE")
        return tuple(caps)

    async def run(self) -> None:
        log = self.ctx.log
        log.info("imap.connect", session=self.id, peer=self.conn.peer)
        started = time.monotonic()
        try:
            self.write(self.core.greeting(self.capabilities(), "correo IMAP4rev2 server ready"))
            await self.conn.flush(self.write_timeout)
            await self._loop()
        except asyncio.CancelledError:
            self.write(untagged("BYE", "Server shutting down"))
            raise
        finally:
            for append in self.appends:
                append.spool.discard()
            await self.conn.flush(self.write_timeout)
            await self.conn.close()
            log.info(
                "imap.disconnect",
                session=self.id,
                peer=self.conn.peer,
                user=self.user,
                seconds=time.monotonic() - started,
            )

    def _quickack(self) -> None:
        """ACK a literal's bytes now rather than after the 40 ms delayed-ACK timer.

        A client with Nagle on (imaplib, most) holds the CRLF ending an APPEND until its
        literal is acknowledged; the kernel delays that ACK when no reply is due, which
        caps one connection at ~25 APPENDs a second.
        """
        sock = self.conn.writer.get_extra_info("socket")
        if _QUICKACK is None or sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass

    async def _loop(self) -> None:
        # RFC 9051 §5.4: at least 30 minutes of inactivity before an autologout.
        timeout = max(self.ctx.config.limits.command_timeout, 1800.0)
        if self.user is None:
            timeout = self.ctx.config.limits.command_timeout
        partial_since: float | None = None
        while not self.closing and not self.conn.closed:
            deflate = self.deflate
            if deflate is not None and deflate.backlog:
                data = deflate.more()  # the rest of a large inflation, piece by piece
                await asyncio.sleep(0)  # let other sessions run between pieces
                if data:
                    self.core.receive_data(data)
            else:
                wait = timeout
                if self.core.buffered:
                    # part of a command is in: the rest gets command_timeout counted from
                    # its first octet, so a line dribbled a byte at a time still ends
                    if partial_since is None:
                        partial_since = time.monotonic()
                    wait = remaining(self.ctx.config.limits.command_timeout, partial_since)
                else:
                    partial_since = None
                rest = deflate.rest_later() if deflate is not None else None
                try:
                    if self.notify is not None:  # RFC 5465: changes go out meanwhile
                        data = await notify_read(self, wait)
                    else:
                        data = await self.conn.read(wait)
                except TimeoutError:
                    self.write(untagged("BYE", "Autologout; idle for too long"))
                    return
                finally:
                    if rest is not None:
                        rest.cancel()
                if data and deflate is not None:
                    data = deflate.inflate(data)
                    if not data:
                        continue  # RFC 4978: a deflate block split by TCP is not EOF
                self.core.receive_data(data)
            # _drain: the events of what was read, in order (inline, no coroutine per read)
            while not self.closing:
                event = self.core.next_event()
                if event is NEED_DATA or event is PAUSED:
                    break
                self._last = b""
                await self._event(event)
                self._count()
                if self.conn.due():  # Connection.pace, without a coroutine per command
                    await asyncio.sleep(0)
            if self.conn.send():  # Connection.flush, without a coroutine when all is taken
                await self.conn.sent(self.write_timeout)
            if self.appends:
                self._quickack()
            if self.shutdown_requested and not self.in_transaction:
                self.write(untagged("BYE", "Server shutting down"))
                return

    async def _event(self, event: object) -> None:
        match event:
            case CommandEvent(tag=tag, command=command):
                self._commands.inc()
                handler = _HANDLERS.get(type(command))
                if handler is None:
                    self.write(tagged(tag, "BAD", "Command not supported", "CLIENTBUG"))
                    return
                debug = self.ctx.log.enabled("debug")
                started = time.monotonic() if debug else 0.0
                self.busy = True
                try:
                    view = self.view
                    if (
                        view is not None
                        and view.account != self.user
                        and not await acl_guard(self, tag, command)  # another user's mailbox
                    ):
                        return
                    await handler(self, tag, command)
                except MailboxError as exc:
                    self.write(tagged(tag, "NO", str(exc), exc.code))
                except StoreError as exc:
                    self.ctx.log.error("imap.store_failed", session=self.id, error=str(exc))
                    self.write(tagged(tag, "NO", *imap_reply(exc)))
                finally:
                    self.busy = False
                if self.notify is not None:
                    await absorb(self, command)  # RFC 5465 §5: its own changes, untold
                if debug:
                    self.ctx.log.debug(
                        "imap.command",
                        session=self.id,
                        command=type(command).__name__,
                        ms=round((time.monotonic() - started) * 1000, 2),
                    )
            case Respond(data=data):
                self.write(data)
            case AppendStart() | CatenateStart():
                await append_start(self, event)
            case CatenateText():  # RFC 4469
                await catenate_text(self, event)
            case CatenateUrl():
                await catenate_url(self, event)
            case AppendChunk(data=data):
                if self.appends and not self.appends[-1].failed:
                    append = self.appends[-1]
                    if append.lines is not None:
                        data = append.lines.feed(data)
                    try:
                        append.spool.write(data)
                    except OSError as exc:  # the literal is still read to its end
                        append.failed = exc
                        self.ctx.log.error("imap.append_failed", session=self.id, error=str(exc))
                        return
                    append.facts.feed(data)
                    if b"\x00" in data:
                        append.nul = True
            case AppendEnd():
                pass
            case AppendDone(tag=tag):
                await append_done(self, tag)
            case AppendAborted(data=data):
                drop_appends(self)
                self.write(data)
            case AuthResponse(data=data):
                if self.mechanism is not None:
                    await self._sasl(self.mechanism.step(data))
            case AuthCancel():
                self.mechanism = None
                self.write(tagged(self.auth_tag, "BAD", "Authentication cancelled"))
            case IdleDone(tag=tag, error=error):
                self.idling = False
                self.write(error if error is not None else tagged(tag, "OK", "IDLE terminated"))
            case ConnectionClosed():
                self.closing = True
            case _:
                raise AssertionError(f"unhandled IMAP event {event!r}")

    async def _updates(self, *, allow_expunge: bool = True) -> None:
        """Untagged EXISTS/EXPUNGE/FETCH for changes made elsewhere (RFC 9051 §7)."""
        view = self.view
        if view is None:
            return
        store = self.ctx.store
        counter = store.change_counter(view.account, view.name)  # read before the query
        now = time.monotonic()
        if (
            counter == self.seen_counter
            and now - self.checked_at < _RECHECK
            and not (allow_expunge and view.pending_expunge)
        ):
            return  # nothing committed here since the last look, and it was recent
        changes = await self.ctx.imap.changes_since(
            store, view.account, view.name, view.highestmodseq, counter
        )
        self.seen_counter, self.checked_at = counter, now
        top = changes.messages[-1].uid if changes.messages else 0
        known = view.max_uid()
        if not view.read_only and top > known:
            # RFC 3501 §2.3.2: a new message is \Recent in the first session told of it
            # only; what another session claimed is not \Recent here
            first = top + 1
            if self.ctx.imap.claims_recent(view.account, view.name, view.uidvalidity, top):
                first = await self.ctx.store.take_recent(view.account, view.name)
            view.not_recent(known + 1, min(first, top + 1) - 1)
        if changes.messages or changes.expunged or view.pending_expunge:
            for line in view.catch_up(
                changes,
                allow_expunge=allow_expunge,
                qresync=self.core.vanished,
                condstore=self.core.condstore,
            ):
                self.write(line)
            await contexts_changed(self)  # RFC 5267 §4.3: ADDTO/REMOVEFROM
            return  # catch_up moved HIGHESTMODSEQ (and may have adopted a shared snapshot)
        view.highestmodseq = max(view.highestmodseq, changes.highestmodseq)

    async def _stored(self, changed: Sequence[MessageInfo]) -> None:
        """This session's own STORE: into its view now, and when nothing else happened
        meanwhile, its view *is* the mailbox at the new MODSEQ (no re-read of 10,000
        changes by the next command; other sessions adopt it from the shared snapshot)."""
        view = self.view
        assert view is not None
        view.update_flags(changed)
        modseqs = {m.modseq for m in changed}
        if len(modseqs) != 1 or view.pending_expunge:
            return
        (modseq,) = modseqs
        if modseq != view.highestmodseq + 1:
            return  # someone else changed the mailbox since this view caught up
        counter = self.ctx.store.change_counter(view.account, view.name)  # before the look
        state = await self.ctx.store.mailbox_state(view.account, view.name)
        if state.highestmodseq == modseq:
            view.highestmodseq = modseq
            view.share()
            # caught up as of this look: the next command does not scan the change feed
            self.seen_counter, self.checked_at = counter, time.monotonic()

    def _condstore_on(self) -> None:
        """RFC 7162 §3.1: a CONDSTORE-enabling command; first time, say HIGHESTMODSEQ."""
        if self.core.condstore:
            return
        self.core.enable("CONDSTORE")
        if self.view is not None:
            self.write(untagged("OK", "Highest", f"HIGHESTMODSEQ {self.view.highestmodseq}"))

    # -- any state ------------------------------------------------------------------

    async def cmd_capability(self, tag: str, cmd: c.Capability) -> None:
        self.write(b"* CAPABILITY " + " ".join(self.capabilities()).encode() + b"\r\n")
        self.write(tagged(tag, "OK", "CAPABILITY completed"))

    async def cmd_noop(self, tag: str, cmd: object) -> None:
        await self._updates()
        self.write(tagged(tag, "OK", "NOOP completed"))

    async def cmd_logout(self, tag: str, cmd: c.Logout) -> None:
        self.write(untagged("BYE", "correo IMAP server logging out"))
        self.write(tagged(tag, "OK", "LOGOUT completed"))
        self.core.logout()
        self.closing = True

    async def cmd_id(self, tag: str, cmd: c.Id) -> None:
        self.write(b'* ID ("name" "correo" "vendor" "correo")\r\n')  # RFC 2971 §3.3
        self.write(tagged(tag, "OK", "ID completed"))

    async def cmd_starttls(self, tag: str, cmd: c.StartTLS) -> None:
        if self.ctx.tls is None:
            self.write(tagged(tag, "NO", "TLS not available"))
            self.core.tls_started()  # nothing to discard; resume reading commands
            return
        self.write(tagged(tag, "OK", "Begin TLS negotiation now"))
        if not await self.conn.upgrade_tls(self.ctx.tls, self.ctx.log, "imap", self.id):
            self.closing = True
            return
        self.core.tls_started()

    # -- authentication -------------------------------------------------------------

    async def _login(
        self, tag: str, user: str, password: str, proof: ScramProof | None = None
    ) -> bool:
        """True when SCRAM's server-final message went out and its answer is awaited."""
        outcome = await check_password(
            self.ctx,
            session=self.id,
            peer_ip=self.conn.peer_ip,
            user=user,
            password=password,
            proof=proof,
        )
        if outcome.locked:
            self.write(tagged(tag, "NO", "Too many failed logins; try again later", "UNAVAILABLE"))
            return False
        if outcome.account is None:
            self.write(tagged(tag, "NO", "Authentication failed", "AUTHENTICATIONFAILED"))
            return False
        if proof is not None:  # RFC 5802 §3, RFC 9051 §6.2.2: server-final as a challenge
            self.sasl_account = outcome.account
            self.write(self.core.send_challenge(proof.server_final))
            return True
        await self._logged_in(tag, outcome.account)
        return False

    async def _logged_in(self, tag: str, account: str) -> None:
        try:
            await self._ensure_special_use(account)
        except StoreError as exc:  # no INBOX and none can be made (disk full): not in
            self.ctx.log.error("imap.store_failed", session=self.id, error=str(exc))
            self.write(tagged(tag, "NO", *imap_reply(exc)))
            return
        self.user = account
        self.core.authenticated()
        caps = "CAPABILITY " + " ".join(self.capabilities())
        self.write(tagged(tag, "OK", "Logged in", caps))

    async def _ensure_special_use(self, account: str) -> None:
        existing = {m.name for m in await self.ctx.store.list_mailboxes(account)}
        if INBOX not in existing:
            await self.ctx.store.create_account(account)
        for name, use in SPECIAL_USE.items():
            if name not in existing:
                try:
                    await self.ctx.store.create_mailbox(account, name, use)
                except StoreError:
                    pass  # created by another session, or the disk is full: a later login

    async def cmd_login(self, tag: str, cmd: c.Login) -> None:
        await self._login(tag, cmd.username, cmd.password)

    async def cmd_authenticate(self, tag: str, cmd: c.Authenticate) -> None:
        mechanism = server_mechanism(cmd.mechanism, scram_context(self.ctx, self.conn))
        if mechanism is None:
            self.write(tagged(tag, "NO", "Unsupported authentication mechanism", "CANNOT"))
            return
        self.mechanism = mechanism
        self.auth_tag = tag
        await self._sasl(mechanism.start(cmd.initial))

    async def _sasl(self, step: Step) -> None:
        tag = self.auth_tag
        if isinstance(step, Challenge):
            self.write(self.core.send_challenge(step.data))
            return
        mechanism, self.mechanism = self.mechanism, None
        account, self.sasl_account = self.sasl_account, None
        if isinstance(step, Success) and account is not None:
            await self._logged_in(tag, account)  # the client took SCRAM's server-final
            return
        if not isinstance(step, Credentials):
            self.write(tagged(tag, "NO", "Malformed authentication data", "AUTHENTICATIONFAILED"))
            return
        if step.authzid not in ("", step.authcid):
            self.write(tagged(tag, "NO", "Authorization identity refused", "AUTHORIZATIONFAILED"))
            return
        if await self._login(tag, step.authcid, step.password, step.proof):
            self.mechanism = mechanism  # for the client's reply to the server-final message

    async def cmd_enable(self, tag: str, cmd: c.Enable) -> None:
        added = self.core.enable(*cmd.capabilities)
        if added:
            self.write(b"* ENABLED " + " ".join(added).encode() + b"\r\n")
        self.write(tagged(tag, "OK", "ENABLE completed"))

    async def cmd_compress(self, tag: str, cmd: c.Compress) -> None:
        self.write(tagged(tag, "OK", "DEFLATE active"))
        await self.conn.flush(self.write_timeout)
        leftover = self.core.compression_started()
        self.deflate = Deflate()
        if leftover:
            data = self.deflate.inflate(leftover)
            if data:  # b"" is an incomplete block here, never EOF
                self.core.receive_data(data)

    async def cmd_unauthenticate(self, tag: str, cmd: c.Unauthenticate) -> None:
        """RFC 8437 §3: back to not authenticated; the selection, NOTIFY and every
        ENABLEd extension end with the login (the TLS and COMPRESS layers stay)."""
        self.view = None
        self.notify = None
        self.user = None
        self.seen_counter = -1
        self.core.unauthenticated()
        self.write(tagged(tag, "OK", "UNAUTHENTICATE completed"))


_HANDLERS: dict[type, Handler] = {
    c.Capability: ImapSession.cmd_capability,
    c.Noop: ImapSession.cmd_noop,
    c.Check: ImapSession.cmd_noop,
    c.Logout: ImapSession.cmd_logout,
    c.StartTLS: ImapSession.cmd_starttls,
    c.Authenticate: ImapSession.cmd_authenticate,
    c.Login: ImapSession.cmd_login,
    c.Enable: ImapSession.cmd_enable,
    c.Select: cmd_select,
    c.Examine: cmd_select,
    c.Create: cmd_create,
    c.Delete: cmd_delete,
    c.Rename: cmd_rename,
    c.Subscribe: cmd_subscribe,
    c.Unsubscribe: cmd_subscribe,
    c.List: cmd_list,
    c.Lsub: cmd_lsub,
    c.Namespace: cmd_namespace,
    c.Status: cmd_status,
    c.Idle: cmd_idle,
    c.Close: cmd_close,
    c.Unselect: cmd_close,
    c.Expunge: cmd_expunge,
    c.UidExpunge: cmd_expunge,
    c.Search: cmd_search,
    c.Sort: cmd_sort,
    c.Thread: cmd_thread,
    c.Fetch: cmd_fetch,
    c.Store: cmd_store,
    c.Copy: cmd_copy,
    c.Move: cmd_copy,
    c.Id: ImapSession.cmd_id,
    c.Compress: ImapSession.cmd_compress,
    c.Unauthenticate: ImapSession.cmd_unauthenticate,
    c.GetQuota: cmd_getquota,
    c.GetQuotaRoot: cmd_getquotaroot,
    c.SetQuota: cmd_setquota,
    CancelUpdate: cmd_cancelupdate,
    GenUrlAuth: cmd_genurlauth,
    ResetKey: cmd_resetkey,
    UrlFetch: cmd_urlfetch,
    Notify: cmd_notify,
    GetMetadata: cmd_getmetadata,
    SetMetadata: cmd_setmetadata,
    SetAcl: cmd_setacl,  # RFC 4314
    DeleteAcl: cmd_deleteacl,
    GetAcl: cmd_getacl,
    ListRights: cmd_listrights,
    MyRights: cmd_myrights,
    MultiSearch: cmd_esearch,
}


_ = mailbox_name
