"""The account page in chromium: password change (IMAP sees the new one), the vacation
reply (JMAP VacationResponse, shown in the Sieve script), filters as Sieve text that
delivery then runs, and a bad script refused."""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    sieve.get_by_role("button", name="Save filters").click()
    expect(sieve.get_by_role("status")).to_contain_text("fileinto")
    script = (
        'require "fileinto";\nif header :contains "subject" "invoice" { fileinto "Archive"; }\n'
    )
    sieve.get_by_label("Script").fill(script)
    sieve.get_by_role("button", name="Save filters").click()
    expect(sieve.get_by_role("status")).to_have_text("Filters saved.")
    deliver(server, user, "Your invoice for May")
    deadline, found = time.monotonic() + 10, []
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
