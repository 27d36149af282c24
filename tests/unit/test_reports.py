"""DMARC and TLS report formats: what we build parses back, and hostile input is refused
within bounds (zip bombs, entity expansion, deep nesting)."""

from __future__ import annotations

import gzip
import io
import json
import resource
import zipfile
import zlib
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from correo.reports.dmarcxml import (
    DmarcRow,
    PolicyPublished,
    ReportError,
    build_report,
    dmarc_key,
    parse_report,
    row_from_key,
)
from correo.reports.intake import IntakeLimits, decompress, extract_reports
from correo.reports.outbound import parse_rua
from correo.reports.tlsjson import build_tls_report, parse_tls_report
from correo.reports.tlsresults import TLS_KIND, TlsPolicy, TlsResults
from correo.store.api import ReportTally

ROW = DmarcRow(
    "192.0.2.1",
    3,
    "none",
    "pass",
    "fail",
    "a.test",
    "b.test",
    "a.test",
    "",
    (("a.test", "sel1", "pass"),),
    ("a.test", "mfrom", "softfail"),
)


def _dmarc_xml() -> bytes:
    return build_report(
        org_name="mx.b.test",
        email="postmaster@b.test",
        report_id="r-1",
        begin=1000,
        end=2000,
        policy=PolicyPublished("a.test", "reject", "reject"),
        rows=[ROW],
    )


def _mail(payload: bytes, subtype: str, filename: str) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "r@b.test"
    msg["To"] = "dmarc-reports@a.test"
    msg["Subject"] = "Report Domain: a.test"
    msg.set_content("report\r\n")
    msg.add_attachment(payload, maintype="application", subtype=subtype, filename=filename)
    return msg.as_bytes()


def test_dmarc_key_round_trips() -> None:
    assert row_from_key(dmarc_key(ROW), 3) == ROW


def test_built_dmarc_report_parses_back_from_gzip_zip_and_plain() -> None:
    xml = _dmarc_xml()
    assert b"<feedback>" in xml and b"<source_ip>192.0.2.1</source_ip>" in xml
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("b.test!a.test!1000!2000.xml", xml)
    for payload, subtype, name in (
        (gzip.compress(xml), "gzip", "r.xml.gz"),
        (zipped.getvalue(), "zip", "r.zip"),
        (xml, "xml", "r.xml"),
    ):
        reports, problems = extract_reports(_mail(payload, subtype, name), "dmarc", IntakeLimits())
        assert problems == [], (name, problems)
        [report] = reports
        assert (report.kind, report.org, report.report_id, report.domain) == (
            "dmarc",
            "mx.b.test",
            "r-1",
            "a.test",
        )
        data = json.loads(report.data)
        rec = data["records"][0]
        assert (rec["source_ip"], rec["count"], rec["dkim"], rec["spf"]) == (
            "192.0.2.1",
            3,
            "pass",
            "fail",
        )
        assert rec["dkim_results"] == [{"domain": "a.test", "selector": "sel1", "result": "pass"}]


def test_tls_report_round_trip() -> None:
    tallies = TlsResults.__new__(TlsResults)  # only the key format is wanted here
    seen: list[tuple[str, str, str]] = []

    class Buffer:
        def add(self, kind: str, domain: str, key: str, count: int = 1) -> None:
            seen.append((kind, domain, key))

    tallies.tallies = Buffer()  # type: ignore[assignment]
    policy = TlsPolicy("sts", ("version: STSv1", "mode: enforce"), ("mx.a.test",))
    tallies.record_tls_result("A.test.", "success", policy=policy)
    tallies.record_tls_result(
        "a.test", "certificate-expired", policy=policy, receiving_ip="192.0.2.9"
    )
    assert all(kind == TLS_KIND and domain == "a.test" for kind, domain, _ in seen)
    rows = [
        ReportTally(TLS_KIND, "a.test", key, n, 10.0, 20.0)
        for (_, _, key), n in zip(seen, (5, 2), strict=True)
    ]
    document = build_tls_report(
        org_name="mx.b.test",
        contact="postmaster@b.test",
        report_id="t-1",
        begin=10.0,
        end=86410.0,
        policy_domain="a.test",
        tallies=rows,
    )
    raw = json.loads(document)
    assert raw["date-range"] == {
        "start-datetime": "1970-01-01T00:00:10Z",
        "end-datetime": "1970-01-02T00:00:10Z",
    }
    [policy_entry] = raw["policies"]
    assert policy_entry["policy"]["policy-domain"] == "a.test"
    assert policy_entry["summary"] == {
        "total-successful-session-count": 5,
        "total-failure-session-count": 2,
    }
    assert policy_entry["failure-details"][0]["result-type"] == "certificate-expired"
    assert policy_entry["failure-details"][0]["receiving-ip"] == "192.0.2.9"
    parsed = parse_tls_report(document)
    assert parsed["policies"][0]["successful"] == 5 and parsed["policies"][0]["failed"] == 2
    mail = _mail(gzip.compress(document), "tlsrpt+gzip", "b!a.test!10!86410.json.gz")
    [report], problems = extract_reports(mail, "tlsrpt", IntakeLimits())
    assert problems == [] and report.domain == "a.test" and report.report_id == "t-1"


def _gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes gzip'd, made a MiB at a time (so making it costs no memory)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    return b"".join(c.compress(chunk) for _ in range(size // len(chunk))) + c.flush()


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_gzip_bomb_is_refused_with_bounded_memory() -> None:
    bomb = _gzip_bomb(512 * 1024 * 1024)  # 512 MiB in ~0.5 MiB
    before = _peak_kib()
    with pytest.raises(ReportError, match="decompresses to more than"):
        decompress(bomb, IntakeLimits(max_input=4 * 1024 * 1024, max_ratio=100))
    assert _peak_kib() - before < 64 * 1024  # far below the 512 MiB it expands to


def test_zip_bomb_is_refused_with_bounded_memory() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, z.open("r.xml", "w") as member:
        for _ in range(256):
            member.write(b"<" * (1024 * 1024))
    before = _peak_kib()
    mail = _mail(buf.getvalue(), "zip", "r.zip")
    reports, problems = extract_reports(mail, "dmarc", IntakeLimits(max_input=4 * 1024 * 1024))
    assert reports == [] and "decompresses to more than" in problems[0]
    assert _peak_kib() - before < 64 * 1024


def test_billion_laughs_and_external_entities_are_refused() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
            for i in range(1, 10)
        )
        + b"]><feedback>&lol9;</feedback>"
    )
    with pytest.raises(ReportError):
        parse_report(laughs)
    external = (
        b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<feedback>&x;</feedback>"
    )
    with pytest.raises(ReportError):
        parse_report(external)


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(ReportError, match="deeper"):
        parse_report(b"<feedback>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</feedback>")
    with pytest.raises(ReportError, match="deeper"):
        parse_tls_report(b"[" * 100_000 + b"]" * 100_000)  # larger: refused for its size
    with pytest.raises(ReportError):
        parse_tls_report(b'{"a": "' + b"[" * 10_000 + b'"}')  # brackets in strings: not depth


def test_rua_parsing_with_size_limits() -> None:
    dests = parse_rua("mailto:a@x.test!10m, https://r.test/x, mailto:b@y.test!5k,ftp://no,mailto:")
    assert [(d.scheme, d.target, d.max_size) for d in dests] == [
        ("mailto", "a@x.test", 10 * 1024 * 1024),
        ("https", "https://r.test/x", 0),
        ("mailto", "b@y.test", 5 * 1024),
    ]
