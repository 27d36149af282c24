"""One delivery attempt: one connection to one host, one or more messages over it.

The asyncio shell around :class:`correo.smtp.client.ClientConnection`.  It connects,
reads the greeting, says EHLO (falling back to HELO, RFC 5321 §4.1.4), upgrades with
STARTTLS when offered (opportunistic) or demanded (smart host configured so, RFC 3207),
authenticates to smart hosts (AUTH PLAIN/LOGIN, RFC 4954), then for each message sends
MAIL/RCPT/DATA pipelined when the server allows (RFC 2920), BDAT when it offers CHUNKING
(RFC 3030), and turns every reply into a per-recipient outcome.

Every wait has the RFC 5321 §4.5.3.2 timeout for its stage.  Connection-level failures
raise :class:`ConnectFailed` (the caller tries the next host or defers); once a
transaction has started, failures become per-recipient "deferred" outcomes.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import functools
import quopri
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from typing import Literal, TypeVar

from correo.log import Logger
from correo.queue.dane import DANE_STATUS, dane_failure
from correo.queue.mtasts import tls_context
from correo.queue.routing import Target
from correo.smtp.client import (
    NEED_DATA,
    AuthReply,
    BdatReply,
    ClientConnection,
    ClientState,
    ConnectionClosed,
    DataReply,
    EhloReply,
    Event,
    Extensions,
    Greeting,
    MailReply,
    MessageReply,
    OtherReply,
    ProtocolViolation,
    RcptReply,
    ServerReply,
    StartTlsReply,
)
from correo.store.api import QueuedMessage, QueueRecipientState

__all__ = [
    "ConnectFailed",
    "OutboundSmtpSession",
    "Outcome",
    "RecipientResult",
    "SuccessAction",
    "Timeouts",
    "downgrade_8bit",
]

Outcome = Literal["delivered", "deferred", "failed"]
SuccessAction = Literal["delivered", "relayed", "expanded", ""]
E = TypeVar("E", bound=Event)
_CHUNK = 256 * 1024
_DOWNGRADE_LIMIT = 32 * 1024 * 1024  # 7-bit conversion happens in memory


@dataclass(frozen=True, slots=True)
class Timeouts:
    """RFC 5321 §4.5.3.2 minimums (connect is ours)."""

    connect: float = 30.0
    greeting: float = 300.0  # §4.5.3.2.1
    command: float = 300.0  # §4.5.3.2.2 MAIL, §4.5.3.2.3 RCPT
    data: float = 180.0  # §4.5.3.2.4 DATA initiation (2 min), §4.5.3.2.5 data block (3 min)
    data_end: float = 600.0  # §4.5.3.2.6 DATA termination


@dataclass(frozen=True, slots=True)
class RecipientResult:
    address: str
    outcome: Outcome
    status: str  # enhanced status code for the DSN
    diagnostic: str  # "550 5.1.1 ..." as the server said it, or our own text
    remote_mta: str = ""
    from_server: bool = True  # False: our own diagnosis (no Diagnostic-Code: smtp;)
    #: On success, the action a NOTIFY=SUCCESS report of ours states (RFC 3461 §6.2):
    #: "delivered" (final delivery, LMTP), "relayed" (a peer without DSN), "expanded"
    #: (an alias), or "" when the NOTIFY was passed on and the next hop reports.
    success_action: SuccessAction = "delivered"


class ConnectFailed(Exception):
    """No usable session with this host: try the next one, or defer."""

    def __init__(
        self, text: str, *, tls_failed: bool = False, tls_result: str = "", status: str = "4.4.1"
    ) -> None:
        super().__init__(text)
        self.text = text
        self.tls_failed = tls_failed
        #: The enhanced status code the recipients wait with (DANE: 4.7.5).
        self.status = status
        #: The RFC 8460 §4.3 result type of a failed handshake, for the TLS reports.
        self.tls_result = tls_result


def tls_failure_type(exc: BaseException) -> str:
    """RFC 8460 §4.3.1: what kind of failure a handshake error is."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return "certificate-host-mismatch"
        if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return "certificate-expired"
        return "certificate-not-trusted"
    return "validation-failure"


