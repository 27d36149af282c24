"""Visible text of an HTML body, in time linear in its length.

The stdlib ``html.parser`` rescans unfinished constructs from their start on every
step, so hostile markup such as ``"<a" * 300_000`` takes minutes; search, Sieve
``body :text`` and the text renderer all read mail from strangers.  This scanner looks
at every character a bounded number of times: each ``<`` is resolved with one forward
search, and a quote or terminator that is missing is remembered as missing, so it is
never searched for again.
"""

from __future__ import annotations

import html
import re

__all__ = ["html_to_text"]

_SKIP = frozenset({"script", "style", "head", "title"})
_RAW = frozenset({"script", "style"})  # HTML raw text elements: markup inside is text
_BREAK = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "table"})
_NAME = re.compile(r"[A-Za-z][^\t\n\f\r />\x00]*")
_TAG_STOP = re.compile(r"[>\"']")
_RAW_END = {name: re.compile(rf"</{name}(?=[\t\n\f\r />])", re.IGNORECASE) for name in _RAW}


def _is_letter(c: str) -> bool:
    return c.isascii() and c.isalpha()


class _Scanner:
    """One pass over the markup; ``out`` collects the visible text."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.out: list[str] = []
        self.skip = 0  # inside head/title/script/style: text is not visible
        self.unquoted: set[str] = set()  # quote characters with no closing partner left

    def data(self, start: int, end: int) -> None:
        if start < end and not self.skip:
            self.out.append(html.unescape(self.s[start:end]))

    def tag_end(self, k: int) -> int:
        """Index of the ``>`` closing the tag scanned from ``k`` (quotes respected), -1."""
        s = self.s
        while True:
            m = _TAG_STOP.search(s, k)
            if m is None:
                return -1
            c = m.group()
            if c == ">":
                return m.start()
            k = m.end()
            if c in self.unquoted:
                continue
            close = s.find(c, k)
            if close < 0:
                self.unquoted.add(c)  # never search for this quote again
                continue
            k = close + 1

    def run(self) -> str:
        s = self.s
        n = len(s)
        i = 0  # start of text not yet emitted
        j = 0  # where to look for the next "<"
        while True:
            j = s.find("<", j)
            if j < 0:
                self.data(i, n)
                break
            nxt = s[j + 1 : j + 2]
            if _is_letter(nxt) or (nxt == "/" and _is_letter(s[j + 2 : j + 3])):
                closing = nxt == "/"
                m = _NAME.match(s, j + 2 if closing else j + 1)
                assert m is not None
                end = self.tag_end(m.end())
                if end < 0:  # an unfinished tag is text, as html.parser leaves it
                    self.data(i, n)
                    break
                self.data(i, j)
                name = m.group().lower()
                i = j = end + 1
                if closing:
                    if name in _SKIP and self.skip:
                        self.skip -= 1
                    continue
                if name in _BREAK:
                    self.out.append("\n")
                if name in _RAW:  # the element's text ends only at its end tag
                    stop = _RAW_END[name].search(s, i)
                    end = -1 if stop is None else self.tag_end(stop.end())
                    if end < 0:
                        break
                    i = j = end + 1
                elif name in _SKIP:
                    self.skip += 1
            elif nxt in ("!", "?", "/"):  # comments, declarations, PIs, bogus comments
                self.data(i, j)
                if s.startswith("<!--", j):
                    end = s.find("-->", j + 4)
                    end = end + 2 if end >= 0 else -1
                else:
                    end = s.find(">", j + 2)
                if end < 0:
                    break  # unclosed: it hides the rest
                i = j = end + 1
            else:  # "<" not starting markup is text
                j += 1
        return "".join(self.out)


def html_to_text(markup: str) -> str:
    """Visible text of an HTML document: tags dropped, entities resolved, script,
    style, head and title left out, block elements on lines of their own."""
    text = _Scanner(markup).run()
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
