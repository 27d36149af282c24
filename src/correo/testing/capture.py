"""The outbound capture of the test server: an SMTP sink that the queue relays to.

The test server's queue runner hands every message for a remote domain to this sink
(its ``[outbound] relayhost``), so outbound mail takes the real path — submission,
DKIM signing, the queue, the SMTP client — and then stops here instead of leaving the
machine.  Two recipient names stand for a remote server's refusals, for tests of
bounces and retries: ``bounce@…`` (or ``bounce+tag@…``) is refused with 550, and
``defer@…`` (``defer+tag@…``) with 451.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from correo.smtp import (
    NEED_DATA,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataEnd,
    Helo,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    SmtpLimits,
    ehlo_reply,
    greeting,
)

__all__ = ["Captured", "OutboundCapture", "OutboundMessage", "refusal_for"]

_IDLE = 30.0  # seconds a connection may stay silent


class OutboundMessage(EmailMessage):
    """An outbound message as the remote server received it, with its SMTP envelope."""

    envelope_from: str = ""
    envelope_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Captured:
    sender: str
    recipients: tuple[str, ...]
    raw: bytes

    def parse(self) -> OutboundMessage:
        message = email.message_from_bytes(
            self.raw, _class=OutboundMessage, policy=email.policy.default
        )
        assert isinstance(message, OutboundMessage)
        message.envelope_from = self.sender
        message.envelope_to = self.recipients
        return message


def refusal_for(local_part: str) -> Reply | None:
    """The refusal a remote server would give this recipient, if it is a test name."""
    base = local_part.lower().partition("+")[0]
    if base == "bounce":
        return Reply(550, "5.1.1", "Recipient refused by the test capture (bounce@)")
    if base == "defer":
        return Reply(451, "4.2.0", "Recipient deferred by the test capture (defer@)")
    return None


class OutboundCapture:
    """A small SMTP server on loopback that keeps every message it accepts."""

    def __init__(self, hostname: str = "capture.invalid", max_size: int = 0) -> None:
        self.hostname = hostname
        self.max_size = max_size
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self._mail: list[Captured] = []
        self._lock = threading.Lock()  # read by the test's thread, written on the loop
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1") -> None:
        self._server = await asyncio.start_server(self._serve, host, 0)
        name = self._server.sockets[0].getsockname()
        self.address = (str(name[0]), int(name[1]))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=5)

    def captured(self) -> list[Captured]:
        with self._lock:
            return list(self._mail)

    def clear(self) -> None:
        with self._lock:
            self._mail.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._session(reader, writer)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._sessions.discard(task)
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        core = ServerConnection(SmtpLimits(max_message_size=self.max_size))
        writer.write(core.send(greeting(self.hostname)))
        sender = ""
        recipients: list[str] = []
        data = bytearray()
        while True:
            await writer.drain()
            chunk = await asyncio.wait_for(reader.read(65536), _IDLE)
            core.receive_data(chunk)
            while (event := core.next_event()) is not NEED_DATA:
                reply: Reply | None = Reply(250, "2.0.0", "Ok")
                match event:
                    case ConnectionClosed():
                        return
                    case Helo(name=name, extended=extended):
                        extensions = ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
                        reply = ehlo_reply(self.hostname, name, extensions)
                        if not extended:
                            reply = Reply(250, None, self.hostname)
                    case MailFrom(path=path):
                        sender = "" if path.address is None else str(path.address)
                        recipients, data = [], bytearray()
                    case RcptTo(path=path):
                        address = path.address
                        assert address is not None
                        reply = refusal_for(address.local) or Reply(250, "2.1.5", "Ok")
                        if reply.code == 250:
                            recipients.append(str(address))
                    case Data():
                        reply = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
                    case DataChunk(data=part):
                        data += part
                        reply = None  # chunks are not answered
                    case DataEnd(error=error, last=last):
                        if error is not None:
                            reply = error
                        elif last:
                            with self._lock:
                                self._mail.append(Captured(sender, tuple(recipients), bytes(data)))
                            reply = Reply(250, "2.0.0", "Ok: captured")
                    case Rset():
                        recipients, data = [], bytearray()
                    case Noop():
                        pass
                    case Quit():
                        writer.write(core.send(Reply(221, "2.0.0", "Bye")))
                        await writer.drain()
                        return
                    case CommandError(reply=error, close=close):
                        writer.write(core.send(error))
                        if close:
                            await writer.drain()
                            return
                        reply = None
                    case _:  # STARTTLS, AUTH, VRFY, EXPN, HELP: not offered here
                        reply = Reply(502, "5.5.1", "Not implemented by the test capture")
                if reply is not None:
                    writer.write(core.send(reply))
