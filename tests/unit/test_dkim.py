"""DKIM (RFC 6376, RFC 8463): vectors, interop with dkimpy both ways, canonicalization,
tampering, key-record cases, streaming equivalence and fuzzing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.dns import FakeResolver
from correo.mailauth.canon import BodyHasher, parse_tags
from correo.mailauth.dkim import (
    DkimStatus,
    DkimVerifier,
    SignatureError,
    parse_key_record,
    parse_signature,
)
from correo.mailauth.keys import dns_record
from correo.mailauth.signing import DkimSigner, SigningKey

# RFC 8463 Appendix A.2 (key records) and A.3 (the signed message).
RFC8463_ZONE = {
    "brisbane._domainkey.football.example.com": {
        "TXT": ["v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="]
    },
    "test._domainkey.football.example.com": {
        "TXT": [
            "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
            "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
            "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
            "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
        ]
    },
}
RFC8463_MESSAGE = "\r\n".join(
    [
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
        " d=football.example.com; i=@football.example.com;",
        " q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
        " subject : date : message-id : from : subject : date;",
        " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
        " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
        " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;",
        " d=football.example.com; i=@football.example.com;",
        " q=dns/txt; s=test; t=1528637909; h=from : to : subject :",
        " date : message-id : from : subject : date;",
        " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
        " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3",
        " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz",
        " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=",
        "From: Joe SixPack <joe@football.example.com>",
        "To: Suzie Q <suzie@shopping.example.net>",
        "Subject: Is dinner ready?",
        "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
        "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
        "",
        "Hi.",
        "",
        "We lost the game.  Are you hungry yet?",
        "",
        "Joe.",
        "",
        "",
    ]
).encode()

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject:  hello   world \r\n\tfolded\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello  there \r\n\r\nbye\r\n\r\n\r\n"
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def zone_for(*keys: tuple[str, Any], domain: str = "example.com") -> dict[str, Any]:
    return {f"{sel}._domainkey.{domain}": {"TXT": [dns_record(key)]} for sel, key in keys}


def verify(message: bytes, resolver: FakeResolver, chunk: int = 0, now: float | None = None):
    end = message.find(b"\r\n\r\n")
    verifier = DkimVerifier(message[: end + 2])
    body = message[end + 4 :]
    if chunk:
        for i in range(0, len(body), chunk):
            verifier.update(body[i : i + chunk])
    else:
        verifier.update(body)
    return asyncio.run(verifier.verify(resolver, now=now))


def statuses(results: Any) -> list[str]:
    return [str(r.status) for r in results]


def signer() -> DkimSigner:
    return DkimSigner(
        [SigningKey("example.com", "ed", ED_KEY), SigningKey("example.com", "rsa", RSA_KEY)]
    )


def resolver() -> FakeResolver:
    return FakeResolver(zone_for(("ed", ED_KEY), ("rsa", RSA_KEY)))


# -- RFC vectors --------------------------------------------------------------------


def test_rfc8463_example_both_signatures_pass() -> None:
    results = verify(RFC8463_MESSAGE, FakeResolver(RFC8463_ZONE))
    assert statuses(results) == ["pass", "pass"]
    assert [r.algorithm for r in results] == ["ed25519-sha256", "rsa-sha256"]
    assert results[0].domain == "football.example.com"
    assert results[0].selector == "brisbane"


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_rfc8463_example_streamed_in_small_chunks(chunk: int) -> None:
    assert statuses(verify(RFC8463_MESSAGE, FakeResolver(RFC8463_ZONE), chunk)) == ["pass"] * 2


@pytest.mark.parametrize(
    ("relaxed", "body", "expected"),
    [
        # RFC 6376 §3.4.3 / §3.4.4: the empty body
        (False, b"", "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="),
        (True, b"", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
    ],
)
def test_empty_body_hashes(relaxed: bool, body: bytes, expected: str) -> None:
    h = BodyHasher(relaxed)
    h.update(body)
    assert base64.b64encode(h.digest()).decode() == expected


@pytest.mark.parametrize(
    ("relaxed", "body", "canonical"),
    [
        # RFC 6376 §3.4.6 example body
        (False, b" C \r\nD \t E\r\n\r\n\r\n", b" C \r\nD \t E\r\n"),
        (True, b" C \r\nD \t E\r\n\r\n\r\n", b" C\r\nD E\r\n"),
        (False, b"no final crlf", b"no final crlf\r\n"),
        (True, b"no final crlf  ", b"no final crlf\r\n"),
        (False, b"\r\n\r\n", b"\r\n"),
        (True, b"\r\n\r\n", b""),
        (True, b"  \r\n \t \r\n", b""),
        (False, b"  \r\n", b"  \r\n"),
        (True, b"a\r\n  \r\nb\r\n", b"a\r\n\r\nb\r\n"),
        (False, b"a\r\n\r\n\r\nb\r\n\r\n", b"a\r\n\r\n\r\nb\r\n"),
    ],
)
def test_body_canonicalization(relaxed: bool, body: bytes, canonical: bytes) -> None:
    for chunk in (1, 2, len(body) or 1):
        h = BodyHasher(relaxed)
        for i in range(0, len(body), chunk):
            h.update(body[i : i + chunk])
        assert h.digest() == hashlib.sha256(canonical).digest(), (chunk, body)


def test_long_line_is_flushed_not_held() -> None:
    line = b"x" * 200_000 + b"   "
    h = BodyHasher(True)
    for i in range(0, len(line), 1000):
        h.update(line[i : i + 1000])
        assert len(h._partial) <= 70_000
    h.update(b"\r\n")
    assert h.digest() == hashlib.sha256(b"x" * 200_000 + b"\r\n").digest()


def test_length_limit_counts_canonical_octets() -> None:
    h = BodyHasher(False, limit=5)
    h.update(b"abcdefgh\r\n")
    assert h.digest() == hashlib.sha256(b"abcde").digest()
    assert h.length == 10


# -- interop with dkimpy ------------------------------------------------------------

dkim = pytest.importorskip("dkim")


def _dnsfunc(zone: dict[str, Any]):
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return str(zone[name.decode().rstrip(".")]["TXT"][0]).encode()

    return lookup


def test_correo_signatures_verify_with_dkimpy() -> None:
    pytest.importorskip("nacl")
    signed = signer().sign(MESSAGE) + MESSAGE
    zone = zone_for(("ed", ED_KEY), ("rsa", RSA_KEY))
    d = dkim.DKIM(signed)
    assert d.verify(idx=0, dnsfunc=_dnsfunc(zone))
    assert d.verify(idx=1, dnsfunc=_dnsfunc(zone))


def _rsa_pem() -> bytes:
    return RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("header_c", [b"simple", b"relaxed"])
@pytest.mark.parametrize("body_c", [b"simple", b"relaxed"])
def test_dkimpy_rsa_signatures_verify_with_correo(header_c: bytes, body_c: bytes) -> None:
    sig = dkim.sign(MESSAGE, b"rsa", b"example.com", _rsa_pem(), canonicalize=(header_c, body_c))
    assert statuses(verify(sig + MESSAGE, resolver())) == ["pass"]


def test_dkimpy_ed25519_signature_verifies_with_correo() -> None:
    pytest.importorskip("nacl")
    raw = ED_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    sig = dkim.sign(
        MESSAGE,
        b"ed",
        b"example.com",
        base64.b64encode(raw),
        signature_algorithm=b"ed25519-sha256",
        canonicalize=(b"relaxed", b"relaxed"),
    )
    assert statuses(verify(sig + MESSAGE, resolver())) == ["pass"]


def test_dkimpy_length_tag_allows_appended_text() -> None:
    sig = dkim.sign(MESSAGE, b"rsa", b"example.com", _rsa_pem(), length=True)
    assert statuses(verify(sig + MESSAGE + b"appended footer\r\n", resolver())) == ["pass"]


def test_dkimpy_rsa_sha1_is_reported_as_policy() -> None:
    sig = dkim.sign(MESSAGE, b"rsa", b"example.com", _rsa_pem(), signature_algorithm=b"rsa-sha1")
    results = verify(sig + MESSAGE, resolver())
    assert statuses(results) == ["policy"]
    assert "8301" in results[0].reason


BASE = b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; d=example.com; s=x; h=from; bh=AA=="

# -- tampering and key records ------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (b"Hello  there", b"Hello  THERE", "fail"),  # body
        (b"Subject:  hello", b"Subject:  HELLO", "fail"),  # signed header
        (b"To: bob@example.org\r\n", b"To: bob@example.org\r\nTo: eve@example.net\r\n", "fail"),
        (b"Hello  there \r\n", b"Hello there\r\n", "pass"),  # relaxed: whitespace only
        (b"Subject:  hello   world", b"subject: hello world", "pass"),
        (b"\r\n\r\nHello", b"\r\nX-Unsigned: added\r\n\r\nHello", "pass"),
    ],
)
def test_tampering(old: bytes, new: bytes, expected: str) -> None:
    signed = signer().sign(MESSAGE) + MESSAGE
    assert old in signed
    assert statuses(verify(signed.replace(old, new, 1), resolver())) == [expected] * 2


def test_added_from_field_breaks_oversigned_signature() -> None:
    signed = signer().sign(MESSAGE) + MESSAGE
    tampered = signed.replace(b"\r\n\r\n", b"\r\nFrom: eve@evil.example\r\n\r\n", 1)
    assert statuses(verify(tampered, resolver())) == ["fail", "fail"]


@pytest.mark.parametrize(
    ("record", "expected", "reason"),
    [
        ("v=DKIM1; k=rsa; p=", "permerror", "revoked"),
        (None, "permerror", "no key"),
        ("TIMEOUT", "temperror", ""),
        ("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "permerror", "type"),
        ("v=DKIM1; k=rsa; s=other; p=KEY", "permerror", "email"),
        ("v=DKIM1; k=rsa; h=sha1; p=KEY", "permerror", "hash"),
        ("v=DKIM1; k=rsa; t=y; p=KEY", "pass", ""),
        ("v=DKIM1; k=rsa; t=s; p=KEY", "pass", ""),
        ("v=DKIM1; k=rsa; p=!!!", "permerror", ""),
    ],
)
def test_key_records(record: str | None, expected: str, reason: str) -> None:
    key_text = dns_record(RSA_KEY).split("p=", 1)[1]
    res = FakeResolver({"example.com": {"A": ["192.0.2.1"]}})
    if record == "TIMEOUT":
        res.add("rsa._domainkey.example.com", "TIMEOUT", True)
    elif record is not None:
        res.add("rsa._domainkey.example.com", "TXT", record.replace("KEY", key_text))
    signed = DkimSigner([SigningKey("example.com", "rsa", RSA_KEY)]).sign(MESSAGE) + MESSAGE
    (result,) = verify(signed, res)
    assert result.status == expected
    assert reason in result.reason
    if record and "t=y" in record:
        assert result.testing


def test_expired_signature_fails() -> None:
    s = DkimSigner([SigningKey("example.com", "ed", ED_KEY)], expire_after=60)
    signed = s.sign(MESSAGE, now=1_000_000) + MESSAGE
    assert statuses(verify(signed, resolver(), now=1_000_030)) == ["pass"]
    (result,) = verify(signed, resolver(), now=1_000_100)
    assert result.status is DkimStatus.FAIL and "expired" in result.reason


def test_unsigned_message_has_no_results() -> None:
    assert verify(MESSAGE, resolver()) == []


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        (b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x; h=from; bh=AA==\r\n", "b="),
        (
            b"DKIM-Signature: v=2; a=rsa-sha256; b=AA==; d=example.com; s=x; h=from; bh=AA==\r\n",
            "version",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-md5; b=AA==; d=example.com; s=x; h=from; bh=AA==\r\n",
            "algorithm",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; b=AA==; d=example.com; s=x; h=to; bh=AA==\r\n",
            "From",
        ),
        (b"DKIM-Signature: v=1; v=1; a=rsa-sha256\r\n", "duplicate"),
        (
            BASE + b"; i=@evil.example\r\n",
            "i=",
        ),
        (
            BASE + b"; t=10; x=5\r\n",
            "x=",
        ),
        (
            BASE + b"; c=odd\r\n",
            "canonicalization",
        ),
    ],
)
def test_bad_signatures_are_permerrors(field: bytes, problem: str) -> None:
    with pytest.raises(SignatureError, match=problem):
        parse_signature(field)
    (result,) = verify(field + MESSAGE, resolver())
    assert result.status is DkimStatus.PERMERROR


def test_tag_list_parsing() -> None:
    assert parse_tags(" a = 1 ;b=\r\n\t2;") == {"a": "1", "b": "2"}
    assert parse_key_record(b"v=DKIM1; p=").key is None


# -- fuzzing ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.integers(min_value=1, max_value=17))
def test_fuzz_body_hasher_chunking(body: bytes, relaxed: bool, chunk: int) -> None:
    """Invariant: any bytes hash without error, and chunked feeding equals whole feeding."""
    whole = BodyHasher(relaxed)
    whole.update(body)
    pieces = BodyHasher(relaxed)
    for i in range(0, len(body), chunk):
        pieces.update(body[i : i + chunk])
    assert whole.digest() == pieces.digest()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_signature_fields(value: bytes) -> None:
    """Invariant: a hostile DKIM-Signature yields a DkimResult, never an exception."""
    message = b"DKIM-Signature:" + value.replace(b"\r\n\r\n", b"") + b"\r\n" + MESSAGE
    results = verify(message, FakeResolver())
    assert all(r.status in set(DkimStatus) for r in results)
