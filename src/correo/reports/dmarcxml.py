"""DMARC aggregate reports as XML (RFC 7489 §7.2, the schema of its appendix C).

:func:`build_report` writes ours from tallied rows; :func:`parse_report` reads one a
receiver sent us, into a bounded plain dictionary.  Parsing is hostile-input safe: no
DTD (so no entity expansion, RFC 7489 §12 and the "billion laughs"), a depth and an
element budget, and every kept string cut to a bounded length.  Pure: bytes in, data out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

__all__ = [
    "DMARC_KIND",
    "DmarcRow",
    "PolicyPublished",
    "ReportError",
    "build_report",
    "dmarc_key",
    "parse_report",
]

DMARC_KIND = "dmarc"

#: Bounds on a received report (beyond its decompressed size, checked by the caller).
MAX_DEPTH = 16
MAX_ELEMENTS = 500_000
MAX_RECORDS = 10_000
MAX_TEXT = 255
#: Characters of text kept over all records: each of their 127 fields may hold 255, and
#: 15 MB of XML made 46 MB of JSON to store; past this the report is kept truncated.
MAX_KEPT = 2 * 1024 * 1024
#: Attributes one tag may carry (the schema uses none but namespace declarations): expat
#: hands a tag's attributes over in one call that holds the GIL, and 1.5 million of them
#: in one 16 MB tag held it for five seconds, stalling the server's event loop.
MAX_ATTRIBUTES = 256
#: A tag name longer than this is refused: expat and the parser hold the GIL over a whole
#: name (a 16 MB one: a second).
MAX_NAME = 1024
#: What the tree keeps while it is read: the report reads five levels (feedback, record,
#: auth_results, dkim, domain), at most 20 dkim and 20 spf results of a record.
_READ_LEVELS = 5
_MAX_CHILDREN = 48
_MAX_ALIVE = 20_000
_HEAD = frozenset({"report_metadata", "policy_published"})  # the first of each always kept
#: What the parser is fed at a time. Expat 2.5 (before its reparse deferral) scans an
#: unfinished token again from its start at every feed: a 16 MB attribute value or
#: comment fed 16 KiB at a time (as iterparse reads) cost five seconds of CPU; it is no
#: more so that the elements parsed ahead of their events stay few.
_MAX_QUIET = 1024 * 1024
_FEED = 256 * 1024
_HOSTILE_TAG = re.compile(  # linear: names stop at "=", quoted values at "<"
    rb"</?[^\s<>/!?=][^\s<>/=]{%d}"  # a tag name longer than any the schema has
    rb"|<[^\s<>/!?]+(?:\s+[^\s=<>]+\s*=\s*(?:\"[^\"<]*\"|'[^'<]*')){%d}"
    % (MAX_NAME, MAX_ATTRIBUTES + 1)
)


class ReportError(ValueError):
    """The input is not a usable report; the text says why (for the log)."""


@dataclass(frozen=True, slots=True)
class DmarcRow:
    """One tallied ``<record>``: what was seen, and how often (``count``)."""

    source_ip: str
    count: int
    disposition: str  # none / quarantine / reject (§6.6.4, after pct)
    dkim: str  # pass / fail: aligned DKIM pass
    spf: str  # pass / fail: aligned SPF pass
    header_from: str
    envelope_to: str = ""
    envelope_from: str = ""
    reason: str = ""  # policy override (sampled_out)
    dkim_results: tuple[tuple[str, str, str], ...] = ()  # (domain, selector, result)
    spf_result: tuple[str, str, str] = ("", "mfrom", "none")  # (domain, scope, result)


def dmarc_key(row: DmarcRow) -> str:
    """The tally key of a row (everything but its count), as stable JSON."""
    return json.dumps(
        [
            row.source_ip,
            row.disposition,
            row.dkim,
            row.spf,
            row.header_from,
            row.envelope_to,
            row.envelope_from,
            row.reason,
            [list(d) for d in row.dkim_results],
            list(row.spf_result),
        ]
    )


def row_from_key(key: str, count: int) -> DmarcRow:
    """The inverse of :func:`dmarc_key`."""
    ip, disp, dkim, spf, hfrom, eto, efrom, reason, dkims, spf_r = json.loads(key)
    return DmarcRow(
        ip,
        count,
        disp,
        dkim,
        spf,
        hfrom,
        eto,
        efrom,
        reason,
        tuple((str(a), str(b), str(c)) for a, b, c in dkims),
        (str(spf_r[0]), str(spf_r[1]), str(spf_r[2])),
    )


@dataclass(frozen=True, slots=True)
class PolicyPublished:
    """``<policy_published>`` (RFC 7489 appendix C): the record found at report time."""

    domain: str
    p: str
    sp: str
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"


def _text(parent: Element, name: str, value: object) -> Element:
    child = SubElement(parent, name)
    child.text = str(value)
    return child


def build_report(
    *,
    org_name: str,
    email: str,
    report_id: str,
    begin: int,
    end: int,
    policy: PolicyPublished,
    rows: Iterable[DmarcRow],
    extra_contact: str = "",
) -> bytes:
    """The XML document of one aggregate report (UTF-8, RFC 7489 appendix C)."""
    root = Element("feedback")
    _text(root, "version", "1.0")
    meta = SubElement(root, "report_metadata")
    _text(meta, "org_name", org_name)
    _text(meta, "email", email)
    if extra_contact:
        _text(meta, "extra_contact_info", extra_contact)
    _text(meta, "report_id", report_id)
    dates = SubElement(meta, "date_range")
    _text(dates, "begin", begin)
    _text(dates, "end", end)
    pub = SubElement(root, "policy_published")
    _text(pub, "domain", policy.domain)
    _text(pub, "adkim", policy.adkim)
    _text(pub, "aspf", policy.aspf)
    _text(pub, "p", policy.p)
    _text(pub, "sp", policy.sp)
    _text(pub, "pct", policy.pct)
    for r in rows:
        record = SubElement(root, "record")
        row = SubElement(record, "row")
        _text(row, "source_ip", r.source_ip)
        _text(row, "count", r.count)
        evaluated = SubElement(row, "policy_evaluated")
        _text(evaluated, "disposition", r.disposition)
        _text(evaluated, "dkim", r.dkim)
        _text(evaluated, "spf", r.spf)
        if r.reason:
            reason = SubElement(evaluated, "reason")
            _text(reason, "type", r.reason)
        ids = SubElement(record, "identifiers")
        if r.envelope_to:
            _text(ids, "envelope_to", r.envelope_to)
        _text(ids, "header_from", r.header_from)
        auth = SubElement(record, "auth_results")
        for domain, selector, result in r.dkim_results:
            dkim = SubElement(auth, "dkim")
            _text(dkim, "domain", domain)
            if selector:
                _text(dkim, "selector", selector)
            _text(dkim, "result", result)
        spf = SubElement(auth, "spf")
        _text(spf, "domain", r.spf_result[0])
        _text(spf, "scope", r.spf_result[1])
        _text(spf, "result", r.spf_result[2])
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return body


# -- reading -------------------------------------------------------------------------


def _cut(text: str | None) -> str:
    return (text or "").strip()[:MAX_TEXT]


def _int(text: str | None) -> int:
    try:
        value = int((text or "").strip())
    except ValueError:
        return 0
    return value if 0 <= value < 2**63 else 0


class _Pieces:
    """``data`` read in _FEED pieces whatever size iterparse asks for, and refused once
    _MAX_QUIET octets went by without an event: a token that long (a comment, an
    attribute value, a text) is scanned again from its start at every feed."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0
        self.quiet = 0  # octets read since the last event

    def read(self, _size: int = -1) -> bytes:
        if self.quiet > _MAX_QUIET:
            raise ReportError(f"XML token or text longer than {_MAX_QUIET} bytes")
        piece = bytes(self._data[self._at : self._at + _FEED])
        self._at += len(piece)
        self.quiet += len(piece)
        return piece


