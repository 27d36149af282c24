"""DMARC and TLS reports end to end: two correo instances and a DNS server.

a.test (127.0.0.2) sends to b.test (127.0.0.3), which authenticates the mail (SPF and
DKIM pass, from the records published here) and counts its DMARC result; b.test answers,
so it also holds a TLS result for a.test.  ``reports flush`` on b.test then sends both
reports to a.test's report addresses, where they are parsed and listed.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import time

import pytest

from correo.config import load_config
from correo.directory.factory import open_directory
from correo.mailauth.keys import dns_record, load_domain_keys
from tests.conftest import correo
from tests.server.conftest_mta import DnsServer, Instance, message

pytestmark = pytest.mark.timeout(240)


def _publish(dns_server: DnsServer, inst: Instance) -> None:
    """SPF for the instance's address, its DKIM keys, DMARC and TLS-RPT with rua."""
    zone, domain = dns_server.zone, inst.domain
    zone[domain]["TXT"] = [f"v=spf1 ip4:{inst.ip} -all"]
    directory = open_directory(load_config(inst.data))
    try:
        for key in load_domain_keys(directory.dkim, domain):
            zone[f"{key.selector}._domainkey.{domain}"] = {"TXT": [dns_record(key.key)]}
    finally:
        directory.close()
    zone[f"_dmarc.{domain}"] = {"TXT": [f"v=DMARC1; p=reject; rua=mailto:dmarc-reports@{domain}"]}
    zone[f"_smtp._tls.{domain}"] = {"TXT": [f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}"]}


def _flush_until(inst: Instance, want: int, timeout: float = 60.0) -> None:
    """``reports flush`` until ``want`` reports went out (tallies are written just after
    the results they count, so the first flush may come before the last of them)."""
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < want:
        out = correo(inst.data, "reports", "flush")
        if out.returncode != 75:  # 75: the server's own run holds the job right now
            assert out.returncode == 0, out.stdout + out.stderr
            sent += int(re.search(r"reports sent: (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"only {sent} of {want} reports sent"
        if sent < want:
            time.sleep(0.5)


def _listed(inst: Instance, count: int, timeout: float = 60.0) -> list[list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        out = correo(inst.data, "reports", "list").stdout
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def _show(inst: Instance, report_id: str) -> dict[str, object]:
    out = correo(inst.data, "reports", "show", report_id)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout[out.stdout.index("{") :])  # type: ignore[no-any-return]


def test_dmarc_and_tls_reports_flow_back_to_the_sender(
    instances: object, dns_server: DnsServer
) -> None:
    a: Instance = instances("a.test", "127.0.0.2", start=False)  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3", start=False)  # type: ignore[operator]
    _publish(dns_server, a)
    _publish(dns_server, b)
    a.start()
    b.start()

    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "hello"))
    [got] = b.wait_mail("bob", 1, timeout=60)
    parsed = email.message_from_bytes(got, policy=email.policy.compat32)
    results = " ".join(parsed.get_all("Authentication-Results") or [])
    assert "spf=pass" in results and "smtp.mailfrom=alice@a.test" in results, results
    assert "dkim=pass" in results and "header.d=a.test" in results, results
    assert "dmarc=pass" in results, results

    b.submit("bob@b.test", ["alice@a.test"], message("bob@b.test", "alice@a.test", "reply"))
    assert len(a.wait_mail("alice", 1, timeout=60)) == 1

    # b.test reports a.test's message (DMARC) and its own session to a.test (TLS)
    _flush_until(b, 2)
    rows = _listed(a, 2)
    kinds = {row[1]: row for row in rows}
    assert set(kinds) == {"dmarc", "tlsrpt"}, rows
    assert all(row[4] == "a.test" and row[5] == "mx.b.test" for row in rows), rows
    dmarc = _show(a, kinds["dmarc"][0])
    [record] = dmarc["records"]  # type: ignore[index]
    assert (record["source_ip"], record["count"]) == ("127.0.0.2", 1)
    assert (record["dkim"], record["spf"], record["header_from"]) == ("pass", "pass", "a.test")
    assert record["envelope_to"] == "b.test"
    assert record["dkim_results"][0]["domain"] == "a.test"  # type: ignore[index]
    assert record["spf_results"] == [{"domain": "a.test", "scope": "mfrom", "result": "pass"}]
    assert dmarc["policy"]["p"] == "reject"  # type: ignore[index]
    tls = _show(a, kinds["tlsrpt"][0])
    [policy] = tls["policies"]  # type: ignore[index]
    assert policy["policy-domain"] == "a.test" and policy["successful"] >= 1
    assert policy["failed"] == 0
    # the reports came signed by b.test and passed DMARC at a.test
    accepted = [
        line for line in a.log_lines if "event=smtp.accepted" in line and "peer=127.0.0.3" in line
    ]
    reports = [line for line in accepted if "-reports@b.test" in line]
    assert len(reports) == 2 and all("dmarc=pass" in line for line in reports), accepted

    # reports are never counted themselves: a.test's report to b.test counts the reply only
    _flush_until(a, 1)
    rows_b = _listed(b, 1)
    dmarc_b = [row for row in rows_b if row[1] == "dmarc"]
    assert dmarc_b, rows_b
    records = _show(b, dmarc_b[0][0])["records"]
    assert sum(r["count"] for r in records) == 1, records  # type: ignore[union-attr]
