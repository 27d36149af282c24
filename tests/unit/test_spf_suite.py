"""The OpenSPF RFC 7208 test suite (tests/data/spf) against correo's SPF evaluator.

Each scenario's ``zonedata`` is converted to a :class:`FakeResolver` zone with the suite's
conventions: SPF-type records double as TXT records unless the name has TXT records of its
own; ``TIMEOUT`` alone times out every type not listed before it; ``TYPE: TIMEOUT`` times out
one type; ``TYPE: NONE`` makes the name exist without that record; a CNAME serves its
target's records (one level, as the suite's reference driver does).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml  # a declared test dependency: a missing one must fail, not skip the suite

from correo.dns import FakeResolver
from correo.mailauth.spf import SpfResult, check_host

SUITE = Path(__file__).parent.parent / "data" / "spf" / "rfc7208-tests.yml"
TYPES = ("A", "AAAA", "MX", "TXT", "PTR")

# No case is skipped: every one of the suite's cases runs.
SKIP: dict[str, str] = {}
# Explanations compared without regard to case: the suite writes IPv6 nibbles of %{i} in
# upper case where RFC 7208 §7.3's own example writes them in lower case (DNS does not care).
CASELESS_EXPLANATION = {"v-macro-ip6"}


def _records(items: list[Any]) -> tuple[dict[str, list[object]], set[str]]:
    """One name's records by type, and the types that time out."""
    records: dict[str, list[object]] = {}
    spf: list[object] = []
    timeouts: set[str] = set()
    has_txt = any(isinstance(i, dict) and "TXT" in i for i in items)
    for item in items:
        if item == "TIMEOUT":
            timeouts |= {t for t in (*TYPES, "CNAME") if t not in records}
            continue
        for rtype, value in item.items():
            if value == "TIMEOUT":
                timeouts.add(rtype)
                continue
            if rtype in ("TXT", "SPF"):
                parts = [value] if isinstance(value, str) else list(value)
                text = "".join(parts).encode("utf-8", "surrogateescape")
                if value == "NONE":
                    continue  # the name exists; the record does not
                if rtype == "SPF":
                    spf.append(text)
                    continue
                records.setdefault("TXT", []).append(text)
            elif value == "NONE":
                continue
            elif rtype == "MX":
                records.setdefault("MX", []).append((int(value[0]), str(value[1])))
            else:
                records.setdefault(rtype, []).append(str(value))
    if not has_txt and spf:
        records.setdefault("TXT", []).extend(spf)
    return records, timeouts


def build_resolver(zonedata: dict[str, list[Any]]) -> FakeResolver:
    zone = {name.lower().rstrip("."): _records(items) for name, items in zonedata.items()}
    resolver = FakeResolver()
    for name, (records, timeouts) in zone.items():
        cname = records.pop("CNAME", None)
        if cname:
            target = str(cname[0]).lower().rstrip(".")
            t_records, t_timeouts = zone.get(target, ({}, set()))
            for rtype, values in t_records.items():
                if rtype != "CNAME":
                    records.setdefault(rtype, list(values))
            timeouts |= t_timeouts
        resolver.add(name, "CNAME_MARKER")  # the name exists even with no records
        for rtype, values in records.items():
            resolver.add(name, rtype, *values)
        for rtype in timeouts:
            resolver.add(name, f"{rtype}:TIMEOUT", True)
    return resolver


def _cases() -> list[Any]:
    cases = []
    for scenario in yaml.safe_load_all(SUITE.read_text(encoding="utf-8")):
        for name, case in scenario["tests"].items():
            marks = [pytest.mark.skip(reason=SKIP[name])] if name in SKIP else []
            cases.append(pytest.param(name, scenario["zonedata"], case, id=name, marks=marks))
    return cases


@pytest.mark.parametrize(("name", "zonedata", "case"), _cases())
def test_rfc7208_suite(name: str, zonedata: dict[str, list[Any]], case: dict[str, Any]) -> None:
    resolver = build_resolver(zonedata)
    helo = str(case["helo"])
    mail_from = str(case.get("mailfrom") or "")
    if mail_from:
        domain = mail_from.rpartition("@")[2]
        sender = mail_from
    else:
        domain, sender = helo, f"postmaster@{helo}"
    outcome = asyncio.run(check_host(resolver, str(case["host"]), domain, sender, helo))
    expected = case["result"]
    allowed = [expected] if isinstance(expected, str) else list(expected)
    assert outcome.result in [SpfResult(r) for r in allowed], (outcome, case.get("description"))
    if "explanation" in case and outcome.result is SpfResult.FAIL:
        got, want = outcome.explanation or "DEFAULT", str(case["explanation"])
        if name in CASELESS_EXPLANATION:
            got, want = got.lower(), want.lower()
        assert got == want


def test_suite_size() -> None:
    assert len(_cases()) >= 200
