"""The variables extension (RFC 5229): ``set`` modifiers and ``${..}`` expansion."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .match import quote_wildcards

__all__ = [
    "MODIFIER_PRECEDENCE",
    "VARIABLE_NAME",
    "VariableStore",
    "apply_modifiers",
]

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # RFC 5229 §3 identifier

# RFC 5229 §4.1: higher precedence applies first; equal ones may not be mixed.
MODIFIER_PRECEDENCE = {
    "lower": 40,
    "upper": 40,
    "lowerfirst": 30,
    "upperfirst": 30,
    "quotewildcard": 20,
    "length": 10,
}

# RFC 5229 §3: ${name}, ${namespace.name} or ${digits}; anything else is literal.
_REFERENCE = re.compile(
    r"\$\{(?:([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)|([0-9]{1,9}))\}"
)


def apply_modifiers(value: str, modifiers: Iterable[str]) -> str:
    """Apply ``set`` modifiers in RFC 5229 §4.1 precedence order."""
    for mod in sorted(modifiers, key=lambda m: -MODIFIER_PRECEDENCE[m]):
        if mod == "lower":
            value = value.lower()
        elif mod == "upper":
            value = value.upper()
        elif mod == "lowerfirst":
            value = value[:1].lower() + value[1:]
        elif mod == "upperfirst":
            value = value[:1].upper() + value[1:]
        elif mod == "quotewildcard":
            value = quote_wildcards(value)
        elif mod == "length":
            value = str(len(value))  # RFC 5229 §4.1: length in characters
    return value


class VariableStore:
    """Named variables (case-insensitive) and the current match variables."""

    def __init__(self, max_length: int = 4096) -> None:
        self.max_length = max_length
        self.named: dict[str, str] = {}
        self.matches: tuple[str, ...] = ()

    def set(self, name: str, value: str) -> None:
        """Assign, truncating to ``max_length`` (RFC 5229 §3 allows limits)."""
        self.named[name.lower()] = value[: self.max_length]

    def get(self, name: str) -> str:
        """A missing variable reads as the empty string (RFC 5229 §3)."""
        return self.named.get(name.lower(), "")

    def set_matches(self, values: Sequence[str]) -> None:
        """Replace ${0}..${n} after a successful :matches (RFC 5229 §3.2)."""
        self.matches = tuple(v[: self.max_length] for v in values)

    def expand(self, value: str) -> str:
        """Substitute variable references in one pass (no re-expansion)."""
        if "${" not in value:
            return value

        budget = [self.max_length * 4]  # bounds memory even for "${a}${a}..."

        def repl(m: re.Match[str]) -> str:
            name, digits = m.group(1), m.group(2)
            if digits is not None:
                index = int(digits)
                out = self.matches[index] if index < len(self.matches) else ""
            elif "." in name:
                out = ""  # no namespaces are supported; they read as empty
            else:
                out = self.get(name)
            out = out[: max(budget[0], 0)]
            budget[0] -= len(out)
            return out

        return _REFERENCE.sub(repl, value)
