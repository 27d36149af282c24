"""Hostile reports over real SMTP to a server's report addresses (RFC 7489 §7.2,
RFC 8460 §5.3: anyone may send them): each message is taken (250), what cannot be used
is refused in the log, a good report beside a bad one is still kept, and other clients
are answered meanwhile. Parsing runs in a worker thread, so the loop watchdog (which
counts the loop thread's own CPU) cannot see a parser that holds the GIL in one C call:
the TLS document below did so for about ten seconds inside one regex search, and every
client of the server waited that long. A second SMTP client's NOOPs measure it."""

from __future__ import annotations

import gzip
import io
import json
import smtplib
import threading
import time
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from tests.conftest import Server, correo, crash_free_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from crash_free_server(tmp_path_factory, "hostile-more2-reports")


def _tls(report_id: str) -> bytes:
    return json.dumps(
        {
            "organization-name": "sender.example",
            "report-id": report_id,
            "date-range": {
                "start-datetime": "2026-01-01T00:00:00Z",
                "end-datetime": "2026-01-02T00:00:00Z",
            },
            "contact-info": "tls@sender.example",
            "policies": [
                {
                    "policy": {"policy-type": "sts", "policy-domain": "example.test"},
                    "summary": {
                        "total-successful-session-count": 9,
                        "total-failure-session-count": 0,
                    },
                }
            ],
        }
    ).encode()


def _send(srv: Server, to: str, attachments: list[tuple[bytes, str, str, str]]) -> None:
    """One message with ``attachments`` to ``to``; smtplib raises unless it is taken."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "r@sender.example", to, "Report"
    message.set_content("Reports attached.\n")
    for data, maintype, subtype, name in attachments:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as smtp:
        smtp.sendmail("r@sender.example", [to], message.as_bytes(policy=SMTP))


def _listed(srv: Server) -> str:
    out = correo(srv.data, "reports", "list")
    assert out.returncode == 0, out.stderr
    return out.stdout


def _refused(srv: Server, start: int, count: int) -> list[str]:
    """The reports.refused lines logged since ``start``, once there are ``count`` (the
    log is read by a thread of the test harness, a moment after the server writes it)."""
    deadline = time.monotonic() + 30
    while True:
        lines = [line for line in srv.log_lines[start:] if "reports.refused" in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _slowest_noop_while(srv: Server, work: threading.Thread) -> float:
    """Run ``work``; meanwhile NOOP on a second connection: the slowest answer."""
    slowest = 0.0
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=120) as smtp:
        work.start()
        while work.is_alive():
            began = time.monotonic()
            assert smtp.noop()[0] == 250
            slowest = max(slowest, time.monotonic() - began)
            time.sleep(0.01)
    work.join()
    return slowest


def test_costly_tls_documents_are_refused_and_a_good_one_kept(srv: Server) -> None:
    start = len(srv.log_lines)
    escaped = b'{"organization-name": "' + b'\\"' * 30_000  # no end: was quadratic
    arrays = gzip.compress(b"[" + b"[]," * 160_000 + b"[]]")
    attachments = [
        (escaped, "application", "tlsrpt+json", "a.json"),
        (arrays, "application", "tlsrpt+gzip", "b.json.gz"),
        (gzip.compress(_tls("tls-good-1")), "application", "tlsrpt+gzip", "c.json.gz"),
    ]
    failed: list[BaseException] = []

    def send() -> None:
        try:
            _send(srv, "tls-reports@example.test", attachments)
        except BaseException as exc:  # shown by the assertion below
            failed.append(exc)

    slowest = _slowest_noop_while(srv, threading.Thread(target=send))
    assert not failed, failed
    assert slowest < 2.0, slowest  # before: about 10 s
    assert "9 sessions ok, 0 failed" in _listed(srv)  # the good one, kept
    refused = _refused(srv, start, 2)
    assert len(refused) == 2, refused


def test_costly_dmarc_archives_and_documents_are_refused(srv: Server) -> None:
    start = len(srv.log_lines)
    bz = io.BytesIO()
    with (
        zipfile.ZipFile(bz, "w", compression=zipfile.ZIP_BZIP2) as archive,
        archive.open("r.xml", "w", force_zip64=True) as member,
    ):
        for _ in range(4):
            member.write(b"<" * (1 << 24))  # 64 MB in a few dozen octets
    attrs = b"<feedback " + b" ".join(b'a%d=""' % i for i in range(300_000)) + b"/>"
    comment = b"<feedback><!--" + b"c" * 8_000_000 + b"--></feedback>"
    _send(
        srv,
        "dmarc-reports@example.test",
        [
            (bz.getvalue(), "application", "zip", "a.zip"),
            (gzip.compress(attrs), "application", "gzip", "b.xml.gz"),
            (gzip.compress(comment, 1), "application", "gzip", "c.xml.gz"),
        ],
    )
    refused = _refused(srv, start, 3)
    assert len(refused) == 3, refused
    assert any("method" in line for line in refused)
