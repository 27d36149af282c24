"""RFC 2047 encoded words: tolerant decoding for display/search, minimal encoding for output."""

from __future__ import annotations

import binascii
import codecs
import re

__all__ = ["decode_header", "encode_header", "raw_utf8", "text_codec"]

# RFC 2047 §2: =?charset?encoding?encoded-text?= (charset may carry *lang, RFC 2231 §5)
_EW = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_GAP = re.compile(r"[ \t\r\n]*")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
# RFC 2047 §5 (3): the characters a Q-encoded word may carry literally inside a phrase
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _raw_word(enc: str, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if enc in "bB":
        data = _B64_JUNK.sub(b"", data)
        data += b"=" * (-len(data) % 4)
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            return b""
    data = data.replace(b"_", b" ")  # RFC 2047 §4.2 (2)
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), data)


#: Codecs that are no charsets for text: punycode (and idna, built on it) decode in
#: quadratic time, and idna raises even with errors="replace".
_NOT_CHARSETS = frozenset({"punycode", "idna"})


def text_codec(charset: str | None) -> str:
    """The codec to read text declared in ``charset`` with: the charset when it is a
    text encoding Python knows and decodes in linear time, else UTF-8."""
    try:
        info = codecs.lookup((charset or "utf-8").strip())
    except (LookupError, ValueError):  # unknown, or a name with NUL in it (ValueError)
        return "utf-8"  # UTF-8 is the likeliest truth today
    if not info._is_text_encoding or info.name in _NOT_CHARSETS:
        return "utf-8"
    return info.name


def _decode_bytes(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(text_codec(charset), "replace")
    except (LookupError, UnicodeError):
        return raw.decode("utf-8", "replace")


def raw_utf8(text: str) -> str:
    """Undo surrogateescape'd 8-bit header text (RFC 6532 UTF-8, else Latin-1): the
    parsers keep 8-bit octets as surrogates, which JSON cannot encode."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decode_header(value: str) -> str:
    """Decode encoded words; white space between adjacent words vanishes (RFC 2047 §6.2).

    Adjacent words in one charset are joined before decoding, so a multi-byte character
    split across two words survives.  Never raises.
    """
    value = value.replace("\r\n", "").replace("\n", "")
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_cs = ""
    pos = 0
    for m in _EW.finditer(value):
        gap = value[pos : m.start()]
        adjacent = pending_cs and _GAP.fullmatch(gap) is not None
        if not adjacent:
            if pending_cs:
                out.append(_decode_bytes(bytes(pending), pending_cs))
                pending, pending_cs = bytearray(), ""
            out.append(raw_utf8(gap))
        charset = m.group(1).lower()
        if pending_cs and charset != pending_cs:
            out.append(_decode_bytes(bytes(pending), pending_cs))
            pending = bytearray()
        pending_cs = charset
        pending += _raw_word(m.group(2), m.group(3))
        pos = m.end()
    if pending_cs:
        out.append(_decode_bytes(bytes(pending), pending_cs))
    out.append(raw_utf8(value[pos:]))
    return "".join(out)


def _q_word(chunk: str) -> str:
    body = "".join(
        chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in chunk.encode()
    )
    return f"=?utf-8?q?{body}?="


def _encode_words(text: str, first: int = 75) -> list[str]:
    """Q-encoded words of at most 75 characters (RFC 2047 §2), split on characters."""
    words: list[str] = []
    chunk = ""
    for ch in text:
        if len(_q_word(chunk + ch)) > (75 if words else first) and chunk:
            words.append(_q_word(chunk))
            chunk = ""
        chunk += ch
    if chunk or not words:
        words.append(_q_word(chunk))
    return words


def _needs_encoding(word: str) -> bool:
    return not word.isascii() or "=?" in word or any(ord(c) < 32 or ord(c) == 127 for c in word)


def encode_header(value: str, name_len: int = 0) -> str:
    """A header value safe for 7-bit transport, folded with CRLF SP near 78 columns.

    Runs of words needing encoding become one or more UTF-8 Q encoded words (their inner
    spaces encoded, since white space between encoded words is dropped on decode);
    ASCII words stay readable.  ``name_len`` is the length of ``Name: ``.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        if _needs_encoding(word):
            run.append(word)
            continue
        if run:
            tokens.extend(_encode_words(" ".join(run), 75 if tokens else 78 - name_len))
            run = []
        tokens.append(word)
    if run:
        tokens.extend(_encode_words(" ".join(run), 75 if tokens else 78 - name_len))
    # RFC 5322 §2.2.3 folding: break before a token when the line would pass 78
    lines: list[str] = []
    line = ""
    for tok in tokens:
        lead = 1 if lines else name_len  # continuation lines start with the folding space
        if line and lead + len(line) + 1 + len(tok) > 78:
            lines.append(line)
            line = tok
        else:
            line = f"{line} {tok}" if line else tok
    lines.append(line)
    return "\r\n ".join(lines)
