"""DMARC and TLS report intake under hostile documents (reports arrive by mail from
anyone): each case was a bug, its cost measured in CPU time of this thread (what the
parser holds the GIL for), never wall time.

* a zip member compressed with bzip2: 465 octets inflated to 400 MB in one step;
* a zip listing hundreds of thousands of members: all read into objects first;
* an XML tag with 1.5 million attributes: the GIL held five seconds in one call;
* a 16 MB comment or attribute value: expat scanned it again at every 16 KiB fed;
* half a million elements kept alive: each full garbage collection held the GIL;
* a TLS report of escaped quotes without the string's end: the string search restarted
  at every one (40 KB held the GIL 4.7 s); 16 MB of "[]," for json.loads: 1.6 s, 500 MB.
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import zipfile
from collections.abc import Callable

import pytest

from correo.reports.dmarcxml import (
    MAX_KEPT,
    MAX_RECORDS,
    DmarcRow,
    PolicyPublished,
    ReportError,
    build_report,
    parse_report,
)
from correo.reports.intake import IntakeLimits, decompress
from correo.reports.tlsjson import parse_tls_report

LIMITS = IntakeLimits()


def _cpu(call: Callable[[], object]) -> tuple[float, object]:
    start = time.thread_time()
    try:
        result: object = call()
    except ReportError as exc:
        result = exc
    return time.thread_time() - start, result


def _report(rows: int, head: bytes = b"") -> bytes:
    row = DmarcRow("192.0.2.1", 3, "none", "pass", "fail", "a.test", "b.test",
                   dkim_results=(("a.test", "s", "pass"),))  # fmt: skip
    xml = build_report(
        org_name="o",
        email="e@o.test",
        report_id="r1",
        begin=1,
        end=2,
        policy=PolicyPublished("a.test", "none", "none"),
        rows=[row] * rows,
    )
    return xml.replace(b"<feedback>", b"<feedback>" + head, 1)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_zip_member_other_than_deflate_is_refused_unread(method: int) -> None:
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=method) as archive,
        archive.open("r.xml", "w", force_zip64=True) as member,
    ):
        for _ in range(2):
            member.write(b"\0" * (1 << 24))  # 32 MB of zeros in a few dozen octets
    tracemalloc.start()
    try:
        cpu, got = _cpu(lambda: decompress(buf.getvalue(), LIMITS))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(got, ReportError) and "method" in str(got)
    assert peak < 4 * 1024 * 1024, peak
    assert cpu < 0.5


def test_a_zip_of_too_many_members_is_refused_before_zipfile_reads_them() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for i in range(1500):
            archive.writestr(f"{i}.txt", b"")
        archive.writestr("r.xml", _report(1))
    got = _cpu(lambda: decompress(buf.getvalue(), LIMITS))[1]
    assert isinstance(got, ReportError) and "members" in str(got)
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("notes.txt", b"x")
        archive.writestr("r.xml", _report(2))
    assert parse_report(decompress(good.getvalue(), LIMITS))["report_id"] == "r1"


@pytest.mark.parametrize(
    "head",
    [
        b"<x " + b" ".join(b'a%d=""' % i for i in range(400_000)) + b"/>",
        b"<x " + b" ".join(b'a%d=">"' % i for i in range(400_000)) + b"/>",
        b"<x " + b" ".join(b'xmlns:n%d="u"' % i for i in range(300_000)) + b"/>",
        b"<" + b"n" * 4_000_000 + b"/>",
    ],
    ids=["attributes", "attributes-with-gt", "namespaces", "long-name"],
)
def test_a_tag_the_parser_takes_in_one_step_is_refused_first(head: bytes) -> None:
    cpu, got = _cpu(lambda: parse_report(_report(1, head)))
    assert isinstance(got, ReportError) and "tag" in str(got), got
    assert cpu < 0.5, cpu  # before: 1.5 to 3 s, most of it in one call


@pytest.mark.parametrize(
    "head",
    [
        b"<!--" + b"c" * 12_000_000 + b"-->",
        b'<x a="' + b"v" * 12_000_000 + b'"/>',
        b"<?pi " + b"p" * 12_000_000 + b"?>",
        b"<x>" + b"t" * 12_000_000 + b"</x>",
    ],
    ids=["comment", "attribute-value", "instruction", "text"],
)
def test_a_long_token_is_refused_without_rescanning_it(head: bytes) -> None:
    cpu, got = _cpu(lambda: parse_report(_report(1, head)))
    assert isinstance(got, ReportError) and "longer than" in str(got), got
    assert cpu < 0.5, cpu  # before: about 3 s (the token scanned again per 16 KiB)


def _peak(elements: int) -> int:
    doc = _report(3, b"<junk>" + b"<a><b/></a>" * elements + b"</junk>" + b"<c/>" * elements)
    tracemalloc.start()
    try:
        assert len(parse_report(doc)["records"]) == 3
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_unused_elements_are_let_go_as_they_end() -> None:
    """Elements nobody reads, three times as many: about the same memory at the peak
    (what is parsed ahead of its events), where the whole tree grew with them."""
    small, large = _peak(15_000), _peak(45_000)
    assert large < 1.4 * small, (small, large)


def test_records_past_the_budget_still_give_the_first_ones() -> None:
    got = parse_report(_report(MAX_RECORDS + 5))
    assert len(got["records"]) == MAX_RECORDS and got["truncated"] is True
    first = got["records"][0]
    assert (first["source_ip"], first["count"], first["spf"]) == ("192.0.2.1", 3, "fail")
    assert first["dkim_results"] == [{"domain": "a.test", "selector": "s", "result": "pass"}]
    assert got["policy"]["domain"] == "a.test" and got["org_name"] == "o"


def _tls(policies: list[object]) -> bytes:
    return json.dumps(
        {
            "organization-name": "o",
            "report-id": "t1",
            "date-range": {
                "start-datetime": "2026-01-01T00:00:00Z",
                "end-datetime": "2026-01-02T00:00:00Z",
            },
            "policies": policies,
        }
    ).encode()


@pytest.mark.parametrize(
    "doc",
    [
        b'{"a": "' + b'\\"' * 20_000,  # no end to the string: each \" restarted the search
        b'["' + b'\\"' * 100_000 + b'", "' + b"\\\\" * 100_000,
        b"[" + b"[]," * 100_000 + b"[]]",
        b"[" + b'"",' * 150_000 + b'""]',
        b"[" + b"0," * 100_000 + b"0]",
        b"[" + b"0," * 400_000 + b"0]",
    ],
    ids=["escaped-quotes", "escapes", "arrays", "strings", "numbers", "large"],
)
def test_a_costly_tls_document_is_refused_before_json_loads(doc: bytes) -> None:
    cpu, got = _cpu(lambda: parse_tls_report(doc))
    assert isinstance(got, ReportError), got
    assert cpu < 0.3, cpu


def test_an_ordinary_tls_report_with_many_details_is_read() -> None:
    details = [{"result-type": "certificate-expired", "sending-mta-ip": f"192.0.2.{i % 250}",
                "failed-session-count": i} for i in range(2000)]  # fmt: skip
    doc = _tls([{"policy": {"policy-type": "sts", "policy-domain": "a.test",
                            "policy-string": ["version: STSv1"], "mx-host": ["mx.a.test"]},
                 "summary": {"total-successful-session-count": 7,
                             "total-failure-session-count": 2000},
                 "failure-details": details}])  # fmt: skip
    got = parse_tls_report(doc)
    (policy,) = got["policies"]
    assert policy["failed"] == 2000 and len(policy["failure-details"]) == 1000
    assert policy["failure-details"][1]["failed-session-count"] == 1
    assert parse_tls_report(_tls([{"policy": {"policy-domain": 'a"\\b'}}]))["report-id"] == "t1"


def test_the_text_kept_of_a_report_is_bounded() -> None:
    """Every field of every record full of non-ASCII text: 15 MB of XML made 46 MB of
    JSON to store; now the records past MAX_KEPT characters are left out (truncated)."""
    v = "é" * 255
    dkim = f"<dkim><domain>{v}</domain><selector>{v}</selector><result>{v}</result></dkim>"
    record = (
        f"<record><row><source_ip>{v}</source_ip><count>1</count><policy_evaluated>"
        f"<disposition>{v}</disposition><dkim>{v}</dkim><spf>{v}</spf></policy_evaluated>"
        f"</row><identifiers><header_from>{v}</header_from></identifiers>"
        f"<auth_results>{dkim * 20}</auth_results></record>"
    ).encode()
    doc = _report(0).replace(b"</feedback>", record * 400 + b"</feedback>")
    got = parse_report(doc)
    assert got["truncated"] is True and 0 < len(got["records"]) < 400
    assert len(json.dumps(got)) < 6 * MAX_KEPT + 1024 * 1024
