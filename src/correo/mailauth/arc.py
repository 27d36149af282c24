"""ARC chain validation (RFC 8617 §5.2), recorded in Authentication-Results only.

Each intermediary that handled the message added an ARC set — ARC-Authentication-Results,
ARC-Message-Signature and ARC-Seal with the same i= instance.  The chain is valid when the
sets are complete and numbered 1..N, the newest message signature verifies, and every seal
verifies over the sets up to its own.  We do not let ARC override DMARC: it is evidence for
an operator, not a policy input (RFC 8617 §7.2 leaves that to local policy).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from correo.dns.api import DnsError, Resolver
from correo.mailauth.canon import HeaderField, TagError, canon_header, parse_tags, strip_b_value
from correo.mailauth.dkim import (
    ALGORITHMS,
    DkimSignature,
    DkimStatus,
    SignatureError,
    check_signature,
    fetch_key,
    parse_signature,
    verify_signature_bytes,
)

__all__ = ["MAX_ARC_INSTANCES", "ArcResult", "ArcStatus", "ArcVerifier"]

MAX_ARC_INSTANCES = 50  # RFC 8617 §4.2.1
_INSTANCE = re.compile(r"\s*i\s*=\s*([0-9]{1,2})\s*(?:;|$)")


class ArcStatus(StrEnum):
    """RFC 8617 §4.4 chain validation status, as RFC 8601's arc= method reports it."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class ArcResult:
    status: ArcStatus
    instances: int = 0
    reason: str = ""
    sealer: str = ""  # d= of the newest ARC-Seal


@dataclass
class _Set:
    aar: bytes | None = None
    ams: bytes | None = None
    seal: bytes | None = None
    duplicate: bool = False


def _instance(raw: bytes) -> int | None:
    value = raw.partition(b":")[2].decode("utf-8", "replace")
    if raw[:28].lower().startswith(b"arc-authentication-results"):
        m = _INSTANCE.match(value)
        return int(m.group(1)) if m else None
    try:
        tag = parse_tags(value).get("i", "")
    except TagError:
        return None
    return int(tag) if tag.isdigit() and len(tag) <= 2 else None


class ArcVerifier:
    """Parse the ARC sets of a header section; verify once the body digests are known."""

    def __init__(self, fields: Sequence[HeaderField]) -> None:
        self.fields = fields
        self.sets: dict[int, _Set] = {}
        self.problem = ""
        self.ams: DkimSignature | None = None
        for name, raw in fields:
            if name not in ("arc-authentication-results", "arc-message-signature", "arc-seal"):
                continue
            inst = _instance(raw)
            if inst is None or not 1 <= inst <= MAX_ARC_INSTANCES:
                self.problem = f"bad ARC instance in {name}"
                continue
            entry = self.sets.setdefault(inst, _Set())
            slot = {"arc-authentication-results": "aar", "arc-message-signature": "ams"}.get(
                name, "seal"
            )
            if getattr(entry, slot) is not None:
                entry.duplicate = True
            setattr(entry, slot, raw)
        if self.sets and not self.problem:
            newest = self.sets[max(self.sets)]
            if newest.ams is not None:
                try:
                    self.ams = parse_signature(newest.ams, arc=True)
                except SignatureError as exc:
                    self.problem = f"ARC-Message-Signature: {exc}"

    async def verify(
        self,
        resolver: Resolver,
        digests: dict[tuple[bool, str, int | None], tuple[bytes, int]],
        now: float | None = None,
    ) -> ArcResult:
        """RFC 8617 §5.2 steps 1-7 (older AMS signatures are not checked: step 5 is optional)."""
        if not self.sets and not self.problem:
            return ArcResult(ArcStatus.NONE)  # §5.2 step 1
        now = time.time() if now is None else now
        count = max(self.sets, default=0)
        sealer = ""

        def fail(reason: str) -> ArcResult:
            return ArcResult(ArcStatus.FAIL, count, reason, sealer)

        if self.problem:
            return fail(self.problem)
        seals: dict[int, dict[str, str]] = {}
        for i in range(1, count + 1):  # §5.2 step 3: structure
            entry = self.sets.get(i)
            if entry is None or entry.duplicate:
                return fail(f"ARC set {i} missing or duplicated")
            if entry.aar is None or entry.ams is None or entry.seal is None:
                return fail(f"ARC set {i} incomplete")
            try:
                tags = parse_tags(entry.seal.partition(b":")[2].decode("utf-8", "replace"))
            except TagError as exc:
                return fail(f"ARC-Seal {i}: {exc}")
            if "h" in tags:
                return fail(f"ARC-Seal {i} has h=")  # RFC 8617 §4.1.3
            seals[i] = tags
            cv = tags.get("cv", "").lower()
            if cv == "fail":
                return fail(f"ARC-Seal {i} says cv=fail")  # §5.2 step 2
            if cv != ("none" if i == 1 else "pass"):
                return fail(f"ARC-Seal {i} has cv={cv}")
        sealer = seals[count].get("d", "").lower()
        if self.ams is None:
            return fail("no usable ARC-Message-Signature")
        ams_result = await check_signature(  # §5.2 step 4: the newest AMS
            resolver, self.ams, self.fields, digests, now, arc=True
        )
        if ams_result.status is not DkimStatus.PASS:
            return fail(f"ARC-Message-Signature {count}: {ams_result.reason or 'failed'}")
        for i in range(count, 0, -1):  # §5.2 step 6: every seal, newest first
            problem = await self._check_seal(resolver, i, seals[i])
            if problem:
                return fail(f"ARC-Seal {i}: {problem}")
        return ArcResult(ArcStatus.PASS, count, "", sealer)

    async def _check_seal(self, resolver: Resolver, i: int, tags: dict[str, str]) -> str:
        for name in ("a", "b", "d", "s"):
            if name not in tags:
                return f"missing {name}="
        algorithm = tags["a"].lower()
        if algorithm not in ALGORITHMS or algorithm == "rsa-sha1":
            return f"algorithm {algorithm} not allowed"
        key_type, hash_name = ALGORITHMS[algorithm]
        try:
            record = await fetch_key(resolver, tags["s"].strip(), tags["d"].lower())
        except (SignatureError, DnsError) as exc:
            return str(exc)
        if record.key is None or record.key_type != key_type:
            return "key revoked or of another type"
        parts: list[bytes] = []
        for n in range(1, i + 1):  # RFC 8617 §5.1.1: AAR, AMS, AS of each set, in order
            entry = self.sets[n]
            assert entry.aar is not None and entry.ams is not None and entry.seal is not None
            parts.append(canon_header(entry.aar, relaxed=True))
            parts.append(canon_header(entry.ams, relaxed=True))
            if n < i:
                parts.append(canon_header(entry.seal, relaxed=True))
        own = self.sets[i].seal
        assert own is not None
        parts.append(canon_header(strip_b_value(own) + b"\r\n", relaxed=True)[:-2])
        try:
            signature = _b64("".join(tags["b"].split()))
        except (ValueError, binascii.Error):
            return "bad b="
        if not verify_signature_bytes(record.key, key_type, hash_name, b"".join(parts), signature):
            return "signature did not verify"
        return ""


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)
