"""LIST and LSUB mailbox patterns, matched in linear time (RFC 9051 §6.3.9).

``*`` matches any run of characters, ``%`` any run without the hierarchy delimiter.
Translated to a backtracking regular expression, a pattern with k wildcards costs up to
O(len(name)^k) on a name that almost matches (``*a*a*a*a*b`` against ``aaaa…``), and a
client could stall the server with one LIST. Here the patterns of one command become
one nondeterministic automaton whose live states are the bits of an integer, run over
the name once: each character costs a fixed number of integer operations on a number
as wide as the patterns, so a name costs O(len(name) * len(patterns)) bit operations
at worst, whatever the patterns hold. :attr:`Wildcard.steps` counts the characters the
automaton examined.

What clients send nearly always (``*``, ``%``, ``prefix*``, ``prefix%``, a plain name)
is answered by string comparisons without the automaton.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MAX_PATTERN", "MAX_PATTERNS", "PatternError", "Wildcard"]

#: Octets of one pattern (joined to its reference): twice the longest mailbox name.
MAX_PATTERN = 1000
#: Octets of all the patterns of one command together (RFC 5258 §3 allows several).
MAX_PATTERNS = 4000


class PatternError(ValueError):
    """A pattern beyond the limits above; the session answers ``NO [LIMIT]``."""


def _tokens(pattern: str) -> list[str]:
    """One token per character, with each run of wildcards collapsed to one.

    A run holding a ``*`` matches exactly what one ``*`` does, a run of ``%`` what one
    ``%`` does; with no two wildcards in a row, one shift closes the automaton's states
    under the empty matches of wildcards.
    """
    out: list[str] = []
    for c in pattern:
        if c in "*%" and out and out[-1] in "*%":
            if c == "*":
                out[-1] = "*"
            continue
        out.append(c)
    return out


class _Automaton:
    """The union of several patterns as one bit-parallel NFA.

    Pattern k with m tokens owns states ``off .. off+m``: state ``off+i`` means "the
    first i tokens are matched", ``off+m`` accepts. A literal moves one state on (a
    left shift of the states whose next token is that character); a wildcard state
    keeps itself on any character (``%``: any but the delimiter) and also stands in
    the next state, since a wildcard may match nothing. An accepting state has no
    token, so no shift ever carries one pattern into the next.
    """

    __slots__ = ("accept", "delimiter", "literal", "star", "start", "wild")

    def __init__(self, patterns: Iterable[list[str]], delimiter: str) -> None:
        self.delimiter = delimiter
        self.literal: dict[str, int] = {}
        star = percent = start = accept = 0
        bit = 0
        for tokens in patterns:
            start |= 1 << bit
            for token in tokens:
                if token == "*":
                    star |= 1 << bit
                elif token == "%":
                    percent |= 1 << bit
                else:
                    self.literal[token] = self.literal.get(token, 0) | (1 << bit)
                bit += 1
            accept |= 1 << bit
            bit += 1
        self.star = star
        self.wild = star | percent
        self.start = start | ((start & self.wild) << 1)
        self.accept = accept

    def run(self, name: str, marks: list[bool] | None = None) -> tuple[int, int]:
        """(live states after ``name``, characters examined).

        ``marks``, when given, gets one entry per delimiter in ``name``: whether the
        name up to that delimiter matches (its superior names, for LSUB and
        RECURSIVEMATCH), so they cost no second pass.
        """
        states = self.start
        literal, star, wild, accept, delimiter = (
            self.literal,
            self.star,
            self.wild,
            self.accept,
            self.delimiter,
        )
        steps = 0
        for c in name:
            steps += 1
            if c == delimiter:
                if marks is not None:
                    marks.append(bool(states & accept))
                states = ((states & literal.get(c, 0)) << 1) | (states & star)
            else:
                states = ((states & literal.get(c, 0)) << 1) | (states & wild)
            states |= (states & wild) << 1
            if not states:
                if marks is not None:
                    marks.extend([False] * name.count(delimiter, steps))
                break
        return states, steps


class Wildcard:
    """The patterns of one LIST or LSUB command; a name matches if any pattern does."""

    __slots__ = ("_automaton", "_delimiter", "_exact", "_level", "_prefix", "steps")

    def __init__(self, patterns: Iterable[str], delimiter: str = "/") -> None:
        """Raises :class:`PatternError` for patterns past :data:`MAX_PATTERN` or
        :data:`MAX_PATTERNS`: both bound what one command can make the server compute."""
        self._delimiter = delimiter
        self._exact: set[str] = set()
        prefixes: list[str] = []
        self._level: list[str] = []  # "prefix%": the rest holds no delimiter
        general: list[list[str]] = []
        total = 0
        for pattern in patterns:
            size = len(pattern.encode("utf-8", "surrogatepass"))
            total += size
            if size > MAX_PATTERN:
                raise PatternError(f"pattern longer than {MAX_PATTERN} octets")
            if total > MAX_PATTERNS:
                raise PatternError(f"patterns longer than {MAX_PATTERNS} octets together")
            tokens = _tokens(pattern)
            wild = [i for i, t in enumerate(tokens) if t in "*%"]
            if not wild:
                self._exact.add(pattern)
            elif wild == [len(tokens) - 1]:
                head = "".join(tokens[:-1])
                (prefixes if tokens[-1] == "*" else self._level).append(head)
            else:
                general.append(tokens)
        self._prefix = tuple(prefixes)
        self._automaton = _Automaton(general, delimiter) if general else None
        #: Characters examined by the automaton so far (a work count for tests).
        self.steps = 0

    def _simple(self, name: str) -> bool:
        if name in self._exact or name.startswith(self._prefix):
            return True
        return any(
            name.startswith(head) and name.find(self._delimiter, len(head)) < 0
            for head in self._level
        )

    def match(self, name: str) -> bool:
        """Does any pattern match all of ``name``?"""
        if self._simple(name):
            return True
        if self._automaton is None:
            return False
        states, steps = self._automaton.run(name)
        self.steps += steps
        return bool(states & self._automaton.accept)

    def match_levels(self, name: str) -> list[bool]:
        """For each level of ``name`` (``a``, ``a/b``, ``a/b/c``): does it match?

        One pass over the name answers for all its superior names at once.
        """
        marks: list[bool] = []
        if self._automaton is not None:
            states, steps = self._automaton.run(name, marks)
            self.steps += steps
            marks.append(bool(states & self._automaton.accept))
        else:
            marks = [False] * (name.count(self._delimiter) + 1)
        if self._exact or self._prefix or self._level:
            level, start = 0, 0
            while True:
                end = name.find(self._delimiter, start)
                stop = len(name) if end < 0 else end
                if not marks[level] and self._simple(name[:stop]):
                    marks[level] = True
                if end < 0:
                    break
                level, start = level + 1, end + 1
        return marks