class _Broken(Exception):
    """The connection died or the server broke the protocol mid-session."""


def _status(reply: ServerReply) -> str:
    if reply.status:
        return reply.status
    # RFC 3463 §3.1: with no enhanced code, X.0.0 of the reply's class.
    return f"{reply.code // 100}.0.0"


def _outcome(reply: ServerReply) -> Outcome:
    if reply.is_positive:
        return "delivered"
    return "deferred" if reply.is_transient else "failed"


@functools.lru_cache(maxsize=8)
def _client_tls(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    """One context per kind, shared by every connection (loading the system's CAs for
    each one cost milliseconds)."""
    if verify:  # the system's CAs plus ca_file, TLS 1.2+, names from the SAN only
        return tls_context(ca_file)
    # Opportunistic TLS (RFC 7435): encryption without authentication beats plaintext.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def downgrade_8bit(message: bytes) -> bytes | None:
    """Re-encode 8-bit MIME parts as quoted-printable (text) or base64 (RFC 6152 §3).

    For a peer without 8BITMIME.  Returns None when the header section itself holds
    8-bit octets (only SMTPUTF8 could carry those; RFC 6532).
    """
    end = message.find(b"\r\n\r\n")
    if not message[: end if end >= 0 else len(message)].isascii():
        return None
    try:
        return _downgrade(message)
    except RecursionError:
        # The stdlib parser and generator recurse per MIME level: a message nested a
        # few thousand deep cannot be converted (and must not kill the delivery).
        return None


# Encoders in C hold the GIL for all of one call, in a worker thread too: one over a
# 50 MB part kept the event loop waiting for most of a second. These take a piece of
# about 64 KiB at a time, with the same output as one call over the whole.
_B64_PIECE = 57 * 1152  # octets: whole 76-character base64 lines (57 octets each)
_QP_PIECE = 64 * 1024


def _base64_lines(data: bytes) -> str:
    pieces = range(0, len(data), _B64_PIECE)
    return "".join(base64.encodebytes(data[i : i + _B64_PIECE]).decode("ascii") for i in pieces)


def _quoted_printable(data: bytes) -> str | None:
    """Quoted-printable (RFC 2045 §6.7) a run of whole lines at a time; None when a line
    is longer than a piece (then the part goes as base64)."""
    out = []
    at = 0
    while at < len(data):
        end = len(data)
        if end - at > _QP_PIECE:
            end = data.rfind(b"\n", at, at + _QP_PIECE) + 1
            if end <= at:
                return None
        out.append(quopri.encodestring(data[at:end]).decode("ascii"))
        at = end
    return "".join(out)


def _downgrade(message: bytes) -> bytes | None:
    msg = BytesParser(policy=email.policy.compat32).parsebytes(message)
    for part in msg.walk():
        if part.is_multipart():
            continue
        raw = part.get_payload(decode=False)
        raw_bytes = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
        if raw_bytes.isascii():
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        del part["Content-Transfer-Encoding"]
        text = None
        if part.get_content_maintype() == "text":
            text = _quoted_printable(data.replace(b"\r\n", b"\n"))
        if text is not None:
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:  # not text, or a line too long to encode a piece at a time
            text = _base64_lines(data)
            part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(text)
    out = msg.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
    return out if out.isascii() else None


class OutboundSmtpSession:
    """An established SMTP/LMTP client session with one host, ready for transactions
    (the client side; server/smtp_session.py's ``SmtpSession`` is the server side)."""

    def __init__(
        self,
        target: Target,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        core: ClientConnection,
        timeouts: Timeouts,
        log: Logger,
    ) -> None:
        self.target = target
        self.reader = reader
        self.writer = writer
        self.core = core
        self.timeouts = timeouts
        self.log = log
        self.usable = True
        self.tls = ""
        self.starttls_offered = False  # the EHLO reply listed STARTTLS
        self.messages = 0

    # -- set-up --------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: Target,
        *,
        helo: str,
        timeouts: Timeouts,
        log: Logger,
        use_tls: bool = True,
        source: str | None = None,
    ) -> OutboundSmtpSession:
        """Connect (from ``source`` if given), greet, EHLO, STARTTLS and AUTH as the
        target demands."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.address,
                    target.port,
                    limit=2**20,
                    local_addr=(source, 0) if source else None,
                ),
                timeouts.connect,
            )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(
                f"connect to {target.hostname}[{target.address}]:{target.port}: {exc or 'timeout'}"
            ) from None
        core = ClientConnection(lmtp=target.protocol == "lmtp")
        session = cls(target, reader, writer, core, timeouts, log)
        try:
            await session._handshake(helo, use_tls)
        except (_Broken, OSError, TimeoutError) as exc:
            await session.close(quit=False)
            raise ConnectFailed(f"{session.where}: {exc or 'timeout'}") from None
        except ConnectFailed:
            await session.close(quit=session.core.state is not ClientState.CLOSED)
            raise
        return session

    @property
    def where(self) -> str:
        return f"host {self.target.hostname}[{self.target.address}]"

    async def _handshake(self, helo: str, use_tls: bool) -> None:
        greeting = await self._expect(Greeting, self.timeouts.greeting)
        if greeting.reply.code != 220:  # RFC 5321 §3.1: 554 = no service here
            raise ConnectFailed(f"{self.where} refused to talk: {greeting.reply.diagnostic()}")
        ext = await self._ehlo(helo)
        mode = self.target.tls
        self.starttls_offered = ext.starttls
        if use_tls and mode != "none" and ext.starttls:
            self._write(self.core.starttls())
            reply = (await self._expect(StartTlsReply, self.timeouts.command)).reply
            if reply.code == 220:
                await self._start_tls()
                ext = await self._ehlo(helo)
            elif mode == "required":
                raise self._no_tls(f"{self.where} refused STARTTLS: {reply.diagnostic()}")
        elif mode == "required" and not self.tls:
            # RFC 3207 §4: a client requiring TLS must not go on without it.
            raise self._no_tls(f"TLS is required, but {self.where} did not offer STARTTLS")
        if self.target.username is not None:
            await self._auth()

    async def _ehlo(self, helo: str) -> Extensions:
        self._write(self.core.ehlo(helo))
        event = await self._expect(EhloReply, self.timeouts.command)
        if event.reply.code == 250:
            return self.core.extensions
        if event.reply.is_permanent and not self.core.lmtp:
            # RFC 5321 §4.1.4: fall back to HELO when EHLO is not understood.
            self._write(self.core.helo(helo))
            event = await self._expect(EhloReply, self.timeouts.command)
            if event.reply.code == 250:
                return self.core.extensions
        raise ConnectFailed(f"{self.where} refused our greeting: {event.reply.diagnostic()}")

    def _no_tls(self, text: str) -> ConnectFailed:
        """No TLS with a host that requires it (DANE: never plaintext, RFC 7672 §2.2)."""
        if self.target.dane:
            return ConnectFailed(
                f"DANE: {text}", status=DANE_STATUS, tls_result="starttls-not-supported"
            )
        return ConnectFailed(text)

    async def _start_tls(self) -> None:
        # A DANE target's chain is checked against its TLSA records after the handshake;
        # the server name sent is the TLSA base domain, the MX host (RFC 7672 §8.1).
        ctx = _client_tls(self.target.verify, self.target.ca_file)
        try:
            await asyncio.wait_for(
                self.writer.start_tls(ctx, server_hostname=self.target.hostname),
                self.timeouts.command,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.usable = False
            dane = "DANE: " if self.target.dane else ""
            raise ConnectFailed(
                f"{dane}TLS handshake with {self.where} failed: {exc}",
                tls_failed=True,
                tls_result=tls_failure_type(exc),
                status=DANE_STATUS if self.target.dane else "4.4.1",
            ) from None
        self.core.tls_started()
        sslobj = self.writer.get_extra_info("ssl_object")
        if sslobj is not None:
            cipher = sslobj.cipher()
            self.tls = f"{sslobj.version()} {cipher[0] if cipher else ''}".strip()
        problem = dane_failure(self.target, sslobj)
        if problem is not None:
            self.usable = False
            raise ConnectFailed(
                f"DANE: {self.where}: {problem}",
                tls_failed=True,
                tls_result="tlsa-invalid",  # RFC 8460 §4.3.2
                status=DANE_STATUS,
            )
        if self.target.tlsa:
            self.tls += " DANE"
        self.log.info(
            "queue.tls", host=self.target.hostname, address=self.target.address, tls=self.tls
        )

    async def _auth(self) -> None:
        user, password = self.target.username or "", self.target.password or ""
        offered = self.core.extensions.auth
        if not self.tls and self.target.tls != "none":
            raise ConnectFailed(f"refusing to send credentials to {self.where} without TLS")
        if "PLAIN" in offered:
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            self._write(self.core.auth("PLAIN", token))  # RFC 4616
            reply = (await self._expect(AuthReply, self.timeouts.command)).reply
        elif "LOGIN" in offered:
            self._write(self.core.auth("LOGIN"))
            reply = (await self._expect(AuthReply, self.timeouts.command)).reply
            for secret in (user, password):
                if reply.code != 334:
                    break
                self._write(self.core.auth_response(base64.b64encode(secret.encode()).decode()))
                reply = (await self._expect(AuthReply, self.timeouts.command)).reply
        else:
            raise ConnectFailed(f"{self.where} offers no AUTH PLAIN or LOGIN")
        if reply.code != 235:
            raise ConnectFailed(f"authentication to {self.where} failed: {reply.diagnostic()}")

    # -- I/O helpers ---------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.writer.write(data)

    async def _event(self, timeout: float) -> Event:
        while True:
            event = self.core.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Event)
                if isinstance(event, ConnectionClosed):
                    self.usable = False
                    raise _Broken("connection closed by the server")
                if isinstance(event, ProtocolViolation):
                    self.usable = False
                    raise _Broken(f"protocol error: {event.text}")
                if isinstance(event, OtherReply) and event.command == "UNSOLICITED":
                    self.usable = False
                    raise _Broken(event.reply.diagnostic())
                return event
            await asyncio.wait_for(self.writer.drain(), timeout)
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            self.core.receive_data(data)

    async def _expect(self, kind: type[E], timeout: float) -> E:
        event = await self._event(timeout)
        if not isinstance(event, kind):
            self.usable = False
            raise _Broken(f"unexpected {type(event).__name__}")
        return event

    async def close(self, *, quit: bool = True) -> None:
        """QUIT politely (RFC 5321 §4.1.1.10), then close; never raises."""
        try:
            if quit and self.usable:
                self._write(self.core.quit())
                await asyncio.wait_for(self.writer.drain(), 5)
                await asyncio.wait_for(self.reader.read(4096), 5)
        except (OSError, TimeoutError, Exception):
            pass
        self.usable = False
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, TimeoutError, Exception):
            pass

    # -- transactions --------------------------------------------------------------

    async def deliver(
        self,
        message: QueuedMessage,
        recipients: Sequence[QueueRecipientState],
        body: AsyncIterator[bytes],
    ) -> list[RecipientResult]:
        """One transaction; every recipient gets an outcome (never raises)."""
        try:
            return await self._transaction(message, recipients, body)
        except (_Broken, OSError, TimeoutError) as exc:
            self.usable = False
            text = f"lost connection with {self.where}: {exc or 'timeout'}"
            return [self._ours(r.address, "deferred", "4.4.2", text) for r in recipients]
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()

    def _ours(self, address: str, outcome: Outcome, status: str, text: str) -> RecipientResult:
        return RecipientResult(address, outcome, status, text, self.target.hostname, False)

    def _result(self, address: str, reply: ServerReply) -> RecipientResult:
        # RFC 3461 §6.2: a DSN-aware peer got our NOTIFY and reports itself; otherwise
        # an LMTP hop is final delivery and an SMTP hop leaves the DSN world.
        core = self.core
        action: SuccessAction = (
            "" if core.extensions.dsn else "delivered" if core.lmtp else "relayed"
        )
        return RecipientResult(
            address,
            _outcome(reply),
            _status(reply),
            reply.diagnostic(),
            self.target.hostname,
            success_action=action,
        )

    async def _transaction(
        self,
        message: QueuedMessage,
        recipients: Sequence[QueueRecipientState],
        body: AsyncIterator[bytes],
    ) -> list[RecipientResult]:
        ext = self.core.extensions
        addresses = [r.address for r in recipients]
        size = message.size
        if ext.size and size > ext.size:  # RFC 1870 §6: do not send what will be refused
            text = f"message size {size} exceeds the limit {ext.size} of {self.where}"
            return [self._ours(a, "failed", "5.3.4", text) for a in addresses]
        needs_utf8 = message.smtputf8 or not all(a.isascii() for a in addresses)
        if needs_utf8 and not ext.smtputf8:
            # RFC 6531 §3.2: without SMTPUTF8 at the peer, such mail cannot be relayed.
            text = f"{self.where} does not support SMTPUTF8, needed by this message"
            return [self._ours(a, "failed", "5.6.7", text) for a in addresses]
        eight_bit = (message.body or "").upper() == "8BITMIME"
        chunks: AsyncIterator[bytes] | list[bytes] = body
        if eight_bit and not ext.eightbitmime and not self.core.lmtp:
            data = bytearray()
            async for chunk in body:
                data += chunk
                if len(data) > _DOWNGRADE_LIMIT:
                    break
            converted = None
            if len(data) <= _DOWNGRADE_LIMIT:
                # CPU work on sender-shaped MIME, up to 32 MiB: off the event loop.
                converted = await asyncio.to_thread(downgrade_8bit, bytes(data))
            if converted is None:
                text = f"{self.where} lacks 8BITMIME and the message cannot be made 7-bit"
                return [self._ours(a, "failed", "5.6.3", text) for a in addresses]
            chunks, size, eight_bit = [converted], len(converted), False
        params = []
        if ext.size is not None:
            params.append(f"SIZE={size}")
        if eight_bit and ext.eightbitmime:
            params.append("BODY=8BITMIME")  # RFC 6152 §3
        if needs_utf8:
            params.append("SMTPUTF8")
        if ext.dsn:  # RFC 3461 §4.3, §4.4: pass the sender's DSN requests on
            if message.ret:
                params.append(f"RET={message.ret.upper()}")
            if message.envid:
                params.append(f"ENVID={message.envid}")
        pipelining = ext.pipelining
        chunking = ext.chunking
        rcpt_params: list[list[str]] = []
        for r in recipients:
            rparams = []
            if ext.dsn:
                if r.notify:
                    rparams.append(f"NOTIFY={r.notify.upper()}")
                if r.orcpt:
                    rparams.append(f"ORCPT={r.orcpt}")
            rcpt_params.append(rparams)
        send_data_now = pipelining and not chunking
        t = self.timeouts.command
        results: dict[str, RecipientResult] = {}
        rcpt_replies: list[RcptReply] = []
        if pipelining:
            out = [self.core.mail(message.sender, params)]
            out += [self.core.rcpt(a, p) for a, p in zip(addresses, rcpt_params, strict=True)]
            if send_data_now:
                out.append(self.core.data())  # RFC 2920 §3.1: DATA may close the pipeline
            self._write(b"".join(out))
            mail = (await self._expect(MailReply, t)).reply
            rcpt_replies = [await self._expect(RcptReply, t) for _ in recipients]
        else:
            self._write(self.core.mail(message.sender, params))
            mail = (await self._expect(MailReply, t)).reply
            if mail.is_positive:
                for a, p in zip(addresses, rcpt_params, strict=True):
                    self._write(self.core.rcpt(a, p))
                    rcpt_replies.append(await self._expect(RcptReply, t))
        if not mail.is_positive:
            return await self._abort([self._result(a, mail) for a in addresses], send_data_now)
        accepted = []
        for ev in rcpt_replies:
            results[ev.recipient] = self._result(ev.recipient, ev.reply)
            if ev.reply.is_positive:
                accepted.append(ev.recipient)
        if not accepted:
            return await self._abort([results[a] for a in addresses], send_data_now)
        if chunking:
            final = await self._send_bdat(chunks)
        else:
            if not send_data_now:
                self._write(self.core.data())
            data_reply = (await self._expect(DataReply, min(t, 120.0))).reply
            if data_reply.code != 354:
                for a in accepted:
                    results[a] = self._result(a, data_reply)
                self.core.data_failed()
                return [results[a] for a in addresses]
            final = await self._send_data(chunks)
        if final is not None:  # SMTP: one reply for the message
            for a in accepted:
                results[a] = self._result(a, final)
        else:  # LMTP: one reply per accepted recipient (RFC 2033 §4.2)
            for _ in accepted:
                mr = await self._expect(MessageReply, self.timeouts.data_end)
                rcpt = mr.recipient or ""
                results[rcpt] = self._result(rcpt, mr.reply)
        self.messages += 1
        return [results[a] for a in addresses]

    async def _abort(
        self, results: list[RecipientResult], data_pending: bool
    ) -> list[RecipientResult]:
        """No recipient accepted: settle a pipelined DATA, then RSET for the next message."""
        if data_pending:
            reply = (await self._expect(DataReply, self.timeouts.command)).reply
            if reply.code == 354:
                # RFC 2920 §3.1 says a server must not do this; do not guess, hang up.
                self.usable = False
                return results
        if self.core.state is ClientState.TRANSACTION:
            self._write(self.core.rset())
            await self._expect(OtherReply, self.timeouts.command)
        return results

    async def _send_data(self, chunks: AsyncIterator[bytes] | list[bytes]) -> ServerReply | None:
        t = self.timeouts.data
        if isinstance(chunks, list):
            for chunk in chunks:
                self._write(self.core.message_data(chunk))
                await asyncio.wait_for(self.writer.drain(), t)
        else:
            async for chunk in chunks:
                self._write(self.core.message_data(chunk))
                await asyncio.wait_for(self.writer.drain(), t)
        self._write(self.core.end_data())
        if self.core.lmtp:
            return None
        return (await self._expect(MessageReply, self.timeouts.data_end)).reply

    async def _send_bdat(self, chunks: AsyncIterator[bytes] | list[bytes]) -> ServerReply | None:
        """BDAT chunks, pipelined (RFC 3030 §4.2); the last one is ``BDAT n LAST``."""
        t = self.timeouts.data
        sent = 0
        pending: bytes | None = None

        async def iterate() -> AsyncIterator[bytes]:
            if isinstance(chunks, list):
                for c in chunks:
                    yield c
            else:
                async for c in chunks:
                    yield c

        async for chunk in iterate():
            if not chunk:
                continue
            if pending is not None:
                self._write(self.core.bdat(pending))
                sent += 1
                await asyncio.wait_for(self.writer.drain(), t)
            pending = chunk
        self._write(self.core.bdat(pending or b"", last=True))
        for _ in range(sent):
            await self._expect(BdatReply, t)
        if self.core.lmtp:
            return None
        return (await self._expect(MessageReply, self.timeouts.data_end)).reply
