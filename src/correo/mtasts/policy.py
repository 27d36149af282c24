"""MTA-STS records and policies (RFC 8461): parsing and MX matching, no I/O.

A domain publishes ``_mta-sts.<domain> TXT "v=STSv1; id=..."`` and a policy at
``https://mta-sts.<domain>/.well-known/mta-sts.txt``; a sending MTA that has the
policy delivers only to the MX hosts it names, over TLS with a certificate valid for
the MX host name (``mode: enforce``), or only reports where that fails (``testing``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MAX_AGE_LIMIT",
    "MODES",
    "Mode",
    "Policy",
    "PolicyError",
    "mx_matches",
    "parse_policy",
    "parse_record",
]

Mode = Literal["enforce", "testing", "none"]
MODES: dict[str, Mode] = {"enforce": "enforce", "testing": "testing", "none": "none"}
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: at most one year
_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # RFC 8461 §3.1 sts-id-value
_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?")  # §3.2 ["*."] Domain
_VERSION = re.compile(rb"v=STSv1(?:[ \t]*;|[ \t]*$)")


class PolicyError(ValueError):
    """A record or policy that does not follow RFC 8461: treated as absent."""


@dataclass(frozen=True, slots=True)
class Policy:
    mode: Mode
    mx: tuple[str, ...]
    max_age: int

    def allows(self, host: str) -> bool:
        """Whether MX host ``host`` is one the policy names (RFC 8461 §4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


def parse_record(texts: list[bytes]) -> str | None:
    """The policy id of ``_mta-sts`` TXT records, or None when there is no usable one.

    RFC 8461 §3.1: records not starting ``v=STSv1`` are ignored; unless exactly one
    record remains, the domain is taken to have no policy.
    """
    # the version ends at ";" or whitespace: "v=STSv10" is another version, not ours
    found = [t for t in texts if _VERSION.match(t)]
    if len(found) != 1:
        return None
    try:
        text = found[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    fields: dict[str, str] = {}
    for raw in text.split(";"):
        item = raw.strip(" \t")
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            return None
        fields.setdefault(key, value)
    if fields.get("v") != "STSv1":
        return None
    ident = fields.get("id", "")
    return ident if _ID.fullmatch(ident) else None


def parse_policy(body: bytes) -> Policy:
    """The policy in a fetched ``mta-sts.txt`` (RFC 8461 §3.2); PolicyError if invalid.

    Lines are ``key: value``, ending in LF or CRLF; unknown keys are ignored, ``mx``
    may repeat, and of any other repeated key the first counts.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError("the policy is not UTF-8 text") from exc
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip(" \t")
        if not sep or not _FIELD.fullmatch(key):
            raise PolicyError(f"malformed policy line {line[:60]!r}")
        if key == "mx":
            if not _MX_PATTERN.fullmatch(value):
                raise PolicyError(f"malformed mx pattern {value[:60]!r}")
            mx.append(value.rstrip(".").lower())
        else:
            fields.setdefault(key, value)
    if fields.get("version") != "STSv1":
        raise PolicyError("the policy's version is not STSv1")
    mode = MODES.get(fields.get("mode", ""))
    if mode is None:
        raise PolicyError(f"unknown policy mode {fields.get('mode')!r}")
    age = fields.get("max_age", "")
    if not age.isascii() or not age.isdigit() or len(age) > 10:
        raise PolicyError("the policy's max_age is missing or not a number")
    if mode != "none" and not mx:
        raise PolicyError("the policy names no mx")  # §3.2: mx is required but for "none"
    return Policy(mode, tuple(mx), min(int(age), MAX_AGE_LIMIT))


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: case-insensitive; ``*.`` stands for exactly one leftmost label."""
    host = host.rstrip(".").lower()
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern
