"""Push in the page, in chromium and Firefox: over JMAP's WebSocket (RFC 8887) where the
session offers one, else over the EventSource (RFC 8620 §7.3); either way new mail shows
without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.test_webmail import deliver, log_in, prepare, row
from tests.conftest import Server

FIREFOX = True  # these run in Firefox as well (conftest.py)


def test_push_over_websocket(server: Server, page: Page, errors: list[str]) -> None:
    user = "carol@example.test"
    prepare(server, user)
    log_in(page, server, user)
    # set when the page's WebSocket opened (and no EventSource was made)
    expect(page.locator("body[data-push=websocket]")).to_have_count(1)
    deliver(server, user, "Pushed over the WebSocket", "Hello.\n")
    expect(row(page, "Pushed over the WebSocket")).to_be_visible()
    assert errors == [], errors


def test_push_falls_back_to_eventsource(
    server: Server, page: Page, errors: list[str], browser_name: str
) -> None:
    """The session names a WebSocket that does not answer: the page listens on the
    EventSource instead."""
    if browser_name == "firefox":
        pytest.skip("Playwright over WebDriver BiDi cannot rewrite a page's answer yet")
    user = "bob@example.test"
    prepare(server, user)
    base = f"https://127.0.0.1:{server.ports['https']}"
    dead = base.replace("https:", "wss:") + "/jmap/no-ws/"  # refused: 404

    def elsewhere(route: Route) -> None:
        response = route.fetch()
        body = response.text().replace(base.replace("https:", "wss:") + "/jmap/ws/", dead)
        route.fulfill(response=response, body=body)

    log_in(page, server, user)
    page.route(base + "/", elsewhere)  # (a redirect is not routed: a new visit)
    page.goto(base + "/")
    expect(page.locator("body.ready")).to_be_visible()
    assert "/jmap/no-ws/" in page.content()  # the page was given the dead address
    expect(page.locator("body[data-push=eventsource]")).to_have_count(1)
    deliver(server, user, "Pushed over the EventSource", "Hello.\n")
    expect(row(page, "Pushed over the EventSource")).to_be_visible()
    # the one failure is the WebSocket that could not open
    assert all("/jmap/no-ws/" in e for e in errors), errors
