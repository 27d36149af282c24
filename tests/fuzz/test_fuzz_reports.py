"""Fuzzing the report parsers: any input yields a report or a ReportError, never another
exception, and within the bounds (a mutation loop over valid seeds, bounded in time,
plus hypothesis on arbitrary bytes)."""

from __future__ import annotations

import gzip
import io
import random
import time
import zipfile
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.reports.dmarcxml import DmarcRow, PolicyPublished, ReportError, build_report
from correo.reports.dmarcxml import parse_report as parse_dmarc
from correo.reports.intake import IntakeLimits, decompress, extract_reports
from correo.reports.tlsjson import build_tls_report, parse_tls_report
from correo.store.api import ReportTally

LIMITS = IntakeLimits(max_input=1024 * 1024, max_ratio=50)
SECONDS = 4.0  # per fuzz loop


def _dmarc_seed() -> bytes:
    row = DmarcRow("192.0.2.1", 2, "none", "pass", "fail", "a.test", "b.test")
    return build_report(
        org_name="o",
        email="e@o.test",
        report_id="1",
        begin=1,
        end=2,
        policy=PolicyPublished("a.test", "none", "none"),
        rows=[row, row],
    )


def _tls_seed() -> bytes:
    key = '{"policy": {"policy-type": "sts", "policy-string": ["a"], "mx-host": ["m"]},'
    tallies = [
        ReportTally("tlsrpt", "a.test", key + ' "result-type": "success"}', 4, 1.0, 2.0),
        ReportTally(
            "tlsrpt",
            "a.test",
            key + ' "result-type": "validation-failure", "details": {"receiving-ip": "x"}}',
            1,
            1.0,
            2.0,
        ),
    ]
    return build_tls_report(
        org_name="o",
        contact="c",
        report_id="2",
        begin=1.0,
        end=2.0,
        policy_domain="a.test",
        tallies=tallies,
    )


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("r.xml", data)
    return buf.getvalue()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip a byte
            b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # cut
            del b[pos : pos + rng.randint(1, 64)]
        elif op == 2:  # insert hostile markup
            b[pos:pos] = rng.choice(
                [b"<", b"</", b"&", b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"[", b"{", b'"', b"\\"]
            ) * rng.randint(1, 50)
        elif op == 3:  # repeat a slice
            piece = bytes(b[pos : pos + rng.randint(1, 32)])
            b[pos:pos] = piece * rng.randint(1, 20)
        else:  # truncate
            del b[pos:]
    return bytes(b)


def _loop(seeds: list[bytes], parse: Callable[[bytes], object], seed: int) -> int:
    rng = random.Random(seed)
    deadline = time.monotonic() + SECONDS
    runs = 0
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(seeds))
        started = time.thread_time()  # CPU time: a loaded machine's waits do not count
        try:
            parse(data)
        except ReportError:
            pass
        assert time.thread_time() - started < 2.0, data[:200]
        runs += 1
    return runs


def test_fuzz_dmarc_documents_and_archives() -> None:
    xml = _dmarc_seed()
    seeds = [xml, gzip.compress(xml), _zip(xml)]
    runs = _loop(seeds, lambda d: parse_dmarc(decompress(d, LIMITS)), 1)
    assert runs > 100


def test_fuzz_tls_documents() -> None:
    doc = _tls_seed()
    runs = _loop([doc, gzip.compress(doc)], lambda d: parse_tls_report(decompress(d, LIMITS)), 2)
    assert runs > 100


def test_fuzz_report_messages() -> None:
    xml = gzip.compress(_dmarc_seed())
    mail = (
        b"From: r@b.test\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: application/gzip; name=r.xml.gz\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + __import__("base64").encodebytes(xml).replace(b"\n", b"\r\n")
        + b"--b--\r\n"
    )
    assert extract_reports(mail, "dmarc", LIMITS)[0]

    def parse(data: bytes) -> object:
        reports, problems = extract_reports(data, "dmarc", LIMITS)
        assert reports or problems
        return reports

    assert _loop([mail], parse, 3) > 50


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    for parse in (parse_dmarc, parse_tls_report):
        try:
            parse(data)
        except ReportError:
            pass
    try:
        decompress(data, LIMITS)
    except ReportError:
        pass
