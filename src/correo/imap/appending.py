"""APPEND framing of :class:`~correo.imap.server.ImapConnection`: messages streamed as
they arrive (RFC 9051 §6.3.12), several per command (RFC 3502 MULTIAPPEND), and
messages assembled from parts (RFC 4469 CATENATE).

A message literal is announced by ``AppendStart``, a CATENATE message by
``CatenateStart``, each of its TEXT literals by ``CatenateText`` (the events are in
:mod:`correo.imap.events`): the core
pauses until the shell calls ``append_accept()`` or ``append_reject()``, so a ``+`` is
sent only for octets the shell wants (RFC 9051 §7.5).  The octets of literals arrive
as ``AppendChunk`` events, never buffered whole; a URL part is a ``CatenateUrl``
event the shell resolves itself, and may refuse with ``append_abort()``.
``AppendEnd`` closes each message, ``AppendDone`` the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from correo.imap.catenate import MAX_PARTS, MessageHead, append_head, message_head, next_part
from correo.imap.commands import Append, ParseOptions
from correo.imap.errors import LocalProtocolError, ParseError
from correo.imap.events import (
    NEED_DATA,
    AppendChunk,
    AppendDone,
    AppendEnd,
    AppendStart,
    CatenateStart,
    CatenateText,
    CatenateUrl,
    Mode,
    Respond,
    Sentinel,
)
from correo.imap.reader import ImapLimits, LiteralMarker, find_literal_marker
from correo.imap.responses import continuation, tagged

if TYPE_CHECKING:
    from correo.imap.server import Event
    from correo.sansio import ReceiveBuffer

__all__ = ["AppendFraming"]


@dataclass
class _Catenate:
    """The CATENATE message being read: what is left of the current line (None: read
    the next one), whether a part was seen, and the decision the core waits for."""

    rest: bytes | None
    first: bool = True
    parts: int = 0
    waiting: str = "start"  # "start", "text" or "" (reading)


class AppendFraming:
    """Mixed into ImapConnection, which provides the state and helpers declared here."""

    if TYPE_CHECKING:
        _in: ReceiveBuffer
        _mode: Mode
        _need: int
        _tag: str
        _bad: int
        _text_used: int
        _lit: bytearray
        _limits: ImapLimits
        _options: ParseOptions
        _enabled: set[str]
        _lines: list[bytes]
        _lits: list[bytes]

        def _take_line(self, limit: int) -> bytes | ParseError | None: ...
        def _reject(self, err: ParseError, line: bytes | None = None) -> Event: ...
        def _after_bad_line(self, line: bytes) -> None: ...
        def _skip_literal(self, size: int) -> None: ...
        def _bye_if_closed(self) -> bytes: ...
        def _reset_command(self) -> None: ...
        def _reset_command_keep_tag(self) -> None: ...
        def _check_name(self) -> ParseError | None: ...

    def _init_append(self) -> None:
        self._append: LiteralMarker | None = None
        self._append_head: Append | None = None
        self._append_started = False
        self._cat: _Catenate | None = None
        self._pending: bytes | None = None  # the line after a CATENATE list's ")"

    # ---- the first message ------------------------------------------------------

    def _append_head_step(self, line: bytes, marker: LiteralMarker | None) -> Event | None:
        """The APPEND command's first message starts on ``line``; None when the line is
        the mailbox name's literal marker, or has no message start (parsed as BAD)."""
        early = self._check_name()
        if early is not None:
            return self._reject(early, line)
        try:
            found = append_head(self._lines, self._lits, self._options)
        except ParseError as exc:
            if marker is None:
                return None  # a complete command: the parser gives the BAD
            return self._reject(exc, line)
        if found is None:
            return None
        if found[0].replace is not None and not found[0].uid and "UIDONLY" in self._enabled:
            err = ParseError("use UIDs, not message numbers", "UIDREQUIRED")  # RFC 9586 §3.1
            return self._reject(err, line)
        self._append_head, head = found
        self._reset_command_keep_tag()
        return self._start_message(head)

    def _start_message(self, head: MessageHead) -> Event:
        old = self._append_head
        assert old is not None
        self._append_head = Append(old.mailbox, head.flags, head.date, old.replace, old.uid)
        if head.kind == "catenate":
            self._cat = _Catenate(head.rest)
            self._append = None
            self._append_started = True
            self._mode = Mode.APPEND_WAIT
            return CatenateStart(self._tag, old.mailbox, head.flags, head.date)
        marker = _marker(head.rest)
        if marker.size > self._limits.max_append:
            # RFC 7889 §4 / RFC 7888 §4: too big for APPENDLIMIT
            status = "NO" if marker.sync else "BAD"
            err = ParseError("message exceeds APPENDLIMIT", "TOOBIG", status)
            if marker.sync:
                self._need, self._mode = 0, Mode.COMMAND
            else:
                self._skip_literal(marker.size)
            return self._reject(err)
        self._append = marker
        self._append_started = True
        self._mode = Mode.APPEND_WAIT
        return AppendStart(
            self._tag,
            old.mailbox,
            head.flags,
            head.date,
            marker.size,
            marker.binary,
            old.replace,
            old.uid,
        )

    # ---- the shell's decisions ------------------------------------------------------

    def append_accept(self) -> bytes:
        """Let the message (or TEXT part) in; returns the ``+`` continuation to write
        (b"" for LITERAL+ and for a CATENATE message, whose parts come unasked)."""
        if self._mode is not Mode.APPEND_WAIT:
            raise LocalProtocolError("no APPEND message is waiting for a decision")
        cat = self._cat
        if cat is not None and cat.waiting == "start":
            cat.waiting = ""
            self._mode = Mode.CATENATE
            return b""
        marker = self._append
        if marker is None:
            raise LocalProtocolError("no APPEND literal is waiting for a decision")
        if cat is not None:
            cat.waiting = ""
            cat.rest = None  # after the literal: the parts go on on the next line
        self._need = marker.size
        self._mode = Mode.APPEND_DATA
        return continuation("OK") if marker.sync else b""

    def append_reject(self, status: str, text: str, code: str | None = None) -> bytes:
        """Refuse the whole APPEND (RFC 3502 §6: all or nothing); returns the tagged reply."""
        if self._mode is not Mode.APPEND_WAIT:
            raise LocalProtocolError("no APPEND message is waiting for a decision")
        return self._end_append(status, text, code)

    def append_abort(self, status: str, text: str, code: str | None = None) -> bytes:
        """After a CatenateUrl: refuse the whole APPEND (RFC 4469 §5 BADURL); the rest of
        the command is dropped as it arrives. Returns the tagged reply."""
        if self._cat is None or self._mode not in (Mode.CATENATE, Mode.APPEND_WAIT):
            raise LocalProtocolError("no CATENATE part to refuse")
        return self._end_append(status, text, code)

    def _end_append(self, status: str, text: str, code: str | None) -> bytes:
        data = tagged(self._tag, status, text, code)
        cat = self._cat
        if cat is not None and cat.rest is None:
            self._mode = Mode.DISCARD_LINE  # the command goes on on a line not read yet
        elif cat is not None:
            self._after_bad_line(cat.rest or b"")  # a literal ending it: skip or not sent
        else:
            marker = self._append
            assert marker is not None
            if marker.sync:
                self._mode = Mode.COMMAND  # the client never sends the octets (RFC 9051 §7.5)
            else:
                self._skip_literal(marker.size)  # RFC 7888 §4: LITERAL+ octets arrive anyway
        data += self._bye_if_closed()
        self._append_started = False
        self._cat = None
        self._pending = None
        self._reset_command()
        return data

    # ---- data and what follows it ---------------------------------------------------

    def _append_data_step(self) -> Event | Sentinel | None:
        if self._need == 0:
            if self._cat is not None:
                self._mode = Mode.CATENATE  # a TEXT part ended: more parts follow
                return None
            self._mode = Mode.APPEND_NEXT
            return AppendEnd()
        buf = self._in.data
        if not buf:
            return NEED_DATA
        take = min(self._need, len(buf))
        if take == len(buf):
            chunk = bytes(buf)
            buf.clear()
        else:
            chunk = bytes(buf[:take])
            del buf[:take]
        self._need -= take
        return AppendChunk(chunk)

    def _append_next_step(self) -> Event | Sentinel | None:
        if self._pending is not None:
            got: bytes | ParseError | None = self._pending  # the rest of a line after ")"
            self._pending = None
        else:
            self._text_used = 0
            got = self._take_line(self._limits.max_line)
        if got is None:
            return NEED_DATA
        if isinstance(got, ParseError):
            return self._reject(got)
        if not got:
            tag = self._tag
            self._append_started = False
            self._reset_command()
            self._mode = Mode.COMMAND
            self._bad = 0
            return AppendDone(tag)  # RFC 3502 §3: CRLF ends the command
        try:
            if self._append_head is not None and self._append_head.replace is not None:
                raise ParseError("REPLACE takes one message")  # RFC 8508 §6: no MULTIAPPEND
            head = message_head(got, self._limits.max_depth)
        except ParseError as exc:
            return self._reject(exc, got)
        return self._start_message(head)

    # ---- CATENATE parts (RFC 4469 §5) -------------------------------------------------

    def _catenate_step(self) -> Event | Sentinel | None:
        cat = self._cat
        assert cat is not None
        if cat.rest is None:
            self._text_used = 0  # each continuation line has its own budget
            got = self._take_line(self._limits.max_line)
            if got is None:
                return NEED_DATA
            if isinstance(got, ParseError):
                return self._reject(got)
            cat.rest = got
        line = cat.rest
        try:
            part = next_part(line, cat.first)
            cat.first = False
            if part.kind != "end":
                cat.parts += 1
                if cat.parts > MAX_PARTS:
                    raise ParseError(f"at most {MAX_PARTS} CATENATE parts", "LIMIT")
        except ParseError as exc:
            return self._reject(exc, line)
        if part.kind == "end":
            self._cat = None
            self._pending = part.rest
            self._mode = Mode.APPEND_NEXT
            return AppendEnd()
        cat.rest = part.rest
        if part.kind == "url":
            return CatenateUrl(part.url)
        marker = part.marker
        assert marker is not None
        if part.kind == "url-literal":
            if marker.binary or marker.size > self._limits.max_literal:
                return self._reject(ParseError("URL literal too big", "TOOBIG"), line)
            cat.rest = None
            self._need = marker.size
            self._lit = bytearray()
            self._mode = Mode.CATENATE_URL
            if marker.sync:
                return Respond(continuation("OK"))
            return None
        if marker.size > self._limits.max_append:
            status = "NO" if marker.sync else "BAD"
            err = ParseError("part exceeds APPENDLIMIT", "TOOBIG", status)
            if marker.sync:
                self._need, self._mode = 0, Mode.COMMAND
            else:
                self._skip_literal(marker.size)
            return self._reject(err)
        self._append = marker
        cat.waiting = "text"
        self._mode = Mode.APPEND_WAIT
        return CatenateText(marker.size, marker.binary)

    def _catenate_url_step(self) -> Event | Sentinel | None:
        cat = self._cat
        assert cat is not None
        buf = self._in.data
        take = min(self._need, len(buf))
        self._lit += buf[:take]
        del buf[:take]
        self._need -= take
        if self._need:
            return NEED_DATA
        self._mode = Mode.CATENATE
        return CatenateUrl(bytes(self._lit))


def _marker(rest: bytes) -> LiteralMarker:
    marker = find_literal_marker(rest)
    assert marker is not None  # message_head only says "literal" before one
    return marker
