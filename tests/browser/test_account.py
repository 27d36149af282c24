"""The account page in chromium: password change (IMAP sees the new one), the vacation
reply (JMAP VacationResponse, shown in the Sieve script), filters as Sieve text that
delivery then runs, and a bad script refused."""

from __future__ import annotations

import imaplib
import re
import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Page, expect

from tests.browser.test_webmail import deliver, log_in, prepare
from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.imap_helpers import imap

Shot = Callable[[Page, str], Path]


def test_account_page(start_server: Any, page: Page, shot: Shot) -> None:
    server: Server = start_server()
    user = "alice@example.test"
    prepare(server, user)
    log_in(page, server, user)
    page.get_by_title("Account settings").click()
    expect(page.locator("body.ready")).to_be_visible()
    # filters: a bad script is refused with the reason, a good one runs on delivery
    sieve = page.locator("#sieve-form")
    sieve.get_by_label("Script").fill('require "fileinto";\nfileinto;\n')
    sieve.get_by_role("button", name="Save script").click()
    expect(sieve.get_by_role("status")).to_contain_text("fileinto")
    script = (
        'require "fileinto";\nif header :contains "subject" "invoice" { fileinto "Archive"; }\n'
    )
    sieve.get_by_label("Script").fill(script)
    sieve.get_by_role("button", name="Save script").click()
    expect(sieve.get_by_role("status")).to_have_text("Script saved.")
    deliver(server, user, "Your invoice for May")
    deadline, found = time.monotonic() + 10, list[bytes]()
    while not found and time.monotonic() < deadline:
        client = imap(server, user)
        client.select("Archive")
        found = client.search(None, "SUBJECT", '"invoice"')[1][0].split()
        client.logout()
        time.sleep(0.1)
    assert found, "the filter did not file the message"
    # vacation reply, kept in the same script
    vacation = page.locator("#vacation-form")
    vacation.get_by_label("Answer mail automatically").check()
    vacation.get_by_label("Subject").fill("Away")
    vacation.get_by_label("Message").fill("Back on Monday.")
    vacation.get_by_role("button", name="Save vacation reply").click()
    expect(vacation.get_by_role("status")).to_have_text("Vacation reply saved.")
    expect(sieve.get_by_label("Script")).to_have_value(
        re.compile("vacation[\\s\\S]*Back on Monday")
    )
    # forwarding: a marked redirect in the same script; the next message is queued to it
    forward = page.locator("#forward-form")
    forward.get_by_label("Forward to").fill("not an address")
    forward.get_by_role("button", name="Save forwarding").click()
    expect(forward.get_by_role("status")).to_contain_text("Not an address")
    forward.get_by_label("Forward to").fill("dave@elsewhere.example")
    forward.get_by_role("button", name="Save forwarding").click()
    expect(forward.get_by_role("status")).to_have_text("Forwarding saved.")
    expect(sieve.get_by_label("Script")).to_have_value(
        re.compile('redirect :copy "dave@elsewhere.example";[\\s\\S]*fileinto "Archive"')
    )
    deliver(server, user, "Please forward me")
    # the copy went to the queue, which tried the (non-existent) domain at once
    assert server.wait_log("rcpt=dave@elsewhere.example"), server.log()[-3000:]
    assert "redirects=1" in server.log()
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "webmail-account")
    # password: the old one stops working everywhere, the new one works
    password = page.locator("#password-form")
    password.get_by_label("Current password").fill("not the password")
    password.get_by_label("New password", exact=True).fill("a-new-secret-42")
    password.get_by_label("New password again").fill("a-new-secret-42")
    password.get_by_role("button", name="Change password").click()
    expect(password.get_by_role("status")).to_have_text("The current password is not right.")
    password.get_by_label("Current password").fill(PASSWORDS[user])
    password.get_by_role("button", name="Change password").click()
    expect(password.get_by_role("status")).to_have_text("Password changed.")
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=client_tls())
    try:
        client.login(user, "a-new-secret-42")
    finally:
        client.logout()


