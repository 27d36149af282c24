"""Writing a rendered response whose literals are streamed from the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from correo.server.imap.fetch import Rendered

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = ["send_streams"]

_STREAM_FLUSH = 1 << 20  # within one FETCH, written out (and drained) at least this often


async def send_streams(session: ImapSession, out: Rendered, pending: int) -> int:
    """Write a response with streamed literals, draining the socket as they go so
    memory stays flat; returns the bytes written since the last flush."""
    streams = out.streams or {}
    for index, piece in enumerate(out.pieces):
        chunks = streams.get(index)
        if chunks is None:
            pending += len(piece)
            session.write(piece)
            continue
        async for chunk in chunks:
            pending += len(chunk)
            session.write(chunk)
            if pending > _STREAM_FLUSH:
                await session.conn.flush(session.write_timeout)
                pending = 0
    return pending
