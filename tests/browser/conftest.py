"""Playwright for Python driving Debian's chromium (``/usr/bin/chromium``, installed by
.ci/run), headless, one browser per test module; a fresh context per test.

Screenshots of the main screens go to ``docs/screenshots/`` when ``CORREO_SCREENSHOTS=1``
and to the test's temporary folder otherwise, so a test run never changes the checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = os.environ.get("CORREO_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API runs an event loop in this thread while it is
    open, which would refuse the ``asyncio.run`` of other tests in the same worker."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox"] if os.geteuid() == 0 else [],  # root has no user namespace
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(
        ignore_https_errors=True,  # the test server's certificate is self-signed
        viewport={"width": 1180, "height": 720},
        locale="en-GB",
        timezone_id="UTC",
    )
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def shot(tmp_path: Path) -> object:
    """shot(page, name): a PNG of the page, into docs/screenshots when asked for."""
    folder = DOCS if os.environ.get("CORREO_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 1000
        return path

    return take
