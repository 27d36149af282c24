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

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
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


def _depth_exceeds(data: bytes, limit: int) -> bool:
    """Whether ``data`` nests deeper than ``limit`` (strings skipped); stops early."""
    depth = 0
    for c in _STRINGS.sub(b"", data).translate(None, _NOT_BRACKETS):
        depth += 1 if c in b"[{" else -1
        if depth > limit:
            return True
    return False


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
    if _depth_exceeds(data, MAX_DEPTH):
        raise ReportError(f"JSON nested deeper than {MAX_DEPTH}")
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