def _check_tags(data: bytes) -> None:
    """Refuse a tag the parser would take in one long GIL-holding step, searched a
    _FEED window at a time (so the search itself never holds it long either)."""
    for at in range(0, len(data), _FEED):
        end = min(len(data), at + _FEED + 64 * 1024)  # a tag begun in this window
        found = _HOSTILE_TAG.search(data, at, end)
        if found is not None and found.start() < at + _FEED:
            raise ReportError(
                f"XML tag with more than {MAX_ATTRIBUTES} attributes or a name longer"
                f" than {MAX_NAME}"
            )


def _tree(data: bytes, on_record: Callable[[Element], None]) -> Element:
    """Parse with the budget: no DTD or entities, bounded depth, element count, tag
    names and attributes per tag. Each ``<record>`` is handed to ``on_record`` as it
    ends and then dropped, and so is any element the report cannot use (past
    _MAX_CHILDREN of its parent, below _READ_LEVELS, past _MAX_ALIVE kept): half a
    million elements alive made each full garbage collection hold the GIL for 250 ms."""
    _check_tags(data)
    pieces = _Pieces(data)
    elements = 0
    alive = 0
    stack: list[tuple[Element, list[Element], list[int]]] = []  # kept children, size
    root: Element | None = None
    try:
        for event, elem in iterparse(
            pieces, events=("start", "end"), forbid_dtd=True, forbid_entities=True
        ):
            pieces.quiet = 0
            if event == "start":
                elements += 1
                alive += 1
                if root is None:
                    root = elem
                stack.append((elem, [], [1]))
                if len(stack) > MAX_DEPTH:
                    raise ReportError(f"XML nested deeper than {MAX_DEPTH}")
                if elements > MAX_ELEMENTS:
                    raise ReportError(f"XML has more than {MAX_ELEMENTS} elements")
                continue
            _, kept, size = stack.pop()
            elem[:] = kept  # its children the report can use, all others let go
            if not stack:
                continue  # the root
            parent, siblings, parent_size = stack[-1]
            name = _local(elem.tag) if len(stack) == 1 else ""
            record = name == "record"
            if record:
                on_record(elem)
            head = name in _HEAD and name not in {_local(e.tag) for e in siblings}
            if head or (
                not record
                and len(stack) < _READ_LEVELS
                and len(siblings) < _MAX_CHILDREN
                and alive <= _MAX_ALIVE
            ):
                siblings.append(elem)
                parent_size[0] += size[0]
            else:
                alive -= size[0]
            if len(parent) > 2 * _MAX_CHILDREN:
                del parent[:]  # the kept ones come back when the parent ends
    except ReportError:
        raise
    # LookupError: an unknown encoding in the XML declaration
    except (ParseError, DefusedXmlException, LookupError, ValueError) as exc:
        raise ReportError(f"not usable XML: {type(exc).__name__}: {exc}") from None
    if root is None:
        raise ReportError("empty XML")
    return root


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]  # namespaces (the RFC 7489bis schema has one) ignored


