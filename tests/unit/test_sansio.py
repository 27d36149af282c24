"""The receive buffer every protocol core shares: lines under a limit, EOF, over-long
lines skipped without being stored."""

from __future__ import annotations

from correo import sansio
from correo.imap.errors import LocalProtocolError as ImapMisuse
from correo.sansio import LINE_TOO_LONG, LocalProtocolError, ReceiveBuffer
from correo.smtp.errors import LocalProtocolError as SmtpMisuse


def test_lines_arrive_in_pieces() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"NOOP\r")
    assert buf.take_line(100) is None
    buf.feed(b"\nQUIT\r\n")
    assert buf.take_line(100) == b"NOOP\r"  # the CR is the caller's to judge
    assert buf.take_line(100) == b"QUIT\r"
    assert buf.take_line(100) is None and len(buf) == 0 and not buf.eof
    buf.feed(b"")
    assert buf.eof


def test_the_limit_counts_the_line_end() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"abc\r\n")
    assert buf.take_line(5) == b"abc\r"
    buf.feed(b"abcd\r\n")
    assert buf.take_line(5) is LINE_TOO_LONG
    assert len(buf) == 0 and not buf.discarding  # its LF was there: dropped with it


def test_an_overlong_line_is_skipped_unstored() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"x" * 10)
    assert buf.take_line(8) is LINE_TOO_LONG
    assert len(buf) == 0 and buf.discarding
    for _ in range(100):
        buf.feed(b"y" * 1000)  # the rest of the line, never kept
        assert len(buf) == 0
    buf.feed(b"yy\r\nNEXT\r\n")
    assert not buf.discarding
    assert buf.take_line(8) == b"NEXT\r"


def test_clear_forgets_a_discarded_line() -> None:
    buf = ReceiveBuffer()
    buf.feed(b"x" * 10)
    assert buf.take_line(8) is LINE_TOO_LONG
    buf.clear()
    buf.feed(b"AFTER\r\n")  # e.g. the first line after a TLS upgrade
    assert buf.take_line(8) == b"AFTER\r"


def test_the_cores_share_one_sentinel_and_one_misuse_error() -> None:
    from correo import managesieve, pop3, smtp
    from correo.imap import events as imap_events

    assert smtp.NEED_DATA is pop3.NEED_DATA is managesieve.NEED_DATA is sansio.NEED_DATA
    assert imap_events.NEED_DATA is sansio.NEED_DATA
    assert issubclass(SmtpMisuse, LocalProtocolError)
    assert issubclass(ImapMisuse, LocalProtocolError)
    assert pop3.LocalProtocolError is managesieve.LocalProtocolError is LocalProtocolError
    # the events every core spells the same way are one class each
    from correo.imap import server as imap_server

    assert imap_server.AuthResponse is pop3.AuthResponse is sansio.AuthResponse
    assert imap_server.ConnectionClosed is pop3.ConnectionClosed is managesieve.ConnectionClosed
    assert imap_events.Respond is pop3.Respond is sansio.Respond
    assert "secret" not in repr(sansio.AuthResponse(b"secret"))  # credentials stay out of logs
