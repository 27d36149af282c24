"""The streaming inbound authenticator and signer, Authentication-Results, and key files."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.directory.dkim_files import FileKeyStore
from correo.dns import FakeResolver
from correo.mailauth import Action, MessageAuthenticator
from correo.mailauth.keys import dns_record, ensure_domain_keys, load_signer, rotate_keys
from correo.mailauth.results import ResultItem, format_results, strip_forged_results
from correo.mailauth.signing import DkimSigner, SigningKey

BODY = b"Hello,\r\n\r\nsee you.\r\n"


def message(from_addr: str = "alice@example.com", extra: bytes = b"") -> bytes:
    return (
        f"From: Alice <{from_addr}>\r\nTo: bob@example.org\r\nSubject: hi\r\n".encode()
        + extra
        + b"\r\n"
        + BODY
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DkimSigner:
    data = FileKeyStore(tmp_path_factory.mktemp("data"))
    ensure_domain_keys(data, "example.com")
    return load_signer(data, ["example.com"])["example.com"]


def zone(signer: DkimSigner) -> FakeResolver:
    resolver = FakeResolver(
        {
            "example.com": {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
            "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.com"]},
            "_dmarc.quarantine.example": {"TXT": ["v=DMARC1; p=quarantine"]},
            "quarantine.example": {"TXT": ["v=spf1 -all"]},
            "_dmarc.half.example": {"TXT": ["v=DMARC1; p=reject; pct=50"]},
            "mx.example.net": {"A": ["198.51.100.7"], "TXT": ["v=spf1 a -all"]},
        }
    )
    for key in signer.keys:
        resolver.add(f"{key.selector}._domainkey.{key.domain}", "TXT", dns_record(key.key))
    return resolver


def authenticate(
    resolver: FakeResolver,
    data: bytes,
    *,
    ip: str = "198.51.100.7",
    mail_from: str = "bounce@example.com",
    chunk: int = 0,
    sample: float = 0.0,
):
    auth = MessageAuthenticator(
        resolver,
        ip=ip,
        helo="mx.example.net",
        mail_from=mail_from,
        authserv_id="mx.correo.test",
        dmarc_sample=sample,
    )
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        auth.feed(data[i : i + step])
    return asyncio.run(auth.finish())


def test_spoofed_p_reject_is_rejected(keys: DkimSigner) -> None:
    verdict = authenticate(zone(keys), message())
    assert verdict.spf.result == "fail" and verdict.dkim == ()
    assert verdict.dmarc.status == "fail"
    assert verdict.action is Action.REJECT
    assert "example.com" in verdict.reject_text


@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_signed_message_passes(keys: DkimSigner, chunk: int) -> None:
    data = keys.sign(message()) + message()
    verdict = authenticate(zone(keys), data, chunk=chunk)
    assert [str(r.status) for r in verdict.dkim] == ["pass", "pass"]
    assert verdict.dmarc.status == "pass" and verdict.dmarc.dkim_aligned
    assert verdict.action is Action.ACCEPT
    header = verdict.header.decode()
    assert header.startswith("Authentication-Results: mx.correo.test;\r\n\t")
    assert "dkim=pass header.d=example.com" in header
    assert "dmarc=pass (p=reject dis=none) header.from=example.com" in header
    assert "spf=fail" in header and "arc=none" in header
    assert header.endswith("\r\n")


def test_spf_alone_passes_dmarc(keys: DkimSigner) -> None:
    verdict = authenticate(zone(keys), message(), ip="192.0.2.9")
    assert verdict.spf.result == "pass" and verdict.dmarc.spf_aligned
    assert verdict.action is Action.ACCEPT


def test_quarantine_goes_to_junk(keys: DkimSigner) -> None:
    verdict = authenticate(
        zone(keys), message("x@quarantine.example"), mail_from="x@quarantine.example"
    )
    assert verdict.action is Action.JUNK


def test_pct_sampled_out_reject_becomes_junk(keys: DkimSigner) -> None:
    data = message("x@half.example")
    assert authenticate(zone(keys), data, sample=0.2).action is Action.REJECT
    assert authenticate(zone(keys), data, sample=0.8).action is Action.JUNK


def test_no_dmarc_record_accepts(keys: DkimSigner) -> None:
    verdict = authenticate(zone(keys), message("x@nodmarc.example"))
    assert verdict.dmarc.status == "none" and verdict.action is Action.ACCEPT


def test_two_from_fields_is_permerror_not_crash(keys: DkimSigner) -> None:
    verdict = authenticate(zone(keys), message(extra=b"From: eve@evil.example\r\n"))
    assert verdict.dmarc.status == "permerror" and verdict.action is Action.ACCEPT


def test_tampered_signed_body_is_rejected(keys: DkimSigner) -> None:
    data = keys.sign(message()) + message()
    verdict = authenticate(zone(keys), data.replace(b"see you", b"pay now"))
    assert [str(r.status) for r in verdict.dkim] == ["fail", "fail"]
    assert verdict.action is Action.REJECT


def test_header_only_message(keys: DkimSigner) -> None:
    verdict = authenticate(zone(keys), b"From: a@example.com\r\nSubject: x\r\n")
    assert verdict.action is Action.REJECT


def test_streaming_signer_matches_whole_signer(keys: DkimSigner) -> None:
    data = message()
    stream = keys.stream()
    for i in range(0, len(data), 3):
        stream.feed(data[i : i + 3])
    assert stream.finish(now=1000) == keys.sign(data, now=1000)


def test_format_and_strip_results() -> None:
    field = format_results("mx.example", [ResultItem("spf", "pass", (("smtp.mailfrom", "a b"),))])
    assert field == b'Authentication-Results: mx.example;\r\n\tspf=pass smtp.mailfrom="a b"\r\n'
    header = (
        b"Authentication-Results: MX.example; dkim=pass\r\n"
        b"Subject: x\r\n"
        b"Authentication-Results: (comment) mx.example 1;\r\n\tspf=pass\r\n"
        b"Authentication-Results: other.example; spf=pass\r\n"
    )
    assert strip_forged_results(header, "mx.example") == (
        b"Subject: x\r\nAuthentication-Results: other.example; spf=pass\r\n"
    )


def test_keys_on_disk(tmp_path: Path) -> None:
    files = FileKeyStore(tmp_path)
    first = ensure_domain_keys(files, "Example.ORG")
    assert sorted(k.selector[:2] for k in first) == ["ed", "rs"]
    for key in first:
        assert stat.S_IMODE(os.stat(key.path).st_mode) == 0o600
    again = ensure_domain_keys(files, "example.org")  # idempotent
    assert [k.path for k in again] == [k.path for k in first]
    rotated = rotate_keys(files, "example.org")
    assert len(rotated) == 4
    assert sum(1 for k in rotated if k.retired) == 2
    assert len(load_signer(files, ["example.org"])["example.org"].keys) == 2
    assert dns_record(rotated[0].key).startswith("v=DKIM1; k=")


def test_signing_key_algorithms(keys: DkimSigner) -> None:
    assert sorted(k.algorithm for k in keys.keys) == ["ed25519-sha256", "rsa-sha256"]
    assert all(isinstance(k, SigningKey) for k in keys.keys)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_fuzz_authenticator(data: bytes, chunk: int) -> None:
    """Invariant: any bytes yield a verdict (never an exception), whatever the chunking."""
    resolver = FakeResolver({})
    whole = authenticate(resolver, data)
    pieces = authenticate(resolver, data, chunk=chunk)
    assert whole.action in set(Action)
    assert whole.header == pieces.header
