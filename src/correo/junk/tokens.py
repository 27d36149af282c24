"""Tokens of a message for the classifier: header words tagged by field, body words.

Pure and bounded: at most ``max_tokens`` distinct tokens from the first ``max_bytes``
of the message, so a huge or hostile message costs a fixed amount of work.
"""

from __future__ import annotations

import re

from correo.message.structure import parse_structure
from correo.message.text import searchable_text

__all__ = ["tokenize"]

_WORD = re.compile(r"[^\W_][\w'$!.-]{1,38}[^\W_]|[$€£]\d[\d.,]*", re.UNICODE)
_HEADER_NAMES = ("subject", "from", "reply-to", "content-type", "x-mailer", "user-agent")
_URL_HOST = re.compile(r"https?://([A-Za-z0-9.-]{1,253})", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return [w.lower().strip(".'-") for w in _WORD.findall(text)]


def tokenize(data: bytes, *, max_bytes: int = 512 * 1024, max_tokens: int = 5000) -> set[str]:
    """Distinct tokens: ``h:name:word`` for chosen header fields, ``url:host``, plain words."""
    data = data[:max_bytes]
    out: set[str] = set()
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[: end + 2]
    text = header.decode("utf-8", "replace").replace("\r\n\t", " ").replace("\r\n ", " ")
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        if sep and key in _HEADER_NAMES:
            for w in _words(value)[:50]:
                out.add(f"h:{key}:{w}")
    try:
        part = parse_structure(data)
        chunks = list(searchable_text(data, part))
    except Exception:  # liberal: a broken message is still scored on its raw text
        chunks = [data.decode("utf-8", "replace")]
    for chunk in chunks:
        for host in _URL_HOST.findall(chunk):
            out.add("url:" + host.lower())
        for w in _words(chunk):
            if len(out) >= max_tokens:
                return out
            if not w.isdigit():
                out.add(w)
    return out
