"""SPF (RFC 7208) beyond the OpenSPF suite: lookup budgets counted on the fake resolver,
the HELO identity, macros, and a fuzz test of the record parser."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.dns import FakeResolver
from correo.mailauth.spf import SpfResult, check_host, check_spf


def host(
    zone: dict[str, dict[str, list[object]]],
    ip: str = "192.0.2.1",
    domain: str = "example.com",
    sender: str = "user@example.com",
):
    resolver = FakeResolver(zone)
    return asyncio.run(check_host(resolver, ip, domain, sender, "mail.example.com")), resolver


def test_ten_dns_mechanisms_and_no_more() -> None:
    zone: dict[str, dict[str, list[object]]] = {
        "example.com": {
            "TXT": [
                "v=spf1 "
                + " ".join(f"a:h{i}.example.com" for i in range(10))
                + " ip4:192.0.2.1 -all"
            ]
        },
    }
    for i in range(10):
        zone[f"h{i}.example.com"] = {"A": ["198.51.100.1"]}
    outcome, resolver = host(zone)
    assert outcome.result is SpfResult.PASS
    zone["example.com"] = {
        "TXT": [
            "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(11)) + " ip4:192.0.2.1 -all"
        ]
    }
    zone["h10.example.com"] = {"A": ["198.51.100.1"]}
    outcome, resolver = host(zone)
    assert outcome.result is SpfResult.PERMERROR
    assert len([q for q in resolver.queries if q[1] == "A"]) == 10  # stopped at the limit


def test_void_lookup_limit() -> None:
    zone: dict[str, dict[str, list[object]]] = {
        "example.com": {"TXT": ["v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all"]},
    }
    outcome, _ = host(zone)
    assert outcome.result is SpfResult.PERMERROR and "void" in outcome.problem


def test_mx_name_limit() -> None:
    zone: dict[str, dict[str, list[object]]] = {
        "example.com": {
            "TXT": ["v=spf1 mx -all"],
            "MX": [(i, f"mx{i}.example.com") for i in range(11)],
        },
    }
    outcome, _ = host(zone)
    assert outcome.result is SpfResult.PERMERROR


def test_include_loop_is_permerror() -> None:
    zone: dict[str, dict[str, list[object]]] = {
        "example.com": {"TXT": ["v=spf1 include:example.net -all"]},
        "example.net": {"TXT": ["v=spf1 include:example.com -all"]},
    }
    outcome, _ = host(zone)
    assert outcome.result is SpfResult.PERMERROR


@pytest.mark.parametrize(
    ("helo", "mail_from", "expected_helo", "expected"),
    [
        ("mail.example.com", "user@example.com", "pass", "fail"),
        ("mail.example.com", "", "pass", "pass"),  # null sender: the HELO identity (§2.4)
        ("[192.0.2.1]", "", "none", "none"),
        ("localhost", "user@example.com", "none", "fail"),
    ],
)
def test_helo_identity(helo: str, mail_from: str, expected_helo: str, expected: str) -> None:
    zone: dict[str, dict[str, list[object]]] = {
        "mail.example.com": {"TXT": ["v=spf1 a -all"], "A": ["192.0.2.1"]},
        "example.com": {"TXT": ["v=spf1 -all"]},
    }
    verdict = asyncio.run(check_spf(FakeResolver(zone), "192.0.2.1", mail_from, helo))
    assert verdict.helo.result == expected_helo
    assert verdict.result == expected


def test_ipv6_macro_and_exists() -> None:
    name = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    zone: dict[str, dict[str, list[object]]] = {
        "example.com": {"TXT": ["v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"]},
        name: {"A": ["127.0.0.2"]},
    }
    outcome, _ = host(zone, ip="2001:db8::1")
    assert outcome.result is SpfResult.PASS


def test_evaluation_speed() -> None:
    zone: dict[str, dict[str, list[object]]] = {
        "example.com": {
            "TXT": ["v=spf1 include:_spf.example.com mx a -all"],
            "MX": [(10, "mx.example.com")],
            "A": ["198.51.100.9"],
        },
        "_spf.example.com": {"TXT": ["v=spf1 ip4:203.0.113.0/24 ip6:2001:db8::/32 ~all"]},
        "mx.example.com": {"A": ["198.51.100.10"]},
    }
    resolver = FakeResolver(zone)
    started = time.thread_time()  # CPU time: a loaded machine's waits do not count
    for _ in range(200):
        outcome = asyncio.run(check_host(resolver, "192.0.2.1", "example.com", "u@example.com"))
    per_check = (time.thread_time() - started) / 200
    assert outcome.result is SpfResult.FAIL
    assert per_check < 0.01


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=120))
def test_fuzz_record(tail: str) -> None:
    """Invariant: any record text yields one of the seven results, never an exception."""
    zone: dict[str, dict[str, list[object]]] = {"example.com": {"TXT": ["v=spf1 " + tail]}}
    outcome, _ = host(zone)
    assert outcome.result in set(SpfResult)
