"""The message list by thread in chromium: a conversation is one row with its count,
opened in the list by click, Enter or the right arrow, closed by the left arrow, and read
as a conversation; and the whole of it at phone width by keyboard alone (IMAP agrees)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from playwright.sync_api import Browser, Page, expect

from tests.browser.test_webmail import Shot, deliver, log_in, prepare, row
from tests.conftest import Server
from tests.server.imap_helpers import imap


def converse(server: Server, to: str) -> None:
    """A conversation of three (a question, a reply, a reply to the reply)."""
    previous: list[str] = []
    for n, (who, text) in enumerate(
        [
            ("Ana <ana@sender.example>", "Shall we meet on Tuesday?\n"),
            ("Ben <ben@sender.example>", "Tuesday works for me.\n"),
            ("Ana <ana@sender.example>", "Ten o'clock then.\n"),
        ]
    ):
        message = EmailMessage()
        message["From"], message["To"] = who, to
        message["Subject"] = ("Re: " if n else "") + "Planning the meeting"
        message["Message-ID"] = f"<plan{n}@sender.example>"
        if previous:
            message["In-Reply-To"] = previous[-1]
            message["References"] = " ".join(previous)
        message.set_content(text)
        previous.append(message["Message-ID"])
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            smtp.send_message(message, from_addr="ana@sender.example", to_addrs=[to])


def test_threads_expand_and_read_as_a_conversation(
    server: Server, page: Page, errors: list[str], shot: Shot
) -> None:
    user = "alice@example.test"
    prepare(server, user)
    deliver(server, user, "A lone message", "Nothing to reply to.\n")
    converse(server, user)  # newer: the thread's row comes first
    log_in(page, server, user)
    thread = page.locator("#rows .row[aria-level='1']", has_text="Planning the meeting")
    expect(thread).to_have_count(1)  # three messages, one row
    expect(thread.locator(".thread-count")).to_have_text("3")
    expect(thread).to_have_attribute("aria-expanded", "false")
    expect(row(page, "A lone message")).not_to_have_attribute("aria-expanded", "false")
    # a click opens the thread in the list and reads the conversation, oldest first
    thread.click()
    expect(thread).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#rows .row.child")).to_have_count(2)
    messages = page.locator("#reader .message")
    expect(messages).to_have_count(3)
    expect(messages.nth(0)).to_contain_text("Shall we meet on Tuesday?")
    expect(messages.nth(2)).to_contain_text("Ten o'clock then.")
    expect(page.locator("#reader .thread-note")).to_have_text("3 messages in this conversation")
    expect(page.locator("#reader .message.current")).to_contain_text("Ten o'clock")
    shot(page, "webmail-thread")
    # reading the conversation read all three
    client = imap(server, user)
    try:
        client.select("INBOX", readonly=True)
        _, unseen = client.search(None, "UNSEEN")
        assert len(unseen[0].split()) == 1  # only the lone message
    finally:
        client.logout()
    # a message under the thread: its row reads the same conversation, that one current
    page.locator("#rows .row.child", has_text="Tuesday works").click()
    expect(page.locator("#reader .message.current")).to_contain_text("Tuesday works for me.")
    # the keyboard: left goes up to the thread's row, left again closes it, right opens
    page.locator("#list").focus()
    page.keyboard.press("ArrowLeft")
    expect(thread).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#rows .row.child")).to_have_count(0)
    expect(thread).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#rows .row.child")).to_have_count(2)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#rows .row.child")).to_have_count(0)
    # the count's button toggles the thread alone
    thread.locator(".thread-count").click()
    expect(page.locator("#rows .row.child")).to_have_count(2)
    # j walks through the open thread's messages too, then to the lone message
    page.locator("#list").focus()
    for _ in range(3):
        page.keyboard.press("j")
    expect(row(page, "A lone message")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#reader .message")).to_have_count(1)
    page.keyboard.press("k")  # back into the conversation: Enter reads it whole
    page.keyboard.press("Enter")
    expect(page.locator("#reader .message")).to_have_count(3)
    assert errors == [], errors


def test_phone_width_by_keyboard(
    server: Server, browser: Browser, errors: list[str], shot: Shot
) -> None:
    """375 px wide: one column at a time, nothing wider than the screen, and every
    action by key; IMAP sees what the keys did."""
    user = "bob@example.test"
    prepare(server, user)
    for subject in ("Phone one", "Phone two", "Phone three", "Phone four"):
        deliver(server, user, subject)
    context = browser.new_context(
        ignore_https_errors=True,
        viewport={"width": 375, "height": 740},
        locale="en-GB",
        timezone_id="UTC",
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    try:
        log_in(page, server, user)
        expect(page.locator("#list")).to_be_visible()
        expect(page.locator("#reader")).to_be_hidden()
        expect(page.locator("#mailboxes")).to_be_hidden()
        wide = "() => document.documentElement.scrollWidth"
        assert page.evaluate(wide) <= 375
        expect(row(page, "Phone four")).to_be_visible()
        shot(page, "webmail-phone-list")
        # the menu shows the mailboxes, and a mailbox takes the screen back to the list
        page.get_by_role("button", name="Mailboxes").click()
        expect(page.locator("#mailboxes")).to_be_visible()
        page.locator("#mailboxes .mailbox[data-role=inbox]").click()
        expect(page.locator("#mailboxes")).to_be_hidden()
        # j opens the newest: the reader takes the screen
        page.locator("#list").focus()
        page.keyboard.press("j")
        expect(page.locator("#reader h2")).to_have_text("Phone four")
        expect(page.locator("#list")).to_be_hidden()
        assert page.evaluate(wide) <= 375
        page.keyboard.press("s")  # star
        expect(page.get_by_role("button", name="Unstar")).to_be_visible()
        page.keyboard.press("e")  # archive: back to the list, without it
        expect(page.locator("#list")).to_be_visible()
        expect(row(page, "Phone four")).to_have_count(0)
        expect(row(page, "Phone two")).to_be_visible()  # the list is drawn again: j has rows
        page.keyboard.press("j")  # the next one down: Phone two
        expect(page.locator("#reader h2")).to_have_text("Phone two")
        page.get_by_role("button", name="Back to the list").click()
        expect(page.locator("#list")).to_be_visible()
        expect(row(page, "Phone two")).to_have_attribute("aria-selected", "true")
        page.keyboard.press("#")  # to Trash
        expect(row(page, "Phone two")).to_have_count(0)
        page.keyboard.press("/")
        expect(page.get_by_label("Search mail")).to_be_focused()
        page.keyboard.press("Escape")
        page.keyboard.press("c")
        expect(page.locator("#composer")).to_be_visible()
        assert page.locator("#composer").evaluate("d => d.getBoundingClientRect().width") <= 375
        page.keyboard.press("Escape")
        expect(page.locator("#composer")).to_be_hidden()
        client = imap(server, user)
        try:
            client.select("Archive", readonly=True)
            _, found = client.search(None, "FLAGGED", "SUBJECT", '"Phone four"')
            assert len(found[0].split()) == 1
            client.select("Trash", readonly=True)
            _, found = client.search(None, "SUBJECT", '"Phone two"')
            assert len(found[0].split()) == 1
            client.select("INBOX", readonly=True)
            _, left = client.search(None, "ALL")
            assert len(left[0].split()) == 2
        finally:
            client.logout()
        assert errors == [], errors
    finally:
        context.close()
