"""The message list with 10,000 messages: the first screen comes quickly, scrolling to
the end shows the last ones, and the page holds only the rows on screen."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_webmail import log_in
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
    middle = page.locator(f"#rows .row[data-index='{COUNT // 2}']:not(.loading)")
    expect(middle).to_be_visible()
    # the row on screen, not the first in the page's margin: clicking one off screen
    # scrolls the list, which draws its rows again under the pointer
    middle.click()
    expect(page.locator("#reader .text-body")).to_contain_text("Body of message", timeout=15_000)
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


def test_a_click_survives_a_redraw_of_the_list(big_server: Server, page: Page) -> None:
    """The button goes down on a row, the list is drawn again (a scroll here; a page of
    the list arriving or a push does the same), the button comes up: the row opens. A
    list that made its rows anew on every draw lost such clicks."""
    log_in(page, big_server, "alice@example.test")
    target = page.locator("#rows .row[data-index='3']:not(.loading)")
    expect(target).to_be_visible()
    subject = target.locator(".subject").inner_text()
    number = subject.rsplit(" ", 1)[-1]
    box = target.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    drawn = page.locator("#list").evaluate(
        """l => new Promise(done => {
            const before = document.querySelector("#rows .row[data-index='3']");
            l.scrollTop += 1;  // a scroll: the list is drawn again
            requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() =>
                done(document.querySelector("#rows .row[data-index='3']") === before), 50)));
        })"""
    )
    page.mouse.up()
    assert drawn, "the row under the pointer was made anew by the redraw"
    expect(page.locator("#reader .text-body")).to_contain_text(
        f"Body of message {number}.", timeout=15_000
    )
