"""The asyncio shell around :mod:`correo.imap`: one instance per IMAP connection.

The sans-I/O core frames and parses commands and enforces the state table; this
module runs each command against the store and the session's view of its selected
mailbox (:mod:`correo.server.imap.view`), and writes the responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from correo.delivery.facts import FactsBuilder, load_tree
from correo.delivery.textindex import indexable, indexer_for
from correo.imap import commands as c
from correo.imap.extended import CancelUpdate
from correo.imap.notify import Notify
from correo.imap.reader import ImapLimits
from correo.imap.responses import (
    list_response,
    mailbox_name,
    search_response,
    status_response,
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
from correo.junk import on_imap_move  # moving to/from Junk trains the filter
from correo.message.imapfmt import base64_binary_parts
from correo.sasl import Challenge, Credentials, Failed, Mechanism, server_mechanism
from correo.server.auth import check_password
from correo.server.connection import Connection, remaining
from correo.server.context import ServerContext, new_session_id
from correo.server.imap.catenate import catenate_text, catenate_url
from correo.server.imap.context import (
    cmd_cancelupdate,
    contexts_changed,
    esearch_reply,
    refused_update,
)
from correo.server.imap.fetch import (
    FetchPlan,
    Rendered,
    ensure_facts,
    render_message,
    render_meta_batch,
)
from correo.server.imap.listing import PAUSE, list_lines, lsub_lines
from correo.server.imap.names import (
    DELIMITER,
    SPECIAL_USE,
    MailboxNameError,
    PatternError,
    check_name,
    check_rename,
    list_matcher,
    normalize,
)
from correo.server.imap.notify import NotifyState, absorb, cmd_notify, notify_read
from correo.server.imap.notify import deliver as notify_deliver
from correo.server.imap.notify import wait as notify_wait
from correo.server.imap.ordering import sort_uids, thread_uids
from correo.server.imap.searching import run_search
from correo.server.imap.shared import Snapshot
from correo.server.imap.urlauth import cmd_genurlauth, cmd_resetkey, cmd_urlfetch
from correo.server.imap.view import MAX_KEYWORDS, SYSTEM_FLAGS, MailboxView, format_uids
from correo.server.store_failure import imap_reply
from correo.store.api import (
    INBOX,
    Envelope,
    MailboxError,
    MailboxStatus,
    MessageInfo,
    Spool,
    StoreError,
    spool_read,
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
)
_IDLE_POLL = 30.0  # seconds between change-feed checks while idle (wake-ups are pushed)
_IDLE_RETRY = 2.0  # seconds before an idle session looks again after a store failure
# Without a change counted by this process, re-read the change feed at most this often
# (writers in other processes, e.g. the CLI import, are only seen by the query).
_RECHECK = 1.0
_HOLD_BACK = 256 * 1024  # FETCH output held for the tagged reply (one write) at most
_STREAM_FLUSH = 1 << 20  # within one FETCH, written out (and drained) at least this often
_INFLATE_PIECE = 256 * 1024  # inflated octets handed to the core at a time (COMPRESS)

Handler = Callable[["ImapSession", str, Any], Awaitable[None]]

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _Deflate:
    """COMPRESS=DEFLATE (RFC 4978): raw deflate both ways, flushed per write.

    Inflating is bounded: one call yields at most ``_INFLATE_PIECE`` octets and keeps
    the rest of the input as a backlog, so 64 KiB of compressed input (up to ~64 MiB
    inflated) never expands in memory at once nor holds the event loop for long.
    """

    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(-15)
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._full = False  # the last piece hit the bound: zlib may hold more output

    @property
    def backlog(self) -> bool:
        """Input already received still has output to give (call :meth:`more`)."""
        return self._full or bool(self.inflater.unconsumed_tail)

    def inflate(self, data: bytes) -> bytes:
        """The first piece of ``data``'s output; b"" when it ends mid-block (not EOF)."""
        out = self.inflater.decompress(data, _INFLATE_PIECE)
        self._full = len(out) == _INFLATE_PIECE
        return out

    def more(self) -> bytes:
        """The next piece of the backlog."""
        return self.inflate(self.inflater.unconsumed_tail)

    def deflate(self, data: bytes) -> bytes:
        return self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)


