"""``correo dns check`` record by record, against an in-memory zone (FakeResolver)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from correo.cli.dns_cmds import Record, check_domain, check_record, expected_records
from correo.dns import DnsNoData, DnsNotFound, DnsTempError, FakeResolver, SrvRecord
from correo.web.site import mta_sts_id, mta_sts_policy

HOST = "mail.example.org"
DOMAIN = "example.org"
STS_ID = mta_sts_id(mta_sts_policy(HOST))  # the policy correo serves names the id


def good_zone() -> dict[str, dict[str, list[object]]]:
    return {
        DOMAIN: {"MX": [(10, HOST)], "TXT": ["v=spf1 mx -all"]},
        HOST: {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]},
        f"_dmarc.{DOMAIN}": {"TXT": [f"v=DMARC1; p=reject; rua=mailto:dmarc-reports@{DOMAIN}"]},
        f"_mta-sts.{DOMAIN}": {"TXT": [f"v=STSv1; id={STS_ID}"]},
        f"mta-sts.{DOMAIN}": {"CNAME": [HOST]},
        f"_smtp._tls.{DOMAIN}": {"TXT": [f"v=TLSRPTv1; rua=mailto:tls-reports@{DOMAIN}"]},
        f"_submissions._tcp.{DOMAIN}": {"SRV": [(0, 1, 465, HOST)]},
        f"_submission._tcp.{DOMAIN}": {"SRV": [(1, 1, 587, HOST + ".")]},
        f"_imaps._tcp.{DOMAIN}": {"SRV": [(0, 1, 993, HOST)]},
        f"_imap._tcp.{DOMAIN}": {"SRV": [(1, 1, 143, HOST)]},
        f"_pop3s._tcp.{DOMAIN}": {"SRV": [(10, 1, 995, HOST)]},
        f"_pop3._tcp.{DOMAIN}": {"SRV": [(11, 1, 110, HOST)]},
    }


def run_check(zone: dict[str, dict[str, list[object]]], tmp_path: Path) -> dict[str, bool | None]:
    records = expected_records(tmp_path, DOMAIN, HOST)  # no DKIM keys in an empty folder
    results = asyncio.run(check_domain(FakeResolver(zone), records))
    return {f"{r.rtype} {r.name}": ok for r, ok, _ in results}


def test_fake_resolver_srv_and_cname() -> None:
    resolver = FakeResolver(
        {
            "_imaps._tcp.a.test": {"SRV": [(10, 5, 993, "B.a.test."), (0, 1, 993, "a.a.test")]},
            "_imap._tcp.a.test": {"SRV": [(0, 0, 0, ".")]},
            "alias.a.test": {"CNAME": ["Real.A.Test."]},
            "plain.a.test": {"A": ["192.0.2.1"]},
            "slow.a.test": {"TIMEOUT": []},
        }
    )

    async def run() -> None:
        assert await resolver.srv("_imaps._tcp.A.test.") == [
            SrvRecord(0, 1, 993, "a.a.test"),
            SrvRecord(10, 5, 993, "b.a.test"),
        ]
        assert await resolver.srv("_imap._tcp.a.test") == [SrvRecord(0, 0, 0, "")]
        assert await resolver.cname("alias.a.test") == "real.a.test"
        with pytest.raises(DnsNoData):
            await resolver.cname("plain.a.test")
        with pytest.raises(DnsNotFound):
            await resolver.srv("_pop3s._tcp.a.test")
        with pytest.raises(DnsTempError):
            await resolver.cname("slow.a.test")

    asyncio.run(run())
    assert ("alias.a.test", "CNAME") in resolver.queries


def test_a_correct_zone_checks_every_record(tmp_path: Path) -> None:
    verdicts = run_check(good_zone(), tmp_path)
    assert len(verdicts) == 12
    assert all(ok is True for ok in verdicts.values()), verdicts


def _without(name: str) -> dict[str, dict[str, list[object]]]:
    zone = good_zone()
    del zone[name]
    return zone


def _with(name: str, rtype: str, *values: object) -> dict[str, dict[str, list[object]]]:
    zone = good_zone()
    zone[name] = {rtype: list(values)}
    return zone


# (zone, the one record that must fail)
BAD_ZONES = [
    (_without(f"_submissions._tcp.{DOMAIN}"), f"SRV _submissions._tcp.{DOMAIN}"),
    (
        _with(f"_submission._tcp.{DOMAIN}", "SRV", (0, 1, 25, HOST)),
        f"SRV _submission._tcp.{DOMAIN}",
    ),
    (_with(f"_imaps._tcp.{DOMAIN}", "SRV", (0, 1, 993, "other.test")), f"SRV _imaps._tcp.{DOMAIN}"),
    (_with(f"_imaps._tcp.{DOMAIN}", "SRV", (0, 0, 0, ".")), f"SRV _imaps._tcp.{DOMAIN}"),
    (_with(f"_imap._tcp.{DOMAIN}", "SRV", (0, 0, 0, ".")), f"SRV _imap._tcp.{DOMAIN}"),
    (_without(f"_pop3._tcp.{DOMAIN}"), f"SRV _pop3._tcp.{DOMAIN}"),
    (_with(f"_pop3s._tcp.{DOMAIN}", "TIMEOUT"), f"SRV _pop3s._tcp.{DOMAIN}"),
    (_with(f"mta-sts.{DOMAIN}", "CNAME", "elsewhere.test"), f"CNAME mta-sts.{DOMAIN}"),
    (_without(f"mta-sts.{DOMAIN}"), f"CNAME mta-sts.{DOMAIN}"),
    (_with(f"mta-sts.{DOMAIN}", "A", "192.0.2.99"), f"CNAME mta-sts.{DOMAIN}"),
    (
        _with(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=1", "v=STSv1; id=2"),
        f"TXT _mta-sts.{DOMAIN}",
    ),
    (_with(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=not-alnum!"), f"TXT _mta-sts.{DOMAIN}"),
    (_with(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1"), f"TXT _mta-sts.{DOMAIN}"),
    # a stale id: senders would keep an old policy until it expires
    (_with(f"_mta-sts.{DOMAIN}", "TXT", "v=STSv1; id=20240101"), f"TXT _mta-sts.{DOMAIN}"),
]


@pytest.mark.parametrize(("zone", "failing"), BAD_ZONES)
def test_each_wrong_record_is_reported_alone(
    zone: dict[str, dict[str, list[object]]], failing: str, tmp_path: Path
) -> None:
    verdicts = run_check(zone, tmp_path)
    assert [k for k, ok in verdicts.items() if ok is not True] == [failing]
    assert verdicts[failing] is False


def test_mta_sts_host_with_our_addresses_instead_of_a_cname() -> None:
    zone = good_zone()
    zone[f"mta-sts.{DOMAIN}"] = {"A": ["192.0.2.10"], "AAAA": ["2001:db8::10"]}
    record = Record(f"mta-sts.{DOMAIN}", "CNAME", f"{HOST}.")
    ok, found = asyncio.run(check_record(FakeResolver(zone), record))
    assert ok is True
    assert found == "A/AAAA 192.0.2.10, 2001:db8::10"


def test_srv_findings_are_shown() -> None:
    zone = _with(f"_submission._tcp.{DOMAIN}", "SRV", (5, 0, 2525, HOST), (9, 0, 0, "."))
    record = Record(f"_submission._tcp.{DOMAIN}", "SRV", f"1 1 587 {HOST}.")
    ok, found = asyncio.run(check_record(FakeResolver(zone), record))
    assert ok is False
    assert found == f"5 0 2525 {HOST}., 9 0 0 ."
