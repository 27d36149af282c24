"""``correo dns check`` run as a user would, against a local authoritative DNS server."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.cli.dns_cmds import expected_records
from correo.web.site import mta_sts_id, mta_sts_policy
from tests.conftest import DOMAIN, correo, make_data_dir
from tests.server.dnsserver import DnsServer, Zone

pytestmark = pytest.mark.timeout(120)

HOST = "localhost"  # make_data_dir's hostname


def published_zone(data: Path) -> Zone:
    """The zone an administrator writes by hand; only the DKIM key is read from disk."""
    zone: Zone = {
        DOMAIN: {"MX": [f"10 {HOST}"], "TXT": ["v=spf1 mx -all"]},
        HOST: {"A": ["127.0.0.1"]},
        f"_dmarc.{DOMAIN}": {
            "TXT": [f"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:postmaster@{DOMAIN}"]
        },
        f"_mta-sts.{DOMAIN}": {"TXT": [f"v=STSv1; id={mta_sts_id(mta_sts_policy(HOST))}"]},
        f"mta-sts.{DOMAIN}": {"CNAME": [HOST]},
        f"_smtp._tls.{DOMAIN}": {"TXT": [f"v=TLSRPTv1; rua=mailto:postmaster@{DOMAIN}"]},
        f"_submissions._tcp.{DOMAIN}": {"SRV": [f"0 1 465 {HOST}"]},
        f"_submission._tcp.{DOMAIN}": {"SRV": [f"1 1 587 {HOST}."]},
        f"_imaps._tcp.{DOMAIN}": {"SRV": [f"0 1 993 {HOST}"]},
        f"_imap._tcp.{DOMAIN}": {"SRV": ["0 0 0 ."]},
        f"_pop3s._tcp.{DOMAIN}": {"SRV": [f"0 1 995 {HOST}"]},
    }
    for record in expected_records(data, DOMAIN, HOST):
        if "._domainkey." in record.name:
            zone[record.name] = {"TXT": [record.value]}
    return zone


def test_dns_check_verifies_srv_and_mta_sts_records(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with DnsServer({}) as server:
        make_data_dir(data, {"nameservers": f'["{server.address}"]'})
        server.zone.update(published_zone(data))

        result = correo(data, "dns", "check", DOMAIN)
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert not [line for line in lines if line.startswith("check")]  # nothing by hand
        for name in ("_submissions", "_submission", "_imaps", "_imap", "_pop3s"):
            assert f"ok      SRV   {name}._tcp.{DOMAIN}" in lines
        assert f"ok      CNAME mta-sts.{DOMAIN}" in lines
        assert f"ok      TXT   _mta-sts.{DOMAIN}" in lines
        assert ("_imaps._tcp.example.test", "SRV") in server.queries
        assert (f"mta-sts.{DOMAIN}", "CNAME") in server.queries

        server.zone[f"_imaps._tcp.{DOMAIN}"] = {"SRV": ["0 1 143 localhost"]}
        server.zone[f"mta-sts.{DOMAIN}"] = {"CNAME": ["elsewhere.test"]}
        del server.zone[f"_pop3s._tcp.{DOMAIN}"]
        result = correo(data, "dns", "check", DOMAIN)
        assert result.returncode == 1
        out = result.stdout
        assert f"WRONG   SRV   _imaps._tcp.{DOMAIN}\n        want: 0 1 993 localhost.\n" in out
        assert "        have: 0 1 143 localhost.\n" in out
        assert f"WRONG   CNAME mta-sts.{DOMAIN}\n" in out
        assert "        have: CNAME elsewhere.test.\n" in out
        assert f"MISSING SRV   _pop3s._tcp.{DOMAIN}\n" in out
        total = len(expected_records(data, DOMAIN, HOST))
        assert out.rstrip().endswith(f"-- {total - 3} of {total} records as expected")