def test_filters_form(start_server: Any, page: Page, shot: Shot) -> None:
    """Rules made in the form are Sieve that delivery runs (move, flag, mark read, stop,
    in order, a disabled rule skipped); a script edited by hand is shown read only and
    kept; a rule the server refuses says why."""
    server: Server = start_server()
    user = "bob@example.test"
    prepare(server, user)
    log_in(page, server, user)
    page.goto(f"https://127.0.0.1:{server.ports['https']}/account")
    expect(page.locator("body.ready")).to_be_visible()
    form = page.locator("#filters-form")
    expect(form.locator("#no-rules")).to_be_visible()
    # rule 1: Subject contains "invoice" -> move to Archive, flag
    form.get_by_role("button", name="Add rule").click()
    first = form.get_by_role("listitem", name="Rule 1")
    first.get_by_label("If").select_option("subject")
    first.get_by_label("Text").fill("invoice")
    first.get_by_label("Folder").select_option("Archive")
    first.get_by_role("button", name="Add action").click()
    first.get_by_label("Then").nth(1).select_option("flag")
    # rule 2: a header matches -> mark read, stop
    form.get_by_role("button", name="Add rule").click()
    second = form.get_by_role("listitem", name="Rule 2")
    second.get_by_label("If").select_option("header")
    second.get_by_label("Header name").fill("X-Tracker")
    second.get_by_label("Test").select_option("matches")
    second.get_by_label("Text").fill("*tick*")
    second.get_by_label("Then").select_option("seen")
    second.get_by_role("button", name="Add action").click()
    second.get_by_label("Then").nth(1).select_option("stop")
    # rule 3, disabled: would discard everything
    form.get_by_role("button", name="Add rule").click()
    third = form.get_by_role("listitem", name="Rule 3")
    third.get_by_label("Text").fill("@")
    third.get_by_label("Then").select_option("discard")
    third.get_by_label("Enabled").uncheck()
    # rule 2 up: it becomes rule 1
    second.get_by_role("button", name="Move rule up").click()
    expect(form.get_by_role("listitem", name="Rule 1").get_by_label("Header name")).to_have_value(
        "X-Tracker"
    )
    form.get_by_role("button", name="Save rules").click()
    expect(form.get_by_role("status")).to_have_text("Rules saved.")
    script = page.locator("#sieve-form").get_by_label("Script")
    expect(script).to_have_value(
        re.compile(
            r'if header :matches "X-Tracker" "\*tick\*" \{ addflag "\\\\Seen"; stop; \}\n'
            r'if header :contains "subject" "invoice" '
            r'\{ addflag "\\\\Flagged"; fileinto "Archive"; \}'
        )
    )
    page.evaluate("window.scrollTo(0, document.querySelector('#filters-title').offsetTop - 60)")
    shot(page, "webmail-filters")
    deliver(server, user, "Your invoice for June")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "t@sender.example", user, "Tracked invoice"
    message["X-Tracker"] = "ticket-42"
    message.set_content("tracked\n")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(message, from_addr="t@sender.example", to_addrs=[user])
    deadline, found = time.monotonic() + 10, list[bytes]()
    while len(found) < 2 and time.monotonic() < deadline:
        client = imap(server, user)
        client.select("Archive", readonly=True)
        archived = client.search(None, "FLAGGED", "SUBJECT", '"Your invoice"')[1][0].split()
        client.select("INBOX", readonly=True)
        tracked = client.search(None, "SEEN", "UNFLAGGED", "SUBJECT", '"Tracked"')[1][0].split()
        client.logout()
        found = archived + tracked
        time.sleep(0.1)
    # the invoice went to Archive, flagged; the tracked one stayed, read, and the stop
    # kept the invoice rule from moving it; the disabled discard did nothing
    assert len(found) == 2, found
    # a rule the server refuses
    third_now = form.get_by_role("listitem", name="Rule 3")
    third_now.get_by_label("Enabled").check()
    third_now.get_by_label("Then").select_option("redirect")
    third_now.get_by_label("Address").fill("nobody")
    form.get_by_role("button", name="Save rules").click()
    expect(form.get_by_role("status")).to_contain_text("not an address")
    # edited by hand: the form shows it read only, and the script is kept
    sieve = page.locator("#sieve-form")
    text = script.input_value()
    script.fill(text + 'if header :contains "subject" "x" { keep; }\n')
    sieve.get_by_role("button", name="Save script").click()
    expect(sieve.get_by_role("status")).to_have_text("Script saved.")
    expect(page.locator("#filters-note")).to_be_visible()
    expect(form.get_by_role("button", name="Save rules")).to_be_disabled()
    expect(form.locator("li.rule")).to_have_count(3)
    session = requests.Session()
    for cookie in page.context.cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    token = session.get(
        f"https://127.0.0.1:{server.ports['https']}/webmail/session", verify=False, timeout=10
    ).json()["bearer"]
    refused = session.put(
        f"https://127.0.0.1:{server.ports['https']}/webmail/account/filters",
        json={"rules": []},
        headers={"Authorization": f"Bearer {token}"},
        verify=False,
        timeout=10,
    )
    assert refused.status_code == 409
    expect(script).to_have_value(re.compile('"subject" "x" \\{ keep; \\}'))
