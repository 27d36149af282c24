"""What the ``body`` test (RFC 5173) compares against, decoded once and within bounds.

The body of a message comes from a stranger, so the work it can cause is bounded
three ways: at most ``max_bytes`` body octets are decoded for one message, however
many body tests a script runs; at most ``max_parts`` MIME parts are walked; parts
nested deeper than ``max_depth`` are not entered (:raw still sees their octets).
The MIME structure is the stored one (:mod:`correo.message.structure`, computed while
the message was received) or, failing that, parsed once from the bytes at hand.
Each part is decoded at most once and shared by every transform that needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from correo.message.html import html_to_text
from correo.message.imapfmt import decode_transfer
from correo.message.mime import decode_param
from correo.message.structure import Part, parse_structure
from correo.message.text import decode_text

__all__ = ["BodyLimits", "BodyTransform", "MessageBody"]


@dataclass(frozen=True, slots=True)
class BodyTransform:
    """RFC 5173 §5: ``raw``, ``text`` or ``content`` with MIME type filters."""

    kind: str = "text"
    content_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """Bounds on the body work one message can cause.

    ``max_bytes`` is the delivery's ``sieve_body_limit`` (1 MiB); ``max_parts`` 1,000
    and ``max_depth`` 20 are far beyond real mail, where a few parts at depth 3 are
    usual, and keep a hostile tree of thousands of parts cheap.
    """

    max_bytes: int = 1024 * 1024
    max_parts: int = 1000
    max_depth: int = 20


@dataclass(frozen=True, slots=True)
class _Leaf:
    part: Part
    media_type: str  # "type/subtype", lower case


class MessageBody:
    """The body of one message for the body test; decodes each part at most once.

    ``data`` is the message (or its first octets: parts beyond it are not seen);
    ``structure`` its stored MIME tree (or a function that loads it), else the tree is
    parsed from ``data`` on first use. Not thread-safe: one run at a time.
    """

    def __init__(
        self,
        data: bytes,
        structure: Part | Callable[[], Part] | None = None,
        limits: BodyLimits | None = None,
    ) -> None:
        self._data = data
        self._structure = structure
        self.limits = limits or BodyLimits()
        self._tree: Part | None = None
        self._leaves: list[_Leaf] | None = None
        self._decoded: dict[int, str] = {}
        self._visible: dict[int, str] = {}
        self._budget = self.limits.max_bytes
        self._texts: dict[BodyTransform, tuple[str, ...]] = {}

    def texts(self, transform: BodyTransform) -> tuple[str, ...]:
        """The strings ``transform`` yields (RFC 5173 §5), computed once per transform."""
        key = BodyTransform(transform.kind, tuple(t.lower() for t in transform.content_types))
        cached = self._texts.get(key)
        if cached is None:
            cached = self._compute(key)
            self._texts[key] = cached
        return cached

    # -- the transforms -----------------------------------------------------------

    def _compute(self, transform: BodyTransform) -> tuple[str, ...]:
        if transform.kind == "raw":  # RFC 5173 §5.1: the undecoded body, MIME and all
            start = min(self.tree().header_end, len(self._data))
            end = min(len(self._data), start + self.limits.max_bytes)
            return (self._data[start:end].decode("utf-8", "replace"),)
        out: list[str] = []
        for i, leaf in enumerate(self.leaves()):
            if transform.kind == "text":
                if leaf.part.type.lower() != "text":  # RFC 5173 §5.3: text parts only
                    continue
                text = self._visible_text(i, leaf)
            else:  # RFC 5173 §5.2: "" matches all, "type" or "type/subtype"
                main = leaf.media_type.split("/", 1)[0]
                if not any(t in ("", main, leaf.media_type) for t in transform.content_types):
                    continue
                text = self._decode(i, leaf)
            if text is not None:
                out.append(text)
        return tuple(out)

    def tree(self) -> Part:
        if self._tree is None:
            s = self._structure
            self._tree = s() if callable(s) else s if s is not None else parse_structure(self._data)
        return self._tree

    def leaves(self) -> list[_Leaf]:
        """Leaf parts in document order, walking at most ``max_parts`` parts and
        entering at most ``max_depth`` levels; encapsulated messages are entered."""
        if self._leaves is not None:
            return self._leaves
        leaves: list[_Leaf] = []
        stack: list[tuple[Part, int]] = [(self.tree(), 0)]
        walked = 0
        while stack and walked < self.limits.max_parts:
            part, depth = stack.pop()
            walked += 1
            if part.header_end >= len(self._data):
                continue  # beyond the octets read: not seen
            if part.is_multipart or part.message is not None:
                if depth < self.limits.max_depth:
                    inner = (part.message,) if part.message is not None else part.children
                    stack.extend((c, depth + 1) for c in reversed(inner))
                continue
            leaves.append(_Leaf(part, part.media_type))
        self._leaves = leaves
        return leaves

    # -- decoding, once per part --------------------------------------------------

    def _decode(self, index: int, leaf: _Leaf) -> str | None:
        """The part's content, transfer and charset decoded; None past the budget."""
        text = self._decoded.get(index)
        if text is not None:
            return text
        part = leaf.part
        start = part.header_end
        if self._budget <= 0 and part.body_end > start:
            return None  # the byte budget is spent: later parts are not read
        end = min(part.body_end, len(self._data), start + self._budget)
        self._budget -= max(0, end - start)
        # quoted-printable writes a bare LF's hard break as CRLF (RFC 2045 §6.7), one
        # octet more than it read: the decoded octets are held to those read
        raw = decode_transfer(self._data[start:end], part.encoding)[: max(0, end - start)]
        text = decode_text(raw, decode_param(part.params, "charset"))
        self._decoded[index] = text
        return text

    def _visible_text(self, index: int, leaf: _Leaf) -> str | None:
        """RFC 5173 §5.3 lets :text strip markup: HTML is matched as the text it shows."""
        if leaf.media_type != "text/html":
            return self._decode(index, leaf)
        text = self._visible.get(index)
        if text is None:
            decoded = self._decode(index, leaf)
            if decoded is None:
                return None
            text = self._visible[index] = html_to_text(decoded)
        return text
