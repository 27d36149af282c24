"""``correo dns check`` run as a user would, against a local authoritative DNS server."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.cli.dns_cmds import expected_records
from correo.web.site import autoconfig_xml, mta_sts_id, mta_sts_policy
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
            "TXT": [f"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc-reports@{DOMAIN}"]
        },
        f"_mta-sts.{DOMAIN}": {"TXT": [f"v=STSv1; id={mta_sts_id(mta_sts_policy(HOST))}"]},
        f"mta-sts.{DOMAIN}": {"CNAME": [HOST]},
        f"_smtp._tls.{DOMAIN}": {"TXT": [f"v=TLSRPTv1; rua=mailto:tls-reports@{DOMAIN}"]},
        f"_submissions._tcp.{DOMAIN}": {"SRV": [f"0 1 465 {HOST}"]},
        f"_submission._tcp.{DOMAIN}": {"SRV": [f"1 1 587 {HOST}."]},
        f"_imaps._tcp.{DOMAIN}": {"SRV": [f"0 1 993 {HOST}"]},
        f"_imap._tcp.{DOMAIN}": {"SRV": [f"1 1 143 {HOST}"]},
        f"_pop3s._tcp.{DOMAIN}": {"SRV": [f"10 1 995 {HOST}"]},
        f"_pop3._tcp.{DOMAIN}": {"SRV": [f"11 1 110 {HOST}"]},
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
        # Nothing by hand, except FCrDNS of the kernel's source address, which depends on
        # this machine's routes (test_dns_fcrdns_tlsa.py pins the address and checks it).
        by_hand = [line for line in lines if line.startswith("check")]
        assert not [line for line in by_hand if "FCrDNS" not in line], by_hand
        for name in ("_submissions", "_submission", "_imaps", "_imap", "_pop3s", "_pop3"):
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


def test_srv_records_follow_the_listeners_and_match_autoconfig(tmp_path: Path) -> None:
    """RFC 6186 / RFC 8314: a record per client service listened on, "." for the others,
    the same services and ports as the autoconfig document."""
    data = tmp_path / "data"
    make_data_dir(data, {"imap": '["127.0.0.1:2143"]', "pop3": "[]", "pop3s": "[]"})
    result = correo(data, "dns", DOMAIN)
    assert result.returncode == 0, result.stderr
    srv = {
        fields[0]: fields[4]
        for fields in (line.split("\t") for line in result.stdout.splitlines())
        if len(fields) == 5 and fields[3] == "SRV"
    }
    assert srv == {
        f"_submissions._tcp.{DOMAIN}.": f"0 1 465 {HOST}.",
        f"_submission._tcp.{DOMAIN}.": f"1 1 587 {HOST}.",
        f"_imaps._tcp.{DOMAIN}.": f"0 1 993 {HOST}.",
        f"_imap._tcp.{DOMAIN}.": f"1 1 2143 {HOST}.",
        f"_pop3s._tcp.{DOMAIN}.": "0 0 0 .",
        f"_pop3._tcp.{DOMAIN}.": "0 0 0 .",
    }
    ports = {"submissions": 465, "submission": 587, "imaps": 993, "imap": 2143}
    xml = autoconfig_xml(DOMAIN, HOST, ports).decode()
    for service, port in ports.items():
        assert f"<port>{port}</port>" in xml
        assert f"_{service}._tcp.{DOMAIN}." in srv
    assert 'type="pop3"' not in xml
