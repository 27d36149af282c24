"""ARC (RFC 8617): chains sealed by dkimpy validate with correo; broken chains fail."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from correo.dns import FakeResolver
from correo.mailauth.arc import ArcResult, ArcStatus, ArcVerifier
from correo.mailauth.dkim import DkimVerifier
from correo.mailauth.keys import dns_record

dkim = pytest.importorskip("dkim")
pytest.importorskip("authres")  # dkimpy's ARC signing needs it

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
)
ZONE = {
    f"arc._domainkey.{d}": {"TXT": [dns_record(KEY)]} for d in ("relay.example", "relay2.example")
}
MESSAGE = (
    b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n"
    b"Authentication-Results: relay.example; spf=pass smtp.mailfrom=example.com\r\n"
    b"\r\nbody line\r\n"
)


def one_hop() -> bytes:
    return b"".join(dkim.arc_sign(MESSAGE, b"arc", b"relay.example", PEM, b"relay.example"))


def two_hops() -> bytes:
    first = one_hop() + MESSAGE
    second = b"Authentication-Results: relay2.example; arc=pass\r\n" + first
    return b"".join(dkim.arc_sign(second, b"arc", b"relay2.example", PEM, b"relay2.example")) + (
        second
    )


def check(message: bytes, zone: dict[str, object] | None = None) -> ArcResult:
    end = message.find(b"\r\n\r\n")
    verifier = DkimVerifier(message[: end + 2])
    arc = ArcVerifier(verifier.fields)
    if arc.ams is not None:
        verifier.add_hasher(arc.ams)
    verifier.update(message[end + 4 :])
    resolver = FakeResolver(zone if zone is not None else ZONE)  # type: ignore[arg-type]
    return asyncio.run(arc.verify(resolver, verifier.body_digests()))


def test_no_chain_is_none() -> None:
    assert check(MESSAGE).status is ArcStatus.NONE


def test_one_hop_passes() -> None:
    result = check(one_hop() + MESSAGE)
    assert (result.status, result.instances, result.sealer) == (ArcStatus.PASS, 1, "relay.example")


def test_two_hops_pass() -> None:
    result = check(two_hops())
    assert (result.status, result.instances) == (ArcStatus.PASS, 2)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"body line", b"body lime", "body hash"),
        (b"cv=pass", b"cv=none", "cv=none"),
        (b"Subject: hi", b"Subject: ho", "ARC-Message-Signature 2"),
    ],
)
def test_broken_chains_fail(old: bytes, new: bytes, reason: str) -> None:
    message = two_hops()
    assert old in message
    result = check(message.replace(old, new, 1))
    assert result.status is ArcStatus.FAIL
    assert reason in result.reason


def test_tampered_first_seal_fails() -> None:
    message = two_hops()
    # change the oldest ARC-Authentication-Results: only the seals cover it
    tampered = message.replace(b"i=1; relay.example", b"i=1; relay.example; x=1", 1)
    assert tampered != message
    result = check(tampered)
    assert result.status is ArcStatus.FAIL and "ARC-Seal" in result.reason


def test_missing_set_fails() -> None:
    message = two_hops()
    lines = message.split(b"\r\n")
    kept = [line for line in lines if not line.startswith(b"ARC-Seal: i=1")]
    result = check(b"\r\n".join(kept))
    assert result.status is ArcStatus.FAIL


def test_missing_key_fails() -> None:
    assert check(one_hop() + MESSAGE, zone={}).status is ArcStatus.FAIL
