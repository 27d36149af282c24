"""TLS reports to an ``https:`` rua (RFC 8460 §5.4): POSTed as application/tlsrpt+gzip to
a local aiohttp server whose certificate a test CA signed (``[outbound] ca_file``)."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from correo.config import Config, OutboundSettings
from correo.dns.fake import FakeResolver
from correo.log import Logger
from correo.reports.outbound import ReportSender
from correo.reports.schedule import ReportScheduler
from correo.reports.tally import TallyBuffer
from correo.reports.tlsresults import TLS_KIND, TlsPolicy, TlsResults
from correo.store.sqlite import SqliteStore
from tests.pki import TestCA


class _Directory:
    """What the sender asks of the directory for an https: report: our domains."""

    def domains(self) -> list[str]:
        return ["b.test"]


async def _collector(
    tmp_path: Path, status: int
) -> tuple[web.AppRunner, int, list[tuple[str, bytes]], TestCA]:
    ca = TestCA(tmp_path / "ca")
    ca.issue("localhost", tmp_path / "cert.pem", tmp_path / "key.pem")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    posts: list[tuple[str, bytes]] = []

    async def take(request: web.Request) -> web.Response:
        posts.append((request.content_type, await request.read()))
        return web.Response(status=status, text="thanks")

    app = web.Application()
    app.router.add_post("/tlsrpt", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, posts, ca


async def _run(tmp_path: Path, status: int) -> tuple[list[tuple[str, bytes]], str, int]:
    runner, port, posts, ca = await _collector(tmp_path, status)
    config = Config(
        data_dir=tmp_path,
        hostname="mx.b.test",
        listen={},
        outbound=OutboundSettings(ca_file=str(ca.cert_path)),
    )
    store = SqliteStore(tmp_path / "store", recover=True)
    await store.open()
    out = io.StringIO()
    log = Logger(out, "debug")
    try:
        tallies = TallyBuffer(store, log)
        results = TlsResults(tallies)
        policy = TlsPolicy("sts", ("version: STSv1", "mode: enforce", "mx: mx.a.test"))
        for _ in range(3):
            results.record_tls_result("a.test", "success", policy=policy)
        results.record_tls_result(
            "a.test",
            "certificate-not-trusted",
            policy=policy,
            receiving_mx_hostname="mx.a.test",
            receiving_ip="192.0.2.7",
        )
        resolver = FakeResolver(
            {"_smtp._tls.a.test": {"TXT": [f"v=TLSRPTv1; rua=https://localhost:{port}/tlsrpt"]}}
        )
        sender = ReportSender(config, store, _Directory(), resolver, log)  # type: ignore[arg-type]
        summary = await ReportScheduler(sender, [tallies], log).run_once(force=True)
        assert summary is not None
        left = await store.report_tally_domains(TLS_KIND)
    finally:
        await store.close()
        await runner.cleanup()
    return posts, out.getvalue(), len(left) + 100 * summary.sent


def test_tls_report_is_posted_to_an_https_rua(tmp_path: Path) -> None:
    posts, logged, outcome = asyncio.run(_run(tmp_path, 200))
    assert outcome == 100, logged  # one report sent, no rows left
    [(content_type, body)] = posts
    assert content_type == "application/tlsrpt+gzip"
    report: dict[str, Any] = json.loads(gzip.decompress(body))
    assert report["organization-name"] == "mx.b.test"
    [entry] = report["policies"]
    assert entry["policy"]["policy-type"] == "sts"
    assert entry["policy"]["policy-domain"] == "a.test"
    assert entry["summary"] == {
        "total-successful-session-count": 3,
        "total-failure-session-count": 1,
    }
    [detail] = entry["failure-details"]
    assert detail["result-type"] == "certificate-not-trusted"
    assert detail["receiving-ip"] == "192.0.2.7"
    assert "event=reports.sent" in logged


def test_a_refused_post_is_logged_and_its_rows_kept(tmp_path: Path) -> None:
    posts, logged, outcome = asyncio.run(_run(tmp_path, 503))
    assert len(posts) == 1 and outcome == 1  # nothing sent; the rows wait for the next run
    assert "event=reports.delivery_failed" in logged and "answered 503" in logged


def test_mta_sts_fetch_failures_are_told_with_their_result_type(tmp_path: Path) -> None:
    """RFC 8460 §4.3.2.2: no policy host (fetch error), a policy host whose certificate
    does not name it (webpki)."""
    from correo.queue.mtasts import MtaSts, PolicyCache

    async def go() -> list[tuple[str, str]]:
        runner, port, _posts, ca = await _collector(tmp_path, 200)  # certificate: localhost
        resolver = FakeResolver(
            {
                "_mta-sts.gone.test": {"TXT": ["v=STSv1; id=1"]},
                "_mta-sts.wrong.test": {"TXT": ["v=STSv1; id=1"]},
                "mta-sts.wrong.test": {"A": ["127.0.0.1"]},
            }
        )
        log = Logger(io.StringIO(), "debug")
        sts = MtaSts(
            resolver,
            PolicyCache(tmp_path / "sts.json", log),
            log,
            port=port,
            ca_file=str(ca.cert_path),
            timeout=5.0,
        )
        told: list[tuple[str, str]] = []
        sts.on_failure = lambda domain, kind, why: told.append((domain, kind))
        try:
            assert await sts.policy_for("gone.test") is None
            assert await sts.policy_for("wrong.test") is None
        finally:
            await runner.cleanup()
        return told

    assert asyncio.run(go()) == [
        ("gone.test", "sts-policy-fetch-error"),
        ("wrong.test", "sts-webpki-invalid"),
    ]
