"""DANE (RFC 7672): TLSA matching against certificate chains, the DNSSEC chain of
lookups that decides which MX hosts DANE applies to, and how routes change."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from correo.dane import check_chain, dane_hosts, record_for, usable
from correo.dns import FakeResolver, TlsaRecord
from correo.mtasts.policy import Policy
from correo.queue.routing import NextHop, Route, apply_dane, apply_sts, resolve_route
from tests.pki import TestCA

DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def _der(path: Path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(DER)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TestCA, bytes, bytes]:
    """A CA, and a leaf for mx.b.test it issued (DER)."""
    ca = TestCA(tmp_path / "ca")
    ca.issue("mx.b.test", tmp_path / "leaf.pem", tmp_path / "leaf.key")
    return ca, _der(tmp_path / "leaf.pem"), ca.cert.public_bytes(DER)


def _spki(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_key().public_bytes(DER, SPKI)


def test_dane_ee_matches_key_or_certificate_by_any_matching_type(
    pki: tuple[TestCA, bytes, bytes],
) -> None:
    _, leaf, _ = pki
    records = [
        TlsaRecord(3, 1, 1, hashlib.sha256(_spki(leaf)).digest()),
        TlsaRecord(3, 1, 2, hashlib.sha512(_spki(leaf)).digest()),
        TlsaRecord(3, 0, 1, hashlib.sha256(leaf).digest()),
        TlsaRecord(3, 0, 0, leaf),
        TlsaRecord(3, 1, 0, _spki(leaf)),
    ]
    for record in records:
        assert check_chain([record], [leaf], ["mx.b.test"]) is None, record.text()[:10]
    assert record_for(leaf) == records[0]


def test_dane_ee_ignores_names_and_dates(tmp_path: Path) -> None:
    """RFC 7672 §3.1.1: an expired self-signed certificate for another name is fine."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elsewhere.test")])
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(past)
        .not_valid_after(past + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    ).public_bytes(DER)
    assert check_chain([record_for(cert)], [cert], ["mx.b.test"]) is None


def test_a_mismatch_says_so(pki: tuple[TestCA, bytes, bytes]) -> None:
    _, leaf, ca = pki
    wrong = TlsaRecord(3, 1, 1, hashlib.sha256(b"another key").digest())
    problem = check_chain([wrong], [leaf, ca], ["mx.b.test"])
    assert problem is not None and "no TLSA record (DANE-EE) matches" in problem
    assert check_chain([wrong], [], ["mx.b.test"]) == "the server sent no certificate"


def test_dane_ta_validates_the_chain_to_the_anchor_the_server_sent(
    pki: tuple[TestCA, bytes, bytes],
) -> None:
    _, leaf, ca = pki
    ta = TlsaRecord(2, 1, 1, hashlib.sha256(_spki(ca)).digest())
    assert check_chain([ta], [leaf, ca], ["mx.b.test", "b.test"]) is None
    # RFC 7672 §3.2.2: the recipient domain is a reference identifier too
    assert check_chain([ta], [leaf, ca], ["mx-other.test", "mx.b.test"]) is None
    # neither name in the certificate: refused
    problem = check_chain([ta], [leaf, ca], ["mx.c.test", "c.test"])
    assert problem is not None and "DANE-TA" in problem and "subjectAltName" in problem
    # the anchor must be sent by the server (§3.1.2), unless the record holds it whole
    assert check_chain([ta], [leaf], ["mx.b.test"]) is not None
    assert check_chain([TlsaRecord(2, 0, 0, ca)], [leaf], ["mx.b.test"]) is None


def test_dane_ta_rejects_a_leaf_the_anchor_did_not_sign(tmp_path: Path) -> None:
    ours, theirs = TestCA(tmp_path / "ours"), TestCA(tmp_path / "theirs")
    theirs.issue("mx.b.test", tmp_path / "leaf.pem", tmp_path / "leaf.key")
    leaf, anchor = _der(tmp_path / "leaf.pem"), ours.cert.public_bytes(DER)
    ta = TlsaRecord(2, 0, 1, hashlib.sha256(anchor).digest())
    assert check_chain([ta], [leaf, anchor], ["mx.b.test"]) is not None


def test_unusable_records() -> None:
    """RFC 7672 §3.1.3: PKIX usages are unusable for SMTP; so are bad digests."""
    digest = bytes(32)
    records = [
        TlsaRecord(0, 1, 1, digest),
        TlsaRecord(1, 1, 1, digest),
        TlsaRecord(3, 2, 1, digest),
        TlsaRecord(3, 1, 3, digest),
        TlsaRecord(3, 1, 1, digest[:31]),
        TlsaRecord(3, 1, 2, digest),  # SHA-512 needs 64 octets
        TlsaRecord(3, 1, 0, b""),
        TlsaRecord(2, 0, 1, digest),
        TlsaRecord(3, 1, 1, digest),
    ]
    assert usable(records) == records[-2:]


