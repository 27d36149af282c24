"""SMTP TLS reports as JSON (RFC 8460 §4): ours built from tallies, theirs parsed.

Parsing is bounded: nesting is measured before ``json.loads`` runs (its recursion would
otherwise meet a hostile depth), lists and strings are cut, and only the fields of §4.4
are kept.  Pure: bytes in, data out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from correo.reports.dmarcxml import ReportError
from correo.store.api import ReportTally

__all__ = ["build_tls_report", "parse_tls_report", "tls_counts"]

MAX_DEPTH = 16
MAX_POLICIES = 1000
MAX_DETAILS = 1000
MAX_TEXT = 255
#: A TLS report is a few kilobytes (RFC 8460 §4.4). json.loads runs in C and holds the
#: GIL throughout: 16 MB of "[]," took 1.6 s (and 500 MB), so the document, its
#: containers and its values are bounded before it runs.
MAX_BYTES = 512 * 1024
MAX_CONTAINERS = 20_000
MAX_VALUES = 100_000

# one JSON string from its opening quote; possessive, so an unterminated one fails in
# one pass (a search for every string at once restarted at each escaped quote inside an
# unterminated one: 40 KB of \" held the GIL for 4.7 s)
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _stamp(when: float) -> str:
    """RFC 3339 date-time in UTC (RFC 8460 §4.4 ``start-datetime``)."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_tls_report(
    *,
    org_name: str,
    contact: str,
    report_id: str,
    begin: float,
    end: float,
    policy_domain: str,
    tallies: Iterable[ReportTally],
) -> bytes:
    """The JSON report for one policy domain (RFC 8460 §4.4) from its tallied sessions."""
    policies: dict[str, dict[str, Any]] = {}
    for t in tallies:
        key = json.loads(t.key)
        policy = dict(key["policy"])
        policy["policy-domain"] = policy_domain
        if not policy.get("policy-string"):
            policy.pop("policy-string", None)
        if not policy.get("mx-host"):
            policy.pop("mx-host", None)
        pkey = json.dumps(policy, sort_keys=True)
        entry = policies.setdefault(
            pkey,
            {
                "policy": policy,
                "summary": {"total-successful-session-count": 0, "total-failure-session-count": 0},
                "failure-details": [],
            },
        )
        if key["result-type"] == "success":
            entry["summary"]["total-successful-session-count"] += t.count
            continue
        entry["summary"]["total-failure-session-count"] += t.count
        detail: dict[str, Any] = {"result-type": key["result-type"]}
        detail.update(key.get("details", {}))
        detail["failed-session-count"] = t.count
        entry["failure-details"].append(detail)
    report = {
        "organization-name": org_name,
        "date-range": {"start-datetime": _stamp(begin), "end-datetime": _stamp(end)},
        "contact-info": contact,
        "report-id": report_id,
        "policies": [
            {k: v for k, v in p.items() if k != "failure-details" or v} for p in policies.values()
        ],
    }
    return json.dumps(report, indent=1).encode()


def _check_shape(data: bytes) -> None:
    """Refuse a document json.loads would spend long on, before it runs: too large,
    too many containers or values, nested deeper than MAX_DEPTH (strings skipped)."""
    if len(data) > MAX_BYTES:
        raise ReportError(f"JSON larger than {MAX_BYTES} bytes")
    parts = []
    strings = at = 0
    while (start := data.find(b'"', at)) >= 0:
        found = _STRING.match(data, start)
        if found is None:
            raise ReportError("not usable JSON: a string without its end")
        strings += 1
        if strings > MAX_VALUES:
            raise ReportError(f"JSON of more than {MAX_VALUES} values")
        parts.append(data[at:start])
        at = found.end()
    parts.append(data[at:])
    bare = b"".join(parts)
    brackets = bare.translate(None, _NOT_BRACKETS)
    depth = 0
    for c in brackets:
        depth += 1 if c in b"[{" else -1
        if depth > MAX_DEPTH:
            raise ReportError(f"JSON nested deeper than {MAX_DEPTH}")
    if len(brackets) > 2 * MAX_CONTAINERS:
        raise ReportError(f"JSON of more than {MAX_CONTAINERS} arrays and objects")
    if bare.count(b",") + strings > MAX_VALUES:
        raise ReportError(f"JSON of more than {MAX_VALUES} values")


def _cut(value: object) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int:
    return value if isinstance(value, int) and 0 <= value < 2**63 else 0


def _strings(value: object) -> list[str]:
    return [_cut(v) for v in value[:50]] if isinstance(value, list) else []


def parse_tls_report(data: bytes) -> dict[str, Any]:
    """A received TLS report (JSON bytes) as a bounded dictionary; ReportError if not."""
    _check_shape(data)
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"not usable JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ReportError("not a JSON object")
    dates = raw.get("date-range")
    dates = dates if isinstance(dates, dict) else {}
    report_id = _cut(raw.get("report-id"))
    org = _cut(raw.get("organization-name"))
    if not report_id or not org:
        raise ReportError("no organization-name or report-id")
    policies: list[dict[str, Any]] = []
    raw_policies = raw.get("policies")
    for item in raw_policies[:MAX_POLICIES] if isinstance(raw_policies, list) else ():
        if not isinstance(item, dict):
            continue
        pol = _dict(item.get("policy"))
        summ = _dict(item.get("summary"))
        details = item.get("failure-details")
        policies.append(
            {
                "policy-type": _cut(pol.get("policy-type")),
                "policy-domain": _cut(pol.get("policy-domain")),
                "policy-string": _strings(pol.get("policy-string")),
                "mx-host": _strings(pol.get("mx-host")),
                "successful": _count(summ.get("total-successful-session-count")),
                "failed": _count(summ.get("total-failure-session-count")),
                "failure-details": [
                    {
                        k: (_count(v) if k == "failed-session-count" else _cut(v))
                        for k, v in d.items()
                        if isinstance(k, str) and len(k) < 64
                    }
                    for d in (details[:MAX_DETAILS] if isinstance(details, list) else ())
                    if isinstance(d, dict) and len(d) < 32
                ],
            }
        )
    return {
        "organization-name": org,
        "contact-info": _cut(raw.get("contact-info")),
        "report-id": report_id,
        "start": _cut(dates.get("start-datetime")),
        "end": _cut(dates.get("end-datetime")),
        "policies": policies,
    }


def parse_stamp(text: str) -> float:
    """An RFC 3339 date-time as a Unix time (0.0 when unusable)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def tls_counts(report: Mapping[str, Any]) -> tuple[int, int]:
    """(successful, failed) sessions in a parsed report, for listings."""
    ok = sum(int(p.get("successful", 0)) for p in report.get("policies", ()))
    bad = sum(int(p.get("failed", 0)) for p in report.get("policies", ()))
    return ok, bad
