"""COMPRESS=DEFLATE (RFC 4978): raw deflate both ways, flushed per write.

Inflating is bounded: one call yields at most :data:`INFLATE_PIECE` octets and keeps the
rest of the input as a backlog, so 64 KiB of compressed input (up to ~64 MiB inflated)
never expands in memory at once nor holds the event loop for long.

Memory while idle is bounded too. zlib's compressor holds about 256 KiB per stream
(a 32 KiB window kept twice over, its hash chains and pending output), ten times what
an idle IMAPS session costs otherwise. Every write ends with a sync flush (RFC 4978 §4),
so the client's decompressor is at a block boundary after each one, and a fresh
compressor, which has no history to refer back to, continues the same stream: the
compressor is made on the first write and dropped whenever the session waits for its
client (in IDLE, and after :data:`REST_AFTER` seconds between commands), and small
writes get a small one (RFC 1951 lets the compressor use any window up to 32 KiB). The
decompressor stays: the client's compressor may refer back up to 32 KiB into what it
sent before (RFC 1951 §3.2.5), which zlib keeps only in the window it allocates once
data arrives, a few KiB for an idle client's short commands.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Final

__all__ = ["INFLATE_PIECE", "REST_AFTER", "Deflate"]

INFLATE_PIECE: Final = 256 * 1024  # inflated octets handed to the core at a time
#: Seconds a session waits for its client before its compressor is dropped.
REST_AFTER: Final = 5.0
_LEVEL, _MEM_LEVEL = 6, 8  # zlib's defaults: a full 32 KiB window for bulk output
#: Writes up to this size (status lines, flag changes, EXISTS) are compressed with a
#: 4 KiB window and small hash tables (about 19 KiB instead of 256 KiB): a session only
#: makes the full compressor when it sends more at once (a FETCH of bodies, a listing).
_SMALL_WRITE: Final = 4096
_SMALL_WBITS, _SMALL_MEM = -12, 2


class Deflate:
    """One session's two deflate streams; the compressor exists only while writing."""

    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(-15)  # RFC 4978 §4: the peer may use 32 KiB
        self.deflater: zlib._Compress | None = None
        self._full = False  # the last piece hit the bound: zlib may hold more output
        self._small = False  # the compressor is the small one

    @property
    def backlog(self) -> bool:
        """Input already received still has output to give (call :meth:`more`)."""
        return self._full or bool(self.inflater.unconsumed_tail)

    def inflate(self, data: bytes) -> bytes:
        """The first piece of ``data``'s output; b"" when it ends mid-block (not EOF)."""
        out = self.inflater.decompress(data, INFLATE_PIECE)
        self._full = len(out) == INFLATE_PIECE
        return out

    def more(self) -> bytes:
        """The next piece of the backlog."""
        return self.inflate(self.inflater.unconsumed_tail)

    def deflate(self, data: bytes) -> bytes:
        deflater = self.deflater
        if deflater is None or (self._small and len(data) > _SMALL_WRITE):
            # after a sync flush any compressor may take over the stream (module doc)
            self._small = len(data) <= _SMALL_WRITE
            if self._small:
                deflater = zlib.compressobj(_LEVEL, zlib.DEFLATED, _SMALL_WBITS, _SMALL_MEM)
            else:
                deflater = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, _MEM_LEVEL)
            self.deflater = deflater
        return deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)

    def rest(self) -> None:
        """Drop the compressor (every write was flushed: nothing of it is pending)."""
        self.deflater = None
        self._small = False

    def rest_later(self) -> asyncio.TimerHandle:
        """:meth:`rest` after :data:`REST_AFTER` seconds unless the timer is cancelled."""
        return asyncio.get_running_loop().call_later(REST_AFTER, self.rest)