# -- which hosts DANE applies to (RFC 7672 §2.2) --------------------------------------

_TLSA = (3, 1, 1, "ab" * 32)


def _zone(signed: tuple[str, ...]) -> FakeResolver:
    return FakeResolver(
        {
            "b.test": {"MX": [(10, "mx.b.test"), (20, "mx2.b.test")]},
            "mx.b.test": {"A": ["192.0.2.1"]},
            "mx2.b.test": {"A": ["192.0.2.2"]},
            "_25._tcp.mx.b.test": {"TLSA": [_TLSA, (0, 0, 1, "00")]},
            "_25._tcp.mx2.b.test": {"TLSA:TIMEOUT": []},
            "c.test": {"A": ["192.0.2.3"]},
            "_25._tcp.c.test": {"TLSA": [_TLSA]},
        },
        signed=signed,
    )


_ALL = ("b.test", "mx.b.test", "mx2.b.test", "_25._tcp.mx.b.test", "_25._tcp.mx2.b.test")


def test_tlsa_of_a_host_along_a_validated_chain() -> None:
    hosts = asyncio.run(dane_hosts(_zone(_ALL), "b.test"))
    assert set(hosts) == {"mx.b.test", "mx2.b.test"}
    mx = hosts["mx.b.test"]
    assert [r.text() for r in mx.records] == ["3 1 1 " + "ab" * 32]
    assert len(mx.published) == 2 and not mx.error
    assert "TLSA lookup for _25._tcp.mx2.b.test failed" in hosts["mx2.b.test"].error


@pytest.mark.parametrize(
    "insecure", ["b.test", "mx.b.test", "_25._tcp.mx.b.test"], ids=["mx", "address", "tlsa"]
)
def test_an_insecure_link_means_no_dane(insecure: str) -> None:
    signed = tuple(n for n in _ALL if n != insecure)
    hosts = asyncio.run(dane_hosts(_zone(signed), "b.test"))
    assert "mx.b.test" not in hosts


def test_implicit_mx_is_its_own_tlsa_base() -> None:
    resolver = _zone(("c.test", "_25._tcp.c.test"))
    resolver.add("c.test", "TXT", "no MX here")  # the name exists: MX is NODATA
    hosts = asyncio.run(dane_hosts(resolver, "c.test"))
    assert list(hosts) == ["c.test"]


def test_routes_under_dane_and_mta_sts() -> None:
    resolver = _zone(_ALL)
    hosts = asyncio.run(dane_hosts(resolver, "b.test"))
    route = asyncio.run(resolve_route(NextHop(), "b.test", resolver))
    routed = apply_dane(route, hosts, "b.test")
    # mx2's TLSA lookup failed: it is left out; mx must do TLS and match its record
    assert [t.hostname for t in routed.targets] == ["mx.b.test"]
    (mx,) = routed.targets
    assert mx.dane and mx.tls == "required" and mx.names == ("mx.b.test", "b.test")
    # an MTA-STS policy naming another host does not take a DANE host out (RFC 8461 §2)
    sts = Policy(mode="enforce", mx=("mx3.b.test",), max_age=86400)
    assert apply_sts(routed, sts).targets == routed.targets
    # every host unusable: wait, 4.7.5
    only_failed = {"mx.b.test": hosts["mx2.b.test"], "mx2.b.test": hosts["mx2.b.test"]}
    failed = apply_dane(route, only_failed, "b.test")
    assert failed.error is not None and failed.error.status == "4.7.5"
    assert apply_dane(Route(route.targets), {}, "b.test") == Route(route.targets)


def test_the_dnspython_resolver_reports_the_ad_bit() -> None:
    """Over a real socket: AD on answers and on denials for signed names, and only when
    ``dnssec`` is on (an AD bit nobody asked to trust means nothing)."""
    from correo.dns import DnsNotFound, DnsPythonResolver
    from tests.server.dnsserver import DnsServer

    tlsa = "3 1 1 " + "ab" * 32
    zone = {"mx.b.test": {"A": ["192.0.2.1"]}, "_25._tcp.mx.b.test": {"TLSA": [tlsa]}}
    with DnsServer(zone) as server:
        server.signed |= {"mx.b.test", "_25._tcp.mx.b.test", "gone.b.test"}

        async def run() -> None:
            on = DnsPythonResolver([server.address], dnssec=True)
            off = DnsPythonResolver([server.address])
            assert [r.text() for r in await on.tlsa("_25._tcp.mx.b.test")] == [tlsa]
            assert await on.secure("_25._tcp.mx.b.test", "TLSA")
            assert await on.secure("mx.b.test", "A")
            assert await on.secure("mx.b.test", "AAAA")  # a validated NODATA
            assert await on.secure("gone.b.test", "A")  # a validated NXDOMAIN
            with pytest.raises(DnsNotFound):
                await on.a("gone.b.test")
            server.signed.clear()
            assert not await on.secure("mx.b.test", "MX")
            assert not await off.secure("mx.b.test", "A")

        asyncio.run(run())
