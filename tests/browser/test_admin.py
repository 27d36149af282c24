"""The admin page in chromium: an administrator adds a user who then logs in; an alias
added there delivers; a non-administrator is turned away; every change is logged."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.browser.test_webmail import deliver, row
from tests.conftest import PASSWORDS, Server, correo

Shot = Callable[[Page, str], Path]


def _log_in(page: Page, server: Server, user: str, password: str) -> None:
    page.goto(f"https://127.0.0.1:{server.ports['https']}/")
    page.get_by_label("Address").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body.ready")).to_be_visible()


def test_admin_adds_a_user_who_logs_in(
    start_server: Any, browser: Browser, page: Page, shot: Shot
) -> None:
    server: Server = start_server()
    done = correo(server.data, "user", "admin", "alice@example.test", "on")
    assert done.returncode == 0 and "is an administrator" in done.stdout, done.stderr
    _log_in(page, server, "alice@example.test", PASSWORDS["alice@example.test"])
    page.get_by_role("link", name="Admin").click()
    expect(page.locator("body.ready")).to_be_visible()
    expect(page.locator("#users")).to_contain_text("bob@example.test")
    users = page.locator("#user-form")
    users.get_by_label("New user's address").fill("erin@example.test")
    users.get_by_label("New user's password").fill("erin-secret-55")
    users.get_by_role("button", name="Add user").click()
    expect(page.locator("#users")).to_contain_text("erin@example.test")
    aliases = page.locator("#alias-form")
    aliases.get_by_label("Alias", exact=True).fill("sales@example.test")
    aliases.get_by_label("Alias target").fill("erin@example.test")
    aliases.get_by_role("button", name="Add alias").click()
    expect(page.locator("#aliases")).to_contain_text("sales@example.test")
    domains = page.locator("#domains li", has_text="example.test")
    domains.get_by_role("button", name="DNS records").click()
    records = page.get_by_label("DNS records")
    expect(records).to_contain_text("example.test.\t3600\tIN\tMX\t10 localhost.")
    assert records.inner_text().count("._domainkey.") == 2  # an ed25519 and an RSA key
    page.once("dialog", lambda dialog: dialog.accept())
    domains.get_by_role("button", name="Rotate DKIM keys").click()
    expect(page.locator("#admin-status")).to_have_text("Done: dkim.rotate example.test")
    expect(records).to_have_text(re.compile(r"(\._domainkey\.[\s\S]*){4}"))  # new and retired
    assert server.wait_log("action=dkim.rotate target=example.test ok=True")
    shot(page, "webmail-admin")
    assert server.wait_log("action=user.add target=erin@example.test ok=True")
    assert "by=alice@example.test" in server.log()
    deliver(server, "sales@example.test", "A lead for sales")
    other = browser.new_context(ignore_https_errors=True)
    try:
        erin = other.new_page()
        _log_in(erin, server, "erin@example.test", "erin-secret-55")
        expect(row(erin, "A lead for sales")).to_be_visible()
        expect(erin.get_by_role("link", name="Admin")).to_be_hidden()
        refused = erin.request.get(f"https://127.0.0.1:{server.ports['https']}/webmail/admin/state")
        assert refused.status == 403
    finally:
        other.close()