class _Append:
    """One message of an APPEND command being received."""

    __slots__ = ("date", "facts", "failed", "flags", "mailbox", "nul", "spool", "zone")

    def __init__(
        self,
        mailbox: str,
        flags: tuple[str, ...],
        date: dt.datetime | None,
        spool: Spool,
    ):
        self.mailbox = mailbox
        self.flags = flags
        self.date = date.timestamp() if date is not None else None
        offset = date.utcoffset() if date is not None else None
        # RFC 9051 §2.3.3: INTERNALDATE comes back in the zone APPEND gave
        self.zone = int(offset.total_seconds()) // 60 if offset is not None else None
        self.spool = spool
        self.nul = False  # a literal8 carried NUL: see _binary_to_base64
        self.failed: OSError | None = None  # the spool could not be written: NO at the end
        self.facts = FactsBuilder()


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
        self.auth_tag = ""
        self.appends: list[_Append] = []
        self.append_failed: str | None = None
        self.deflate: _Deflate | None = None
        self.closing = False
        self.shutdown_requested = False
        self.busy = False
        self.seen_counter = -1  # store.change_counter() when the feed was last read
        self.notify: NotifyState | None = None  # RFC 5465 NOTIFY SET
        self.checked_at = 0.0
        self.idling = False  # in IDLE (RFC 2177), for the metrics
        self._last = b""  # the last response written: a tagged one is counted (_count)
        self._commands = ctx.metrics.commands.labels("imap")
        replies = ctx.metrics.reply_counters("imap")
        self._replies = {status.encode(): counter for status, counter in replies.items()}

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
                caps.append("AUTH=PLAIN")
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
                try:
                    if self.notify is not None:  # RFC 5465: changes go out meanwhile
                        data = await notify_read(self, wait)
                    else:
                        data = await self.conn.read(wait)
                except TimeoutError:
                    self.write(untagged("BYE", "Autologout; idle for too long"))
                    return
                if data and deflate is not None:
                    data = deflate.inflate(data)
                    if not data:
                        continue  # RFC 4978: a deflate block split by TCP is not EOF
                self.core.receive_data(data)
            await self._drain()
            await self.conn.flush(self.write_timeout)
            if self.appends:
                self._quickack()
            if self.shutdown_requested and not self.in_transaction:
                self.write(untagged("BYE", "Server shutting down"))
                return

    async def _drain(self) -> None:
        while not self.closing:
            event = self.core.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            self._last = b""
            await self._event(event)
            self._count()
            await self.conn.pace()

    async def _event(self, event: object) -> None:
        match event:
            case CommandEvent(tag=tag, command=command):
                self._commands.inc()
                handler = _HANDLERS.get(type(command))
                if handler is None:
                    self.write(tagged(tag, "BAD", "Command not supported", "CLIENTBUG"))
                    return
                started = time.monotonic()
                self.busy = True
                try:
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
                if self.ctx.log.enabled("debug"):
                    self.ctx.log.debug(
                        "imap.command",
                        session=self.id,
                        command=type(command).__name__,
                        ms=round((time.monotonic() - started) * 1000, 2),
                    )
            case Respond(data=data):
                self.write(data)
            case AppendStart() | CatenateStart():
                await self._append_start(event)
            case CatenateText():  # RFC 4469
                await catenate_text(self, event)
            case CatenateUrl():
                await catenate_url(self, event)
            case AppendChunk(data=data):
                if self.appends and not self.appends[-1].failed:
                    append = self.appends[-1]
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
                await self._append_done(tag)
            case AppendAborted(data=data):
                self._drop_appends()
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
        if (
            not view.read_only
            and top > view.max_uid()
            and self.ctx.imap.claims_recent(view.account, view.name, view.uidvalidity, top)
        ):
            await self.ctx.store.take_recent(view.account, view.name)  # they are \Recent here
        if changes.messages or changes.expunged or view.pending_expunge:
            for line in view.catch_up(
                changes,
                allow_expunge=allow_expunge,
                qresync=self.core.qresync,
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
        state = await self.ctx.store.mailbox_state(view.account, view.name)
        if state.highestmodseq == modseq:
            view.highestmodseq = modseq
            view.share()

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

    async def _login(self, tag: str, user: str, password: str) -> None:
        outcome = await check_password(
            self.ctx, session=self.id, peer_ip=self.conn.peer_ip, user=user, password=password
        )
        if outcome.locked:
            self.write(tagged(tag, "NO", "Too many failed logins; try again later", "UNAVAILABLE"))
            return
        if outcome.account is None:
            self.write(tagged(tag, "NO", "Authentication failed", "AUTHENTICATIONFAILED"))
            return
        try:
            await self._ensure_special_use(outcome.account)
        except StoreError as exc:  # no INBOX and none can be made (disk full): not in
            self.ctx.log.error("imap.store_failed", session=self.id, error=str(exc))
            self.write(tagged(tag, "NO", *imap_reply(exc)))
            return
        self.user = outcome.account
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
        mechanism = server_mechanism(cmd.mechanism)
        if mechanism is None:
            self.write(tagged(tag, "NO", "Unsupported authentication mechanism", "CANNOT"))
            return
        self.mechanism = mechanism
        self.auth_tag = tag
        await self._sasl(mechanism.start(cmd.initial))

    async def _sasl(self, step: Challenge | Credentials | Failed) -> None:
        tag = self.auth_tag
        if isinstance(step, Challenge):
            self.write(self.core.send_challenge(step.data))
            return
        self.mechanism = None
        if isinstance(step, Failed):
            self.write(tagged(tag, "NO", "Malformed authentication data", "AUTHENTICATIONFAILED"))
            return
        if step.authzid not in ("", step.authcid):
            self.write(tagged(tag, "NO", "Authorization identity refused", "AUTHORIZATIONFAILED"))
            return
        await self._login(tag, step.authcid, step.password)

    async def cmd_enable(self, tag: str, cmd: c.Enable) -> None:
        added = self.core.enable(*cmd.capabilities)
        if added:
            self.write(b"* ENABLED " + " ".join(added).encode() + b"\r\n")
        self.write(tagged(tag, "OK", "ENABLE completed"))

    async def cmd_compress(self, tag: str, cmd: c.Compress) -> None:
        self.write(tagged(tag, "OK", "DEFLATE active"))
        await self.conn.flush(self.write_timeout)
        leftover = self.core.compression_started()
        self.deflate = _Deflate()
        if leftover:
            data = self.deflate.inflate(leftover)
            if data:  # b"" is an incomplete block here, never EOF
                self.core.receive_data(data)

    async def cmd_quota(self, tag: str, cmd: object) -> None:
        self.write(tagged(tag, "NO", "No quotas on this server", "NONEXISTENT"))

    # -- mailboxes ------------------------------------------------------------------

    def _name(self, tag: str, raw: str) -> str | None:
        try:
            return check_name(raw)
        except MailboxNameError as exc:
            self.write(tagged(tag, "NO", str(exc), "CANNOT"))
            return None

    async def cmd_select(self, tag: str, cmd: c.Select | c.Examine) -> None:
        assert self.user is not None
        read_only = isinstance(cmd, c.Examine)
        if self.view is not None:
            self.view = None
            self.core.unselected()
            self.write(untagged("OK", "Previous mailbox closed", "CLOSED"))  # RFC 7162 §3.2.11
        name = normalize(cmd.mailbox)
        store = self.ctx.store
        self.seen_counter = store.change_counter(self.user, name)
        self.checked_at = time.monotonic()
        try:
            status = await store.mailbox_status(self.user, name)
        except MailboxError:
            self.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
            return
        messages = await self._snapshot(name, status)
        if read_only:  # EXAMINE sees \Recent without claiming it (RFC 3501 §6.3.2)
            recent = status.recent
            uids = messages.uids
            first_recent = uids[-recent] if 0 < recent <= len(uids) else status.uidnext
        else:
            first_recent = await store.take_recent(self.user, name)
        view = MailboxView(
            self.user,
            name,
            read_only=read_only,
            uidvalidity=status.uidvalidity,
            uidnext=status.uidnext,
            highestmodseq=status.highestmodseq,
            messages=messages,
            first_recent=first_recent,
            shared=self.ctx.imap,
        )
        view.rev2 = self.core.rev2
        if cmd.condstore or cmd.qresync is not None:
            self.core.enable("CONDSTORE")
        self.view = view
        self.core.selected(read_only)
        flags_lines = view.flags_responses()
        self.write(flags_lines[0])
        self.write(b"* %d EXISTS\r\n" % view.exists)
        if not self.core.rev2:
            self.write(b"* %d RECENT\r\n" % view.recent)
            unseen = next(
                (i for i, u in enumerate(view.uids, 1) if "\\Seen" not in view.info[u].flags), 0
            )
            if unseen:
                self.write(untagged("OK", "First unseen", f"UNSEEN {unseen}"))  # RFC 3501 §6.3.1
        self.write(flags_lines[1])
        self.write(untagged("OK", "UIDs valid", f"UIDVALIDITY {view.uidvalidity}"))
        self.write(untagged("OK", "Predicted next UID", f"UIDNEXT {view.uidnext}"))
        self.write(untagged("OK", "Highest", f"HIGHESTMODSEQ {view.highestmodseq}"))
        if self.core.rev2:
            self.write(list_response([], DELIMITER, name, True))  # RFC 9051 §6.3.2
        if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
            await self._qresync(cmd.qresync)
        code = "READ-ONLY" if read_only else "READ-WRITE"
        self.write(
            tagged(tag, "OK", "SELECT completed" if not read_only else "EXAMINE completed", code)
        )

    async def _snapshot(self, name: str, status: MailboxStatus) -> Snapshot:
        """The mailbox's messages at ``status``'s MODSEQ, shared with other sessions."""
        assert self.user is not None
        shared = self.ctx.imap
        snap = shared.snapshot(self.user, name, status.uidvalidity, status.highestmodseq)
        if snap is not None:
            return snap
        messages = await self.ctx.store.list_messages(self.user, name)
        uids, info = [m.uid for m in messages], {m.uid: m for m in messages}
        # Shared only if nothing committed between the two reads: a commit adds a higher
        # MODSEQ or (expunge alone) changes the count.
        if len(messages) == status.messages and all(
            m.modseq <= status.highestmodseq for m in messages
        ):
            fresh = Snapshot(uids, info, status.highestmodseq)
            return shared.publish(self.user, name, status.uidvalidity, fresh)
        return Snapshot(uids, info, 0)  # this session's own, never published

    async def _qresync(self, q: c.Qresync) -> None:
        """RFC 7162 §3.2.5: what changed since the client's MODSEQ."""
        view = self.view
        assert view is not None
        changes = await self.ctx.store.changes_since(view.account, view.name, q.modseq)
        gone = list(changes.expunged)
        if q.known_uids is not None:
            known = q.known_uids.resolve(max(view.max_uid(), max(gone, default=0)))
            gone = [u for u in gone if any(lo <= u <= hi for lo, hi in known)]
        if gone:
            self.write(b"* VANISHED (EARLIER) " + format_uids(gone).encode() + b"\r\n")
        for m in changes.messages:
            seq = view.seq(m.uid)
            if seq is not None:
                self.write(
                    b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                    % (seq, m.uid, view.flag_list(m.uid), m.modseq)
                )

    def _mailboxes_changed(self) -> None:
        """Local delivery caches folder names briefly; +folder must see this change now."""
        if self.ctx.mda is not None and self.user is not None:
            self.ctx.mda.forget(self.user)

    async def cmd_create(self, tag: str, cmd: c.Create) -> None:
        assert self.user is not None
        name = self._name(tag, cmd.mailbox.rstrip(DELIMITER))
        if name is None:
            return
        if name == INBOX:
            self.write(tagged(tag, "NO", "INBOX always exists", "ALREADYEXISTS"))
            return
        use = cmd.special_use[0] if cmd.special_use else None
        limit = self.ctx.config.limits.mailboxes_per_account  # RFC 9051 §7.1 LIMIT
        await self.ctx.store.create_mailbox(self.user, name, use, subscribe=False, limit=limit)
        self._mailboxes_changed()
        self.write(tagged(tag, "OK", "CREATE completed"))  # RFC 9051 §6.3.4

    async def cmd_delete(self, tag: str, cmd: c.Delete) -> None:
        assert self.user is not None
        name = normalize(cmd.mailbox)
        if self.view is not None and self.view.name == name:
            self.view = None
            self.core.unselected()
        await self.ctx.store.delete_mailbox(self.user, name)
        self._mailboxes_changed()
        self.write(tagged(tag, "OK", "DELETE completed"))

    async def cmd_rename(self, tag: str, cmd: c.Rename) -> None:
        assert self.user is not None
        new = self._name(tag, cmd.new_name)
        if new is None:
            return
        if new == INBOX:
            self.write(tagged(tag, "NO", "INBOX already exists", "ALREADYEXISTS"))
            return
        old = normalize(cmd.mailbox)
        if old != INBOX:
            # The inferiors move along: their new names must be valid names too.
            names = [b.name for b in await self.ctx.store.list_mailboxes(self.user)]
            try:
                check_rename(old, new, names)
            except MailboxNameError as exc:
                self.write(tagged(tag, "NO", str(exc), "CANNOT"))
                return
        limit = self.ctx.config.limits.mailboxes_per_account
        await self.ctx.store.rename_mailbox(self.user, old, new, limit=limit)
        self._mailboxes_changed()
        self.write(tagged(tag, "OK", "RENAME completed"))

    async def cmd_subscribe(self, tag: str, cmd: c.Subscribe | c.Unsubscribe) -> None:
        assert self.user is not None
        subscribed = isinstance(cmd, c.Subscribe)
        # RFC 9051 §6.3.7: a name need not exist to be subscribed; it must be a valid one.
        name = self._name(tag, cmd.mailbox) if subscribed else normalize(cmd.mailbox)
        if name is None:
            return
        limit = self.ctx.config.limits.mailboxes_per_account
        await self.ctx.store.set_subscribed(self.user, name, subscribed, limit=limit)
        self.write(
            tagged(tag, "OK", "SUBSCRIBE completed" if subscribed else "UNSUBSCRIBE completed")
        )

    async def cmd_namespace(self, tag: str, cmd: c.Namespace) -> None:
        self.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
        self.write(tagged(tag, "OK", "NAMESPACE completed"))

    async def cmd_list(self, tag: str, cmd: c.List) -> None:
        assert self.user is not None
        utf8 = self.core.utf8
        if len(cmd.patterns) == 1 and cmd.patterns[0] == "" and not cmd.extended:
            # RFC 9051 §6.3.9: the hierarchy delimiter and root
            self.write(b'* LIST (\\Noselect) "/" ""\r\n')
            self.write(tagged(tag, "OK", "LIST completed"))
            return
        try:
            match = list_matcher(cmd.reference, cmd.patterns)
        except PatternError as exc:
            self.write(tagged(tag, "NO", str(exc), "LIMIT"))
            return
        boxes = await self.ctx.store.list_mailboxes(self.user)
        subscriptions = None
        if "SUBSCRIBED" in cmd.selection:
            subscriptions = await self.ctx.store.list_subscriptions(self.user)
        for item in list_lines(boxes, subscriptions, match, cmd, utf8):
            if item is PAUSE:
                await asyncio.sleep(0)  # a long listing lets the other connections run
                continue
            self.write(item.line)
            if item.status is not None:  # RFC 5819
                with contextlib.suppress(MailboxError):  # deleted meanwhile: no STATUS
                    await self._status_line(item.status, cmd.status_items)
                await asyncio.sleep(0)  # each STATUS reads the store on the loop
        self.write(tagged(tag, "OK", "LIST completed"))

    async def cmd_lsub(self, tag: str, cmd: c.Lsub) -> None:
        assert self.user is not None
        try:
            match = list_matcher(cmd.reference, [cmd.pattern])
        except PatternError as exc:
            self.write(tagged(tag, "NO", str(exc), "LIMIT"))
            return
        subscribed = await self.ctx.store.list_subscriptions(self.user)
        for line in lsub_lines(subscribed, match, self.core.utf8):
            if line is PAUSE:
                await asyncio.sleep(0)
                continue
            self.write(line)
        self.write(tagged(tag, "OK", "LSUB completed"))

    async def _status_line(self, name: str, items: tuple[str, ...]) -> None:
        assert self.user is not None
        st = await self.ctx.store.mailbox_status(self.user, name)
        values = {
            "MESSAGES": st.messages,
            "UIDNEXT": st.uidnext,
            "UIDVALIDITY": st.uidvalidity,
            "UNSEEN": st.unseen,
            "DELETED": st.deleted,
            "SIZE": st.size,
            "RECENT": st.recent,
            "HIGHESTMODSEQ": st.highestmodseq,
            "APPENDLIMIT": self.ctx.config.limits.message_size,
        }
        wanted = {i.upper(): values[i.upper()] for i in items if i.upper() in values}
        self.write(status_response(name, wanted, self.core.utf8))

    async def cmd_status(self, tag: str, cmd: c.Status) -> None:
        try:
            await self._status_line(normalize(cmd.mailbox), cmd.items)
        except MailboxError:
            self.write(tagged(tag, "NO", "No such mailbox", "NONEXISTENT"))
            return
        self.write(tagged(tag, "OK", "STATUS completed"))

    # -- APPEND (streamed, RFC 3502 all or nothing) -----------------------------------

    async def _append_start(self, event: AppendStart | CatenateStart) -> None:
        assert self.user is not None
        name = normalize(event.mailbox)
        if self.append_failed is None:
            if sum(f not in SYSTEM_FLAGS for f in event.flags) > MAX_KEYWORDS:
                self._drop_appends()
                text = f"A message carries at most {MAX_KEYWORDS} keywords"
                self.write(self.core.append_reject("NO", text, "LIMIT"))
                return
            try:
                await self.ctx.store.mailbox_state(self.user, name)  # cheaper than STATUS
            except StoreError:
                self.append_failed = "TRYCREATE"
        if self.append_failed is not None:
            self._drop_appends()
            code, self.append_failed = self.append_failed, None
            self.write(self.core.append_reject("NO", "No such mailbox", code))
            return
        self.appends.append(_Append(name, event.flags, event.date, self.ctx.store.new_spool()))
        self.write(self.core.append_accept())
        await self.conn.flush(self.write_timeout)

    def _drop_appends(self) -> None:
        for append in self.appends:
            append.spool.discard()
        self.appends = []

    async def _append_done(self, tag: str) -> None:
        assert self.user is not None
        appends, self.appends = self.appends, []
        store = self.ctx.store
        done: list[tuple[str, int]] = []
        failed = next((a.failed for a in appends if a.failed is not None), None)
        if failed is not None:
            for a in appends:
                a.spool.discard()
            self.write(tagged(tag, "NO", *imap_reply(failed, "APPEND failed: cannot store it")))
            return
        try:
            indexed = []
            for a in appends:
                if a.nul:
                    await self._binary_to_base64(a)
                facts = a.facts.finish()
                spool = a.spool
                held = spool.read() if spool.in_memory else b""
                commit = asyncio.ensure_future(
                    store.deliver(
                        spool,
                        Envelope(sender="", authenticated=self.user),
                        [_target(self.user, a.mailbox, a.flags)],
                        facts=facts,
                        internal_date=a.date,
                        internal_zone=a.zone,
                    )
                )
                text = None
                if held and len(held) == spool.size:  # small: it never left memory
                    await asyncio.sleep(0)  # the commit goes to the writer thread first
                    # the SEARCH text, extracted while the commit waits for its fsync
                    with contextlib.suppress(ValueError):  # best effort: SEARCH scans it
                        text = indexable(held, load_tree(facts))
                result = await commit
                done.append((a.mailbox, result.uids[0][1]))
                indexed.append((a.mailbox, result.uids[0][1], text))
        except StoreError as exc:
            for mailbox, uid in done:  # RFC 3502 §6: all or nothing
                await store.expunge(self.user, mailbox, [uid])
            for a in appends:
                a.spool.discard()
            self.ctx.log.error("imap.append_failed", session=self.id, error=str(exc))
            self.write(tagged(tag, "NO", *imap_reply(exc, "APPEND failed")))
            return
        for mailbox, uid, text in indexed:  # the SEARCH TEXT index
            if text is not None:
                indexer_for(store).write(self.user, mailbox, {uid: text})
            else:
                indexer_for(store).add([(self.user, mailbox, uid)])
        status = await store.mailbox_state(self.user, done[-1][0])
        uids = format_uids(uid for _, uid in done)
        if self.view is not None:
            await self._updates(allow_expunge=False)
        self.write(tagged(tag, "OK", "APPEND completed", f"APPENDUID {status.uidvalidity} {uids}"))

    async def _binary_to_base64(self, a: _Append) -> None:
        """RFC 9051 §4.3/§6.3.12: NUL may reach a client only in BINARY[]; store such parts
        base64-encoded (reversible), in memory: the APPEND limit bounds it and it is rare."""
        spool = a.spool
        data = await spool_read(spool)
        converted = base64_binary_parts(data)
        if converted is None:
            return
        a.spool = self.ctx.store.new_spool()
        a.spool.write(converted)
        a.facts = FactsBuilder()
        a.facts.feed(converted)
        spool.discard()

    # -- IDLE ---------------------------------------------------------------------

    async def cmd_idle(self, tag: str, cmd: c.Idle) -> None:
        self.write(self.core.idle_started())
        self.idling = True
        answered = await self._idle_updates()
        await self.conn.flush(self.write_timeout)
        self.busy = False
        read_task: asyncio.Task[bytes] | None = None
        try:
            while True:
                view = self.view
                if self.core.buffered or (self.deflate is not None and self.deflate.backlog):
                    return  # input already received (DONE may be in it): _drain/_loop see it
                if read_task is None:
                    read_task = asyncio.create_task(self.conn.read(1800.0))
                waiters: set[asyncio.Future[Any]] = {read_task}
                if view is not None and not answered:  # the store failed: look again soon
                    waiters.add(asyncio.ensure_future(asyncio.sleep(_IDLE_RETRY)))
                elif view is not None:
                    waiters.add(
                        asyncio.ensure_future(
                            self.ctx.store.wait_for_change(
                                view.account,
                                view.name,
                                view.highestmodseq,
                                _IDLE_POLL,
                                counter=self.seen_counter,
                            )
                        )
                    )
                if self.notify is not None:
                    waiters.add(notify_wait(self))  # RFC 5465 §4: the same events in IDLE
                done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for fut in pending:
                    if fut is not read_task:
                        fut.cancel()
                for fut in done:  # a failed look is retried by _idle_updates below
                    if fut is not read_task and not fut.cancelled():
                        fut.exception()
                if read_task in done:
                    try:
                        data = read_task.result()
                    except TimeoutError:
                        data = b""
                    read_task = None
                    if data and self.deflate is not None:
                        data = self.deflate.inflate(data)
                        if not data:
                            continue  # an incomplete deflate block, not EOF: keep idling
                    self.core.receive_data(data)
                    if not data:
                        self.closing = True
                    return  # _drain picks up IdleDone (or the next command)
                answered = await self._idle_updates()
                await notify_deliver(self)
                await self.conn.flush(self.write_timeout)
                if self.shutdown_requested:
                    self.write(untagged("BYE", "Server shutting down"))
                    self.closing = True
                    return
        finally:
            if read_task is not None:
                read_task.cancel()

    async def _idle_updates(self) -> bool:
        """:meth:`_updates` while idling; False when the store could not answer (its
        database restarting). The session stays in IDLE and looks again shortly, so it
        catches up on what changed meanwhile once the store is back."""
        try:
            await self._updates()
        except StoreError as exc:
            self.ctx.log.warning("imap.idle_store_failed", session=self.id, error=str(exc))
            return False
        return True

    # -- selected state -------------------------------------------------------------

    def _uids(self, sequence: Any, uid: bool) -> list[int]:
        view = self.view
        assert view is not None
        if sequence.saved:
            return [u for u in view.saved if u in view.info]
        if uid:
            return view.uids_for_uid_ranges(sequence.resolve(view.max_uid()))
        return view.uids_for_seq_ranges(sequence.resolve(view.exists))

    async def cmd_close(self, tag: str, cmd: c.Close | c.Unselect) -> None:
        view = self.view
        assert view is not None and self.user is not None
        if isinstance(cmd, c.Close) and not view.read_only:
            deleted = [u for u in view.uids if "\\Deleted" in view.info[u].flags]
            if deleted:
                await self.ctx.store.expunge(self.user, view.name, deleted)  # silently (§6.4.1)
        self.view = None
        self.core.unselected()
        self.write(
            tagged(
                tag, "OK", "CLOSE completed" if isinstance(cmd, c.Close) else "UNSELECT completed"
            )
        )

    async def cmd_expunge(self, tag: str, cmd: c.Expunge | c.UidExpunge) -> None:
        view = self.view
        assert view is not None and self.user is not None
        if view.read_only:
            self.write(tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY"))
            return
        await self._updates()
        candidates = view.uids
        if isinstance(cmd, c.UidExpunge):
            candidates = self._uids(cmd.uids, True)
        deleted = [u for u in candidates if "\\Deleted" in view.info[u].flags]
        if deleted:
            await self.ctx.store.expunge(self.user, view.name, deleted)
            for line in view.expunged_now(deleted, self.core.qresync):
                self.write(line)
        await self._updates()
        self.write(tagged(tag, "OK", "EXPUNGE completed"))

    async def cmd_search(self, tag: str, cmd: c.Search) -> None:
        view = self.view
        assert view is not None
        if refused_update(self, tag, cmd):
            return
        await self._updates(allow_expunge=False)
        if _uses_modseq(cmd.criteria):
            self._condstore_on()
        matched = await run_search(self.ctx.store, view, cmd.criteria)
        result = (
            matched if cmd.uid else [s for s in (view.seq(u) for u in matched) if s is not None]
        )
        modseq = None
        if self.core.condstore and _uses_modseq(cmd.criteria) and matched:
            modseq = max(view.info[u].modseq for u in matched)
        if cmd.return_options is None:
            self.write(search_response(result, modseq))
        else:  # RFC 4731, RFC 5267 §4: ESEARCH, PARTIAL, UPDATE
            await esearch_reply(self, tag, cmd, matched, modseq)
        self.write(tagged(tag, "OK", "SEARCH completed"))

    async def cmd_sort(self, tag: str, cmd: c.Sort) -> None:
        view = self.view
        assert view is not None
        if refused_update(self, tag, cmd):
            return
        await self._updates(allow_expunge=False)
        matched = await run_search(self.ctx.store, view, cmd.search)
        ordered = await sort_uids(self.ctx.store, view, matched, cmd.criteria)
        if cmd.return_options is not None:  # RFC 5267 §3 ESORT, §4 CONTEXT=SORT
            await esearch_reply(self, tag, cmd, ordered, None)
            self.write(tagged(tag, "OK", "SORT completed"))
            return
        result = ordered if cmd.uid else [view.seq(u) or 0 for u in ordered]
        self.write(b"* SORT" + b"".join(b" %d" % n for n in result) + b"\r\n")
        self.write(tagged(tag, "OK", "SORT completed"))

    async def cmd_thread(self, tag: str, cmd: c.Thread) -> None:
        view = self.view
        assert view is not None
        await self._updates(allow_expunge=False)
        matched = await run_search(self.ctx.store, view, cmd.search)
        text = await thread_uids(self.ctx.store, view, matched, cmd.algorithm, uid=cmd.uid)
        self.write(b"* THREAD " + text + b"\r\n")
        self.write(tagged(tag, "OK", "THREAD completed"))

    async def cmd_fetch(self, tag: str, cmd: c.Fetch) -> None:
        view = self.view
        assert view is not None and self.user is not None
        await self._updates(allow_expunge=False)
        uids = self._uids(cmd.sequence, cmd.uid)
        plan = FetchPlan.of(
            cmd.items,
            uid_command=cmd.uid,
            condstore=self.core.condstore or cmd.changedsince is not None,
        )
        if not self.core.condstore and (cmd.changedsince is not None or "MODSEQ" in plan.names):
            self._condstore_on()
            plan = FetchPlan.of(cmd.items, uid_command=cmd.uid, condstore=True)
        if cmd.changedsince is not None:
            uids = [u for u in uids if view.info[u].modseq > cmd.changedsince]
            if cmd.vanished and cmd.uid:
                changes = await self.ctx.store.changes_since(
                    view.account, view.name, cmd.changedsince
                )
                known = cmd.sequence.resolve(view.max_uid())
                gone = [u for u in changes.expunged if any(lo <= u <= hi for lo, hi in known)]
                if gone:
                    self.write(b"* VANISHED (EARLIER) " + format_uids(gone).encode() + b"\r\n")
        if plan.sets_seen and not view.read_only:
            unseen = [u for u in uids if "\\Seen" not in view.info[u].flags]
            if unseen:
                changed, _ = await self.ctx.store.store_flags(
                    self.user, view.name, unseen, "add", ["\\Seen"]
                )
                await self._stored(changed)
                await contexts_changed(self)
                if "FLAGS" not in plan.names:
                    plan = FetchPlan.of(
                        (*cmd.items, c.FetchAtt("FLAGS")),
                        uid_command=cmd.uid,
                        condstore=plan.condstore,
                    )
        facts = {}
        for start in range(0, len(uids), 1000):
            batch = uids[start : start + 1000]
            if plan.metadata_only:
                data = await render_meta_batch(self.ctx.store, view, batch, plan)
                pending = len(data)
                self.write(data)
            else:
                if plan.needs_facts:
                    facts = await ensure_facts(self.ctx.store, view, batch)
                pending = 0
                for uid in batch:
                    if uid not in view.info:
                        continue
                    out = await render_message(self.ctx.store, view, uid, plan, facts.get(uid))
                    if out.streams is None:
                        for piece in out.pieces:
                            pending += len(piece)
                            self.write(piece)
                    else:
                        pending = await self._send_streams(out, pending)
            if start + 1000 < len(uids) or pending > _HOLD_BACK:
                await self.conn.flush(
                    self.write_timeout
                )  # a small last batch goes out with the tagged reply
        self.write(tagged(tag, "OK", "FETCH completed"))

    async def _send_streams(self, out: Rendered, pending: int) -> int:
        """Write a response with streamed literals, draining the socket as they go so
        memory stays flat; returns the bytes written since the last flush."""
        streams = out.streams or {}
        for index, piece in enumerate(out.pieces):
            chunks = streams.get(index)
            if chunks is None:
                pending += len(piece)
                self.write(piece)
                continue
            async for chunk in chunks:
                pending += len(chunk)
                self.write(chunk)
                if pending > _STREAM_FLUSH:
                    await self.conn.flush(self.write_timeout)
                    pending = 0
        return pending

    async def cmd_store(self, tag: str, cmd: c.Store) -> None:
        view = self.view
        assert view is not None and self.user is not None
        if view.read_only:
            self.write(tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY"))
            return
        await self._updates(allow_expunge=False)
        uids = self._uids(cmd.sequence, cmd.uid)
        if cmd.mode != "remove":
            fresh = {f for f in cmd.flags if f not in SYSTEM_FLAGS and f not in view.keywords}
            if fresh and len(view.keywords) + len(fresh) > MAX_KEYWORDS:
                text = f"A mailbox holds at most {MAX_KEYWORDS} keywords"
                self.write(tagged(tag, "NO", text, "LIMIT"))
                return
        if cmd.unchangedsince is not None:
            self._condstore_on()
        changed, failed = await self.ctx.store.store_flags(
            self.user, view.name, uids, cmd.mode, cmd.flags, cmd.unchangedsince
        )
        await self._stored(changed)
        for line in view.new_keywords(changed):
            self.write(line)
        changed_uids = {m.uid for m in changed}
        condstore = self.core.condstore or cmd.unchangedsince is not None
        for uid in uids:
            if uid in failed or uid not in view.info:
                continue
            if cmd.silent and not (condstore and uid in changed_uids):
                continue
            seq = view.seq(uid)
            items = [b"FLAGS " + view.flag_list(uid)] if not cmd.silent else []
            if cmd.uid:
                items.insert(0, b"UID %d" % uid)
            if condstore:
                items.append(b"MODSEQ (%d)" % view.info[uid].modseq)
            self.write(b"* %d FETCH (" % (seq or 0) + b" ".join(items) + b")\r\n")
        await contexts_changed(self)  # RFC 5267 §4.3: after the FETCHes
        if failed:
            numbers = failed if cmd.uid else [view.seq(u) or 0 for u in failed]
            self.write(
                tagged(tag, "OK", "Conditional STORE failed", f"MODIFIED {format_uids(numbers)}")
            )
        else:
            self.write(tagged(tag, "OK", "STORE completed"))

    async def cmd_copy(self, tag: str, cmd: c.Copy | c.Move) -> None:
        view = self.view
        assert view is not None and self.user is not None
        move = isinstance(cmd, c.Move)
        if move and view.read_only:
            self.write(tagged(tag, "NO", "Mailbox is read-only", "READ-ONLY"))
            return
        target = normalize(cmd.mailbox)
        try:
            status = await self.ctx.store.mailbox_status(self.user, target)
        except MailboxError:
            self.write(tagged(tag, "NO", "No such mailbox", "TRYCREATE"))
            return
        await self._updates(allow_expunge=False)
        uids = self._uids(cmd.sequence, cmd.uid)
        into_self = target == view.name
        store = self.ctx.store
        pairs = await store.copy_messages(
            self.user, view.name, uids, target, move=move and not into_self
        )
        if move and into_self and pairs:
            # RFC 6851 §3.3: moving into the source mailbox is allowed; the messages get
            # new UIDs, so it is a copy and then an expunge of the originals.
            await store.expunge(self.user, view.name, [p[0] for p in pairs])
        if pairs:
            source_uids = format_uids(p[0] for p in pairs)
            code = f"COPYUID {status.uidvalidity} {source_uids} {format_uids(p[1] for p in pairs)}"
        else:
            code = None
        if move:
            if code:
                self.write(untagged("OK", "Moved", code))  # RFC 6851 §4.3
            for line in view.expunged_now([p[0] for p in pairs], self.core.qresync):
                self.write(line)
        if into_self and pairs:
            # RFC 6851 §4.4: the EXPUNGEs above first, then EXISTS for the new messages
            await self._updates(allow_expunge=False)
        if move:
            self.write(tagged(tag, "OK", "MOVE completed"))
        else:
            self.write(tagged(tag, "OK", "COPY completed", code))
        await on_imap_move(self.ctx, self.user, view.name, target, [p[1] for p in pairs])


_HANDLERS: dict[type, Handler] = {
    c.Capability: ImapSession.cmd_capability,
    c.Noop: ImapSession.cmd_noop,
    c.Check: ImapSession.cmd_noop,
    c.Logout: ImapSession.cmd_logout,
    c.StartTLS: ImapSession.cmd_starttls,
    c.Authenticate: ImapSession.cmd_authenticate,
    c.Login: ImapSession.cmd_login,
    c.Enable: ImapSession.cmd_enable,
    c.Select: ImapSession.cmd_select,
    c.Examine: ImapSession.cmd_select,
    c.Create: ImapSession.cmd_create,
    c.Delete: ImapSession.cmd_delete,
    c.Rename: ImapSession.cmd_rename,
    c.Subscribe: ImapSession.cmd_subscribe,
    c.Unsubscribe: ImapSession.cmd_subscribe,
    c.List: ImapSession.cmd_list,
    c.Lsub: ImapSession.cmd_lsub,
    c.Namespace: ImapSession.cmd_namespace,
    c.Status: ImapSession.cmd_status,
    c.Idle: ImapSession.cmd_idle,
    c.Close: ImapSession.cmd_close,
    c.Unselect: ImapSession.cmd_close,
    c.Expunge: ImapSession.cmd_expunge,
    c.UidExpunge: ImapSession.cmd_expunge,
    c.Search: ImapSession.cmd_search,
    c.Sort: ImapSession.cmd_sort,
    c.Thread: ImapSession.cmd_thread,
    c.Fetch: ImapSession.cmd_fetch,
    c.Store: ImapSession.cmd_store,
    c.Copy: ImapSession.cmd_copy,
    c.Move: ImapSession.cmd_copy,
    c.Id: ImapSession.cmd_id,
    c.Compress: ImapSession.cmd_compress,
    c.GetQuota: ImapSession.cmd_quota,
    c.GetQuotaRoot: ImapSession.cmd_quota,
    CancelUpdate: cmd_cancelupdate,
    GenUrlAuth: cmd_genurlauth,
    ResetKey: cmd_resetkey,
    UrlFetch: cmd_urlfetch,
    Notify: cmd_notify,
}


def _target(account: str, mailbox: str, flags: tuple[str, ...]) -> Any:
    from correo.store.api import DeliveryTarget

    return DeliveryTarget(account, mailbox, flags)


def _uses_modseq(key: object) -> bool:
    from correo.imap.search import And, ModSeqKey, Not, Or

    match key:
        case ModSeqKey():
            return True
        case Not(inner):
            return _uses_modseq(inner)
        case Or(left, right):
            return _uses_modseq(left) or _uses_modseq(right)
        case And(keys):
            return any(_uses_modseq(k) for k in keys)
    return False


_ = mailbox_name
