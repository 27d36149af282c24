"""The webmail's first screen: from navigation to the message list drawn, in Chromium.

    python bench/webmail_bench.py [--messages 10000] [--rounds 5] [--port 25443]

A fresh correo (``correo init``, one user) gets ``--messages`` small messages by
``correo import --mbox`` into its INBOX and serves them on its ``https`` listener. Debian's
chromium (``/usr/bin/chromium``, or ``CORREO_CHROMIUM``), headless, driven by Playwright,
signs in once; then each round opens ``https://127.0.0.1:PORT/`` and takes the time from
the navigation's start (``performance.timeOrigin``) to the first row of the list being in
the document with its content (a ``MutationObserver`` installed before the page's own
script notes ``performance.now()``; the page also sets the ``correo-list`` mark). Three
kinds of round, interleaved, ``--rounds`` of each, medians printed:

* ``repeat``: the same browser profile again (static files in its HTTP cache; the test
  certificate is trusted by its key, see :func:`spki_hash`);
* ``fresh``: a new browser profile with the session cookie only (empty cache);
* ``new mail``: as ``repeat``, but one message was delivered over SMTP just before, so
  every server cache keyed on the mailbox's state is stale.

The server's log is searched for ``event=loop.blocked`` afterwards.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import BrowserContext, sync_playwright

sys.path.insert(0, str(Path(__file__).parent))
from correo_server import DOMAIN, PASSWORD, CorreoServer, _correo

__all__ = ["main"]

USER = f"user1@{DOMAIN}"
CHROMIUM = os.environ.get("CORREO_CHROMIUM", "/usr/bin/chromium")
# Runs in the page before its own script: the time the first filled row appears.
WATCH = """
new MutationObserver((_, observer) => {
  if (document.querySelector('#rows .row:not(.loading)')) {
    window.__firstList = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""


def mbox(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            out.write(
                "From sender@x.example Mon Jan  1 00:00:00 2024\n"
                f"From: Sender {i % 97} <s{i % 97}@x.example>\nTo: {USER}\n"
                f"Subject: Message number {i} about thing {i % 13}\n"
                f"Message-ID: <m{i}@x.example>\n"
                f"Date: Mon, 1 Jan 2024 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
                " +0000\n\n"
                f"Body of message {i}, a line or two of text to preview.\n\n"
            )


def start(work: Path, https: int, smtp: int, count: int) -> CorreoServer:
    srv = CorreoServer(work, smtp_port=smtp, pop3s_port=https + 2, users=1)
    srv.setup()
    toml = work / "correo.toml"
    text = toml.read_text()
    text = re.sub(r'(?m)^(\w+) = \["127\.0\.0\.1:\d+"\]$', r'\1 = ["127.0.0.1:0"]', text)
    for service, port in (("https", https), ("smtp", smtp), ("pop3s", https + 2)):
        text = re.sub(rf"(?m)^{service} = \[.*\]$", f'{service} = ["127.0.0.1:{port}"]', text)
    toml.write_text(text)
    box = work / "load.mbox"
    mbox(box, count)
    done = subprocess.run(
        [*_correo(), "--data", str(work), "import", "--user", USER, "--mbox", str(box)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    box.unlink()
    srv.start()
    return srv


def spki_hash(certificate: Path) -> str:
    """The base64 SHA-256 of the certificate's public key, for Chromium's
    ``--ignore-certificate-errors-spki-list``: the test certificate then counts as valid,
    and Chromium caches what the server allows (it caches nothing from a site whose
    certificate it had to ignore, which would not be the case of a real deployment)."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def first_screen(context: BrowserContext, url: str) -> float:
    page = context.new_page()
    try:
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__firstList !== undefined", timeout=60_000)
        return float(page.evaluate("() => window.__firstList"))
    finally:
        page.close()


def deliver(port: int, n: int) -> None:
    body = f"From: x@x.example\r\nTo: {USER}\r\nSubject: new {n}\r\n\r\nnew\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("x@x.example", [USER], body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the webmail's first screen in Chromium")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--port", type=int, default=25_443, help="https; smtp is port+1")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="correo-webmail-bench-"))
    url = f"https://127.0.0.1:{a.port}/"
    srv = start(work, a.port, a.port + 1, a.messages)
    times: dict[str, list[float]] = {"repeat": [], "fresh": [], "new mail": []}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    f"--ignore-certificate-errors-spki-list={spki_hash(work / 'tls/cert.pem')}",
                    *(["--no-sandbox"] if os.geteuid() == 0 else []),
                ],
            )
            options = {"ignore_https_errors": True, "viewport": {"width": 1280, "height": 800}}
            context = browser.new_context(**options)  # type: ignore[arg-type]
            context.add_init_script(WATCH)
            page = context.new_page()
            page.goto(url)
            page.fill("#username", USER)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("body.ready", timeout=120_000)
            page.close()
            first_screen(context, url)  # once unmeasured: the server's first listing
            cookies = context.cookies()
            for n in range(a.rounds):
                times["repeat"].append(first_screen(context, url))
                fresh = browser.new_context(**options)  # type: ignore[arg-type]
                fresh.add_cookies(cookies)  # type: ignore[arg-type]
                fresh.add_init_script(WATCH)
                times["fresh"].append(first_screen(fresh, url))
                fresh.close()
                deliver(a.port + 1, n)
                time.sleep(0.3)  # delivered and committed; the page does not wait for it
                times["new mail"].append(first_screen(context, url))
            browser.close()
    finally:
        srv.stop()
        log = (work / "serve.log").read_text(errors="replace")
        srv.clean()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"webmail first screen, {a.messages} messages in INBOX, Chromium headless, TLS")
    print(f"{'round':<10} {'median ms':>10}   all (ms)")
    for kind, values in times.items():
        shown = " ".join(f"{v:.0f}" for v in values)
        print(f"{kind:<10} {statistics.median(values):>10.0f}   {shown}")
    blocked = log.count("event=loop.blocked")
    print(f"loop.blocked events in the server's log: {blocked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
