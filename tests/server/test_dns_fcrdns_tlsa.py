"""``correo dns check``'s forward-confirmed reverse DNS of the outbound source address,
and the DANE TLSA record ``correo dns`` prints for the server's own certificate."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import DOMAIN, correo, make_data_dir
from tests.server.dnsserver import DnsServer

pytestmark = pytest.mark.timeout(120)

SOURCE = "127.0.0.2"
PTR = "2.0.0.127.in-addr.arpa"


def _data(tmp_path: Path, server: DnsServer) -> Path:
    data = tmp_path / "data"
    make_data_dir(data, {"nameservers": f'["{server.address}"]'})
    with (data / "correo.toml").open("a") as fh:
        fh.write(f'\n[outbound]\nsource_ipv4 = "{SOURCE}"\n')
    return data


def test_fcrdns_of_the_source_address(tmp_path: Path) -> None:
    with DnsServer({}) as server:
        data = _data(tmp_path, server)
        server.zone[PTR] = {"PTR": ["mail.example.test."]}
        server.zone["mail.example.test"] = {"A": [SOURCE]}
        out = correo(data, "dns", "check", DOMAIN).stdout
        assert f"ok      FCrDNS {SOURCE}  ([outbound] source_ipv4)\n" in out, out
        assert f"        {SOURCE} -> PTR mail.example.test -> {SOURCE}\n" in out
        assert (PTR, "PTR") in server.queries and ("mail.example.test", "A") in server.queries

        server.zone["mail.example.test"] = {"A": ["192.0.2.9"]}  # forward points elsewhere
        result = correo(data, "dns", "check", DOMAIN)
        assert result.returncode == 1
        assert f"WRONG   FCrDNS {SOURCE}  ([outbound] source_ipv4)\n" in result.stdout
        assert (
            f"PTR names mail.example.test (192.0.2.9): none resolves back to {SOURCE}"
            in result.stdout
        )

        del server.zone[PTR]
        result = correo(data, "dns", "check", DOMAIN)
        assert result.returncode == 1
        assert "no PTR record (DnsNotFound)" in result.stdout


def test_dns_prints_the_tlsa_record_of_our_key(tmp_path: Path) -> None:
    with DnsServer({}) as server:
        data = _data(tmp_path, server)
        result = correo(data, "dns", DOMAIN)
        assert result.returncode == 0, result.stderr
        cert = x509.load_pem_x509_certificate((data / "tls" / "cert.pem").read_bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        want = f"_25._tcp.localhost.\t3600\tIN\tTLSA\t3 1 1 {hashlib.sha256(spki).hexdigest()}"
        assert want in result.stdout.splitlines(), result.stdout
