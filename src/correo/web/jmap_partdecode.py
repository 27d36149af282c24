"""Transfer and charset decoding in pieces, as the stdlib decodes a part whole.

:mod:`correo.web.jmap_parts` reads a big message's leaves in chunks and must give what
``Message.get_payload(decode=True)`` and parse_email's text decoding give for the whole
part: base64 (RFC 2045 §6.8) and quoted-printable (RFC 2045 §6.7) decoded as the stdlib
decodes them, then text in the part's charset held up to a bound. These pieces know
nothing of the part tree, so they live apart from its walking; where the stdlib would
repair the octets or read them otherwise they raise :class:`Irregular`, which sends
the caller to the whole-message parse.
"""

from __future__ import annotations

import binascii
import codecs
import sys
from dataclasses import dataclass, field
from typing import Final

from correo.jmap.mail import charset_codec

__all__ = ["Base64", "Irregular", "QuotedPrintable", "Text", "TextSink"]

_B64: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_LINES: Final = _B64 + b"=\r\n"
_QP_LINE: Final = 1 << 20  # an unfinished quoted-printable line held at most this long
_BOMS: Final = {
    "utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
    "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE),
}


class Irregular(Exception):
    """The tree may not say what parsing the message says: parse it whole."""


@dataclass(slots=True)
class Text:
    """A leaf's decoded text as far as held, and whether decoding met a problem."""

    value: str
    problem: bool


@dataclass(slots=True)
class Base64:
    """base64 decoded in pieces as the stdlib's decode_b decodes what it finds clean
    (only the alphabet, line ends and final padding); Irregular for the rest, which it
    repairs in ways of its own."""

    held: bytes = b""  # alphabet characters short of a whole quantum
    count: int = 0  # alphabet characters
    pads: int = 0

    def feed(self, chunk: bytes, decode: bool) -> bytes:
        if chunk.translate(None, _B64_LINES):
            raise Irregular("base64 with characters outside its alphabet")
        if not decode and not self.pads and b"=" not in chunk:  # counted without a copy
            self.count += len(chunk) - chunk.count(b"\r") - chunk.count(b"\n")
            return b""
        piece = chunk.translate(None, b"\r\n")  # the stdlib joins splitlines()
        if self.pads:  # RFC 4648 §3.3: nothing follows the padding
            if piece.strip(b"="):
                raise Irregular("base64 past its padding")
            self.pads += len(piece)
            return b""
        at = piece.find(b"=")
        if at >= 0:
            if piece[at:].strip(b"="):
                raise Irregular("base64 past its padding")
            self.pads += len(piece) - at
            piece = piece[:at]
        self.count += len(piece)
        if not decode or not piece:
            return b""
        held = self.held + piece
        cut = len(held) - len(held) % 4
        self.held = held[cut:]
        return binascii.a2b_base64(held[:cut]) if cut else b""

    def finish(self, decode: bool) -> tuple[bytes, int]:
        """The last octets and the decoded size."""
        rest = self.count % 4
        # b64decode(validate=True) of the characters padded to a whole quantum
        pads = self.pads
        if not (rest == pads == 0 or (rest == 2 and pads <= 2) or (rest == 3 and pads <= 1)):
            raise Irregular("base64 the stdlib repairs")
        size = self.count // 4 * 3 + (rest - 1 if rest else 0)
        if decode and rest:
            return binascii.a2b_base64(self.held + b"=" * (4 - rest)), size
        return b"", size


@dataclass(slots=True)
class QuotedPrintable:
    """quopri.decodestring (binascii.a2b_qp) line by line: no escape spans a line end."""

    held: list[bytes] = field(default_factory=list)
    size: int = 0

    def feed(self, chunk: bytes) -> bytes:
        out = b""
        end = chunk.rfind(b"\n") + 1
        if end:
            self.held.append(chunk[:end])
            out = binascii.a2b_qp(b"".join(self.held))
            chunk = chunk[end:]
            self.held, self.size = [], 0
        if chunk:
            self.held.append(chunk)
            self.size += len(chunk)
            if self.size > _QP_LINE:
                raise Irregular("an overlong quoted-printable line")
        return out

    def finish(self) -> bytes:
        return binascii.a2b_qp(b"".join(self.held)) if self.held else b""


class TextSink:
    """A text part's characters held up to ``keep`` UTF-8 octets, as parse_email reads
    them: in its charset, or as UTF-8 with U+FFFD once that meets a problem. One text
    is held: a problem met in UTF-8 or ASCII goes on from the strict text (its prefix is
    the loose one's); in another charset, past its first octets, it asks to be read
    again (``again``) loosely from the start, which is rare, rather than hold both."""

    def __init__(self, charset: str, keep: int, loose: bool = False) -> None:
        found = charset_codec(charset)  # as parse_email: None, read loosely
        codec, self.problem = found or "", loose or found is None
        self.keep = keep
        self.strict: codecs.IncrementalDecoder | None = None
        if not self.problem and codec not in _BOMS:
            self.strict = codecs.getincrementaldecoder(codec)()
        self.sniff = codec if codec in _BOMS and not self.problem else ""
        self.start = b""  # the first octets, while a UTF-16 or -32 decoder is not chosen
        self.prefix = codec in ("utf-8", "ascii")  # strict text so far is the loose one
        self.fed = False  # octets went into the strict decoder
        self.again = False
        self.loose = codecs.getincrementaldecoder("utf-8")("replace")
        self.held: list[str] = []
        self.octets = 0

    def _hold(self, text: str) -> None:
        """Hold ``text`` as far as ``keep`` octets reach, cut at a character's start."""
        room = self.keep - self.octets
        if room <= 0 or not text:
            return
        if len(text) > room:  # a character is at least one octet: no more are kept
            text = text[:room]
        octets = text.encode("utf-8", "surrogatepass")
        if len(octets) > room:
            while octets[room] & 0xC0 == 0x80:  # a continuation octet: back to its start
                room -= 1
            text = octets[:room].decode("utf-8", "surrogatepass")
            self.keep = self.octets + room  # full: a later, shorter character is not kept
            octets = octets[:room]
        self.held.append(text)
        self.octets += len(octets)

    def _choose(self, data: bytes, final: bool) -> bytes:
        """UTF-16 and -32 as bytes.decode() reads them: a BOM picks the order, and
        none means the machine's (the incremental decoders refuse a missing BOM)."""
        self.start += data
        boms = _BOMS[self.sniff]
        if len(self.start) < len(boms[0]) and not final:
            return b""
        name = self.sniff
        if not self.start.startswith(boms):
            name += "-le" if sys.byteorder == "little" else "-be"
        self.strict, self.sniff = codecs.getincrementaldecoder(name)(), ""
        return self.start

    def feed(self, data: bytes, final: bool = False) -> None:
        if self.again:
            return
        if self.sniff:
            data = self._choose(data, final)
        if self.strict is not None:
            pending = self.strict.getstate()[0]
            try:
                self._hold(self.strict.decode(data, final))
                self.fed = self.fed or bool(data)
                return
            except UnicodeError:
                self.problem, self.strict = True, None
                if self.fed and not self.prefix:
                    self.again = True
                    return
                data = pending + data  # the strict text held is the loose one's so far
        self._hold(self.loose.decode(data, final))

    def text(self) -> Text:
        return Text("".join(self.held), self.problem)
