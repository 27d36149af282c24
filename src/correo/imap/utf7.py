"""Modified UTF-7 for mailbox names (RFC 3501 §5.1.3), strict in both directions.

IMAP4rev1 sessions exchange mailbox names in this encoding; IMAP4rev2 and
UTF8=ACCEPT sessions use UTF-8 (RFC 9051 §5.1, RFC 6855 §3).  Decoding rejects
every non-canonical form so that one name has exactly one wire spelling.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode_mutf7", "encode_mutf7"]

_RUN = re.compile(r"[^\x20-\x7e]+")
_TOKEN = re.compile(rb"&([A-Za-z0-9+,]*)-")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


def _b64(text: str) -> str:
    raw = base64.b64encode(text.encode("utf-16-be")).rstrip(b"=")
    return raw.replace(b"/", b",").decode("ascii")  # RFC 3501 §5.1.3: "," replaces "/"


def encode_mutf7(name: str) -> bytes:
    """Encode a Unicode mailbox name; ``&`` becomes ``&-`` (RFC 3501 §5.1.3)."""
    out: list[str] = []
    pos = 0
    for m in _RUN.finditer(name):
        out.append(name[pos : m.start()].replace("&", "&-"))
        out.append("&" + _b64(m.group()) + "-")
        pos = m.end()
    out.append(name[pos:].replace("&", "&-"))
    return "".join(out).encode("ascii")


def decode_mutf7(data: bytes) -> str:
    """Decode strictly; raise ``ValueError`` on any malformed or non-canonical form."""
    if not _PRINTABLE.fullmatch(data):
        raise ValueError("mailbox name must be printable US-ASCII")  # RFC 3501 §5.1.3
    out: list[str] = []
    pos = 0
    prev_end = -1
    while True:
        amp = data.find(b"&", pos)
        if amp < 0:
            out.append(data[pos:].decode("ascii"))
            return "".join(out)
        out.append(data[pos:amp].decode("ascii"))
        m = _TOKEN.match(data, amp)
        if m is None:
            raise ValueError("unterminated or invalid &...- sequence")
        body = m.group(1)
        if not body:
            out.append("&")
        else:
            if prev_end == amp:
                # RFC 3501 §5.1.3: adjacent shifted sequences must be merged
                raise ValueError("adjacent encoded sequences")
            text = _decode_run(body)
            out.append(text)
            prev_end = m.end()
        pos = m.end()


def _decode_run(body: bytes) -> str:
    pad = b"=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(body.replace(b",", b"/") + pad, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64 in mailbox name") from exc
    if len(raw) % 2:
        raise ValueError("odd UTF-16 length")
    try:
        text = raw.decode("utf-16-be")  # strict: lone surrogates raise
    except UnicodeDecodeError as exc:
        raise ValueError("bad UTF-16 in mailbox name") from exc
    if not text or _RUN.fullmatch(text) is None:
        # RFC 3501 §5.1.3: printable US-ASCII must represent itself
        raise ValueError("printable ASCII encoded in base64")
    if _b64(text).encode() != body:
        raise ValueError("non-canonical base64 (padding bits)")
    return text
