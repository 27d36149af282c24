"""Playwright for Python driving Debian's chromium (``/usr/bin/chromium``, installed by
.ci/run), headless, one browser per test module; a fresh context per test.

Modules that set ``FIREFOX = True`` run in Debian's Firefox ESR as well
(``/usr/bin/firefox-esr``, installed by .ci/run, or ``CORREO_FIREFOX``), driven by
Playwright over WebDriver BiDi through :mod:`tests.browser.firefox_bidi`; where it is
not installed those runs are skipped.

Screenshots of the main screens go to ``docs/screenshots/`` when ``CORREO_SCREENSHOTS=1``
and to the test's temporary folder otherwise, so a test run never changes the checkout.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, sync_playwright

from tests.conftest import Server, make_data_dir

CHROMIUM = os.environ.get("CORREO_CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("CORREO_FIREFOX", "/usr/bin/firefox-esr")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "browser_name" in metafunc.fixturenames:
        names = (
            ["chromium", "firefox"] if getattr(metafunc.module, "FIREFOX", False) else ["chromium"]
        )
        metafunc.parametrize("browser_name", names, scope="module")


def _firefox(folder: Path) -> str:
    """An executable that starts Firefox behind the BiDi relay (firefox_bidi.py)."""
    if shutil.which(FIREFOX) is None:
        pytest.skip(f"no Firefox at {FIREFOX} (.ci/run installs firefox-esr)")
    relay = Path(__file__).with_name("firefox_bidi.py")
    script = folder / "firefox"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{relay}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.fixture(scope="module")
def server(browser_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server per module and browser: each browser's run starts from empty mailboxes."""
    data = tmp_path_factory.mktemp(f"correo-{browser_name}") / "data"
    make_data_dir(data)
    srv = Server(data)
    srv.start()
    yield srv
    code = srv.stop()
    assert code == 0, srv.log()[-3000:]


@pytest.fixture(scope="module")
def browser(browser_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Per module: Playwright's sync API runs an event loop in this thread while it is
    open, which would refuse the ``asyncio.run`` of other tests in the same worker."""
    with sync_playwright() as playwright:
        if browser_name == "firefox":
            launched = playwright.firefox.launch(
                channel="moz-firefox",  # WebDriver BiDi: an unmodified Firefox
                executable_path=_firefox(tmp_path_factory.mktemp("firefox")),
                headless=True,
            )
        else:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox"] if os.geteuid() == 0 else [],  # no user namespace
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
def shot(tmp_path: Path, browser_name: str) -> object:
    """shot(page, name): a PNG of the page, into docs/screenshots when asked for (from
    chromium: one picture per screen)."""
    asked = os.environ.get("CORREO_SCREENSHOTS") == "1" and browser_name == "chromium"
    folder = DOCS if asked else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), caret="initial")  # no style injected (CSP)
        assert path.stat().st_size > 1000
        return path

    return take


# Playwright's screenshots in Firefox add a <style>body {}</style>, which the page's CSP
# refuses (as it should): that one report is not the page's.
_SCREENSHOT_STYLE = "sha256-YjaKGiklmzC6wjXA513HAMmzus8VE61XCOT+SmwNZWA="


@pytest.fixture
def errors(page: Page) -> Iterator[list[str]]:
    """Script errors and dialogs of the page: none may happen."""
    seen: list[str] = []

    def page_error(exc: Exception) -> None:
        if _SCREENSHOT_STYLE not in str(exc):
            seen.append(f"pageerror: {exc}")

    page.on("pageerror", page_error)

    def on_dialog(dialog: Dialog) -> None:
        seen.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "response",
        lambda r: (
            seen.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    page.on(
        "console",
        lambda msg: seen.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    yield seen
