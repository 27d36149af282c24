"""The message list with 10,000 messages: the first screen comes quickly, scrolling to
the end shows the last ones, and the page holds only the rows on screen."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_webmail import log_in, row
from tests.conftest import Server, correo, make_data_dir

COUNT = 10_000


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("big")
    mbox = root / "big.mbox"
    with mbox.open("w") as out:
        for i in range(COUNT):
            out.write(
                "From sender@x.example Mon Jan  1 00:00:00 2024\n"
                f"From: Sender {i % 97} <s{i % 97}@x.example>\nTo: alice@example.test\n"
                f"Subject: Message number {i}\nMessage-ID: <m{i}@x.example>\n"
                f"Date: Mon, 1 Jan 2024 00:{i // 600 % 60:02d}:{i % 60:02d} +0000\n\n"
                f"Body of message {i}.\n\n"
            )
    data = root / "data"
    make_data_dir(data)
    done = correo(data, "import", "--user", "alice@example.test", "--mbox", str(mbox))
    assert done.returncode == 0 and f"imported {COUNT}" in done.stdout, done.stderr
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0


def test_ten_thousand_messages_scroll(big_server: Server, page: Page, tmp_path: Path) -> None:
    started = time.monotonic()
    log_in(page, big_server, "alice@example.test")
    expect(page.locator("#rows .row:not(.loading)").first).to_be_visible()
    first_screen = time.monotonic() - started  # login, JMAP session, mailboxes, first page
    spacer = page.locator("#spacer")
    assert spacer.evaluate("s => s.style.height") == f"{COUNT * 64}px"
    inbox = page.locator("#mailboxes .mailbox[data-role=inbox] .count")
    expect(inbox).to_have_text(str(COUNT))
    page.locator("#list").evaluate("l => { l.scrollTop = l.scrollHeight; }")
    last = page.locator(f"#rows .row[data-index='{COUNT - 1}']:not(.loading)")
    expect(last).to_be_visible()
    assert page.locator("#rows .row").count() < 60  # only what is on screen, and a margin
    page.locator("#list").evaluate("l => { l.scrollTop = l.scrollHeight / 2; }")
    expect(page.locator(f"#rows .row[data-index='{COUNT // 2}']:not(.loading)")).to_be_visible()
    row(page, "Message number").first.click()
    expect(page.locator("#reader .text-body")).to_contain_text("Body of message")
    started = time.monotonic()
    page.reload()  # the session cookie: straight to the list
    expect(page.locator("#rows .row:not(.loading)").first).to_be_visible()
    again = time.monotonic() - started
    print(
        f"first screen: {first_screen * 1000:.0f} ms after login, {again * 1000:.0f} ms on reload"
    )


def test_first_screen_in_one_request(big_server: Server, page: Page) -> None:
    """What the first screen needs comes with the page and one JMAP request (mailboxes,
    the first page of the list and its threads); the static files may be cached for good;
    the composer's code waits until after."""
    log_in(page, big_server, "alice@example.test")
    requests: list[tuple[str, str]] = []
    page.on("request", lambda r: requests.append((r.url, r.post_data or "")))
    cached: dict[str, str] = {}
    page.on(
        "response",
        lambda r: (
            cached.__setitem__(r.url, r.headers.get("cache-control", ""))
            if "/webmail/v/" in r.url
            else None
        ),
    )
    page.reload()
    page.wait_for_function("() => performance.getEntriesByName('correo-list').length === 1")
    expect(page.locator("#rows .row:not(.loading)").first).to_be_visible()
    before = page.evaluate(
        "() => { const drawn = performance.getEntriesByName('correo-list')[0].startTime;"
        " return performance.getEntriesByType('resource')"
        ".filter(e => e.startTime < drawn).map(e => new URL(e.name).pathname); }"
    )
    assert [p for p in before if p.startswith("/jmap/api")] == ["/jmap/api/"], before
    assert not [p for p in before if p in ("/webmail/session", "/.well-known/jmap")], before
    assert not [p for p in before if p.endswith(("/compose.js", "/mime.js"))], before
    (call,) = [body for url, body in requests if "/jmap/api/" in url][:1]
    names = [m[0] for m in json.loads(call)["methodCalls"]]
    assert names == ["Mailbox/get", "Email/query", "Email/get", "Thread/get"]
    assert cached and all(v == "public, max-age=31536000, immutable" for v in cached.values())
    assert page.locator("#rows .row").count() < 40  # the rows on screen only