def _find(elem: Element | None, *path: str) -> Element | None:
    for name in path:
        if elem is None:
            return None
        elem = next((c for c in elem if _local(c.tag) == name), None)
    return elem


def _get(elem: Element | None, *path: str) -> str:
    found = _find(elem, *path)
    return _cut(found.text if found is not None else "")


def _all(elem: Element | None, name: str) -> list[Element]:
    return [] if elem is None else [c for c in elem if _local(c.tag) == name]


def _record(rec: Element) -> dict[str, Any]:
    row = _find(rec, "row")
    auth = _find(rec, "auth_results")
    return {
        "source_ip": _get(row, "source_ip"),
        "count": _int(_get(row, "count")),
        "disposition": _get(row, "policy_evaluated", "disposition"),
        "dkim": _get(row, "policy_evaluated", "dkim"),
        "spf": _get(row, "policy_evaluated", "spf"),
        "header_from": _get(rec, "identifiers", "header_from"),
        "envelope_from": _get(rec, "identifiers", "envelope_from"),
        "envelope_to": _get(rec, "identifiers", "envelope_to"),
        "dkim_results": [
            {k: _get(d, k) for k in ("domain", "selector", "result")}
            for d in _all(auth, "dkim")[:20]
        ],
        "spf_results": [
            {k: _get(s, k) for k in ("domain", "scope", "result")} for s in _all(auth, "spf")[:20]
        ],
    }


def _text_size(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    return 1


def parse_report(data: bytes) -> dict[str, Any]:
    """A received aggregate report (XML bytes) as a bounded dictionary; ReportError if
    it is not one.  Keys: org_name, email, report_id, begin, end, policy, records,
    and ``truncated`` when records were left out (past :data:`MAX_RECORDS`, or past
    :data:`MAX_KEPT` characters of their text)."""
    records: list[dict[str, Any]] = []
    seen = 0
    kept = 0  # characters of text in the records kept

    def take(rec: Element) -> None:
        nonlocal seen, kept
        seen += 1
        if seen <= MAX_RECORDS and kept <= MAX_KEPT:
            record = _record(rec)
            kept += _text_size(record)
            records.append(record)

    root = _tree(data, take)
    if _local(root.tag) != "feedback":
        raise ReportError(f"root element is <{_local(root.tag)[:40]}>, not <feedback>")
    meta = _find(root, "report_metadata")
    if meta is None:
        raise ReportError("no <report_metadata>")
    report_id = _get(meta, "report_id")
    org = _get(meta, "org_name")
    if not report_id or not org:
        raise ReportError("no <org_name> or <report_id>")
    pub = _find(root, "policy_published")
    policy = {name: _get(pub, name) for name in ("domain", "adkim", "aspf", "p", "sp", "pct", "fo")}
    if not policy["domain"]:
        raise ReportError("no <policy_published><domain>")
    out: dict[str, Any] = {
        "org_name": org,
        "email": _get(meta, "email"),
        "report_id": report_id,
        "begin": _int(_get(meta, "date_range", "begin")),
        "end": _int(_get(meta, "date_range", "end")),
        "policy": policy,
        "records": records,
    }
    if seen > len(records):
        out["truncated"] = True
    return out


def summary_counts(report: Mapping[str, Any]) -> tuple[int, int]:
    """(messages, of which failing DMARC) in a parsed report, for listings."""
    total = failed = 0
    for rec in report.get("records", ()):
        count = int(rec.get("count", 0))
        total += count
        if rec.get("dkim") != "pass" and rec.get("spf") != "pass":
            failed += count
    return total, failed
