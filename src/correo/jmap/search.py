"""Full-text conditions of Email/query and SearchSnippet/get (RFC 8621 §4.4.1, §5).

Pure: a message's searchable text comes from its octets (:func:`searchable`), a
condition is a case-insensitive substring test on it, and a snippet is the subject and
an excerpt of the body with every match in ``<mark>`` and the rest HTML-escaped
(RFC 8621 §5.1).  Terms are bounded in number and length; the one regular expression
per snippet is an alternation of escaped literals, linear in the text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any

from correo.jmap.mail import parse_message
from correo.message.encoded import decode_header
from correo.message.text import decode_text

__all__ = [
    "MAX_TERMS",
    "TEXT_CONDITIONS",
    "Searchable",
    "searchable",
    "snippet",
    "terms_of",
    "text_matches",
]

#: Conditions that search words: ``text`` covers the addresses, subject and body.
TEXT_CONDITIONS = ("text", "body")
MAX_TERMS = 16
MAX_TERM = 256  # characters of one term
_MAX_TEXT = 1 << 20  # characters of body text kept per message for matching
_EXCERPT = 255  # RFC 8621 §5.1: the preview snippet is at most 255 octets of text
_WINDOW = 32 * 1024  # characters of body searched for a snippet in one regex call


@dataclass(frozen=True, slots=True)
class Searchable:
    """A message's words, casefolded for matching and as written for snippets."""

    subject: str
    headers: str  # From, To, Cc, Bcc and Subject, casefolded
    body: str  # decoded text parts (HTML as text), whitespace collapsed
    folded_body: str


def _header(message: Message, name: str) -> str:
    # correo's decoder: linear in the encoded words (the stdlib's took 65 s for 100,000)
    values = [decode_header(str(value)) for value in message.get_all(name) or ()]
    return " ".join(" ".join(values).split())


def searchable(raw: bytes) -> Searchable:
    """The searchable text of one message (worker thread: cost follows its size)."""
    message = parse_message(raw)
    subject = _header(message, "Subject")
    heads = " ".join(_header(message, n) for n in ("From", "To", "Cc", "Bcc")) + " " + subject
    texts: list[str] = []
    size = 0
    for part in message.walk():
        if size > _MAX_TEXT:
            break
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        text = decode_text(data, part.get_content_charset())  # never raises, linear
        if part.get_content_subtype() == "html":
            from correo.message.html import html_to_text

            text = html_to_text(text)
        texts.append(text)
        size += len(text)
    body = " ".join(" ".join(texts).split())[:_MAX_TEXT]
    return Searchable(subject, heads.casefold(), body, body.casefold())


def terms_of(node: object, depth: int = 0) -> list[str]:
    """The words the text conditions of a filter ask for, outside ``NOT``."""
    if depth > 10 or not isinstance(node, dict):
        return []
    if "operator" in node:
        if node.get("operator") == "NOT" or not isinstance(node.get("conditions"), list):
            return []
        return [t for c in node["conditions"] for t in terms_of(c, depth + 1)][:MAX_TERMS]
    return [
        str(node[k])[:MAX_TERM]
        for k in (*TEXT_CONDITIONS, "subject")
        if isinstance(node.get(k), str) and node[k].strip()
    ]


def text_matches(found: Searchable, key: str, value: str) -> bool:
    """One ``text`` or ``body`` condition: every word of ``value`` in the message."""
    words = value.casefold().split()
    if key == "body":
        return all(w in found.folded_body for w in words)
    return all(w in found.folded_body or w in found.headers for w in words)


def _pattern(terms: Iterable[str]) -> re.Pattern[str] | None:
    words = sorted({w for t in terms for w in t.split() if w}, key=len, reverse=True)
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in words[:MAX_TERMS]), re.IGNORECASE)


def _marked(text: str, pattern: re.Pattern[str]) -> tuple[str, bool]:
    out: list[str] = []
    at = 0
    hit = False
    for match in pattern.finditer(text):
        out.append(html.escape(text[at : match.start()], quote=False))
        out.append("<mark>" + html.escape(match.group(), quote=False) + "</mark>")
        at = match.end()
        hit = True
    out.append(html.escape(text[at:], quote=False))
    return "".join(out), hit


def _first(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The first match, searched _WINDOW characters at a time: one search for a term of
    240 letters over a megabyte held the GIL 0.5 s. A window reaches MAX_TERM past its
    end, so a match begun in it is whole (IGNORECASE matches as many characters as its
    term)."""
    for at in range(0, len(text), _WINDOW):
        found = pattern.search(text, at, at + _WINDOW + MAX_TERM)
        if found is not None:
            return found
    return None


def snippet(found: Searchable, terms: Sequence[str]) -> dict[str, Any]:
    """``subject`` and ``preview`` of a SearchSnippet (RFC 8621 §5.1); each None when
    nothing in it matches."""
    pattern = _pattern(terms)
    if pattern is None:
        return {"subject": None, "preview": None}
    subject, in_subject = _marked(found.subject, pattern)
    first = _first(pattern, found.body)
    preview = None
    if first is not None:
        start = max(0, first.start() - 40)
        while start > 0 and not found.body[start - 1].isspace() and first.start() - start < 60:
            start -= 1  # begin at a word
        excerpt = found.body[start : start + _EXCERPT]
        while len(excerpt.encode()) > _EXCERPT:
            excerpt = excerpt[:-1]
        preview, _ = _marked(excerpt, pattern)
    return {"subject": subject if in_subject else None, "preview": preview}
