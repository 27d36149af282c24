"""The webmail in a real headless chromium against a real server: login, reading mail
delivered over SMTP, push, moving (and IMAP agreeing), and hostile mail that must run
nothing and load nothing."""

from __future__ import annotations

import email
import email.policy
import http.server
import smtplib
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.conftest import PASSWORDS, Server
from tests.server.imap_helpers import imap

Shot = Callable[[Page, str], Path]
FIREFOX = True  # these run in Firefox as well (conftest.py)


def deliver(server: Server, to: str, subject: str, text: str = "Hello.\n", html: str = "") -> None:
    message = EmailMessage()
    message["From"] = "Sender Example <sender@sender.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(message, from_addr="sender@sender.example", to_addrs=[to])


def prepare(server: Server, user: str) -> None:
    """A first IMAP login makes the special-use mailboxes (Archive, Trash, …)."""
    client = imap(server, user)
    client.logout()


def log_in(page: Page, server: Server, user: str) -> None:
    page.goto(f"https://127.0.0.1:{server.ports['https']}/")
    page.get_by_label("Address").fill(user)
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body.ready")).to_be_visible()


def row(page: Page, subject: str):  # type: ignore[no-untyped-def]
    return page.locator("#rows .row", has_text=subject)


def test_login_read_and_push(server: Server, page: Page, errors: list[str], shot: Shot) -> None:
    user = "alice@example.test"
    prepare(server, user)
    deliver(server, user, "Quarterly figures", "The figures are attached in spirit.\n")
    page.goto(f"https://127.0.0.1:{server.ports['https']}/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "webmail-login")
    page.get_by_label("Address").fill(user)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong address or password.")
    # the refused login's 401 (chromium reports it on the console as well)
    assert [e for e in errors if not e.startswith("console:")] == [
        f"401 POST https://127.0.0.1:{server.ports['https']}/login"
    ], errors
    errors.clear()
    page.get_by_label("Password").fill(PASSWORDS[user])
    page.get_by_label("Address").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body.ready")).to_be_visible()
    inbox = page.locator("#mailboxes .mailbox[data-role=inbox]")
    expect(inbox.locator(".count")).to_have_text("1")
    row(page, "Quarterly figures").click()
    expect(page.locator("#reader .text-body")).to_contain_text("attached in spirit")
    expect(inbox.locator(".count")).to_have_count(0)  # read: no unread left
    # push: a message delivered while the page is open appears without a reload
    deliver(server, user, "Arrived by push", "New.\n")
    expect(row(page, "Arrived by push")).to_be_visible()
    expect(inbox.locator(".count")).to_have_text("1")
    shot(page, "webmail-reading")
    page.set_viewport_size({"width": 390, "height": 760})  # a phone: one column at a time
    expect(page.locator("#reader")).to_be_visible()
    expect(page.locator("#list")).to_be_hidden()
    shot(page, "webmail-phone")
    page.get_by_role("button", name="Back to the list").click()
    expect(row(page, "Arrived by push")).to_be_visible()
    assert errors == []


def test_move_by_keyboard_and_drag_agrees_with_imap(
    server: Server, page: Page, errors: list[str], browser_name: str
) -> None:
    user = "bob@example.test"
    prepare(server, user)
    deliver(server, user, "Move me by keys")
    deliver(server, user, "Drag me")
    log_in(page, server, user)
    row(page, "Move me by keys").click()
    expect(page.locator("#reader h2")).to_have_text("Move me by keys")
    page.locator("#list").focus()
    page.keyboard.press("m")
    page.get_by_label("Move to", exact=True).select_option(label="Archive")
    page.locator("#mover").get_by_role("button", name="Move", exact=True).click()
    expect(row(page, "Move me by keys")).to_have_count(0)
    if browser_name == "chromium":
        trash = page.locator("#mailboxes .mailbox[data-role=trash]")
        for _ in range(3):  # a push re-drawing the list mid-drag drops the drag: again
            row(page, "Drag me").drag_to(trash)
            try:
                expect(row(page, "Drag me")).to_have_count(0)
                break
            except AssertionError:
                continue
    else:  # Playwright's BiDi has no HTML drag and drop yet: the key does the same
        row(page, "Drag me").click()
        page.locator("#list").focus()
        page.keyboard.press("#")
    expect(row(page, "Drag me")).to_have_count(0)
    client = imap(server, user)
    try:
        for box, subject in (("Archive", "Move me by keys"), ("Trash", "Drag me")):
            client.select(box)
            _, found = client.search(None, "SUBJECT", f'"{subject}"')
            assert found[0].split(), (box, subject)
        client.select("INBOX")
        _, left = client.search(None, "ALL")
        assert left == [b""]
    finally:
        client.logout()
    assert errors == []


# one transparent pixel
_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Notes every request: hostile mail must make none until images are asked for."""

    paths: list[str] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(_GIF)

    def log_message(self, *args: object) -> None:
        pass


def test_hostile_mail_runs_nothing_and_loads_nothing(
    server: Server, page: Page, errors: list[str], shot: Shot
) -> None:
    user = "carol@example.test"
    prepare(server, user)
    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    recorder.RequestHandlerClass.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    remote = f"http://127.0.0.1:{recorder.server_address[1]}"
    hostile = f"""<html><head>
<meta http-equiv="refresh" content="0;url={remote}/refresh">
<link rel="stylesheet" href="{remote}/style.css">
<style>@import url({remote}/import.css); body {{ background: url({remote}/bg.png) }}</style>
<script src="{remote}/script.js"></script>
<script>alert("script tag"); window.top.document.title = "pwned";</script>
<base href="{remote}/">
</head><body onload="alert('onload')">
<h1>Totally harmless</h1>
<p style="background-image: url({remote}/inline.png)">styled</p>
<img src="x" onerror="alert('onerror')">
<a href="javascript:alert('link')" id="jslink">click me</a>
<svg><script>alert('svg')</script><image href="{remote}/svg.png"/></svg>
<svg onload="alert('svg onload')"></svg>
<iframe src="{remote}/frame.html"></iframe>
<object data="{remote}/object.swf"></object>
<video poster="{remote}/poster.png"></video>
<form action="{remote}/form"><input type="submit" value="go"></form>
<table background="{remote}/table.png"><tr><td>cell</td></tr></table>
<img src="{remote}/tracker.gif" alt="tracker">
</body></html>"""
    try:
        deliver(server, user, "Hostile", "plain part\n", hostile)
        log_in(page, server, user)
        row(page, "Hostile").click()
        frame_element = page.locator("#reader iframe")
        expect(frame_element).to_have_attribute(
            "sandbox", "allow-same-origin allow-popups allow-popups-to-escape-sandbox"
        )
        frame = page.frame_locator("#reader iframe")
        expect(frame.locator("h1")).to_have_text("Totally harmless")
        expect(page.locator(".images-note")).to_contain_text("1 remote image was not loaded")
        shot(page, "webmail-hostile-blocked")
        # read the frame from the page (no script of ours runs inside the frame)
        inside = "(query) => document.querySelector('#reader iframe').contentDocument" + (
            ".querySelectorAll(query).length"
        )
        assert (
            page.evaluate(inside, "script, iframe, object, form, svg, link, meta[http-equiv]") == 0
        )
        assert (
            page.evaluate(
                "() => [...document.querySelector('#reader iframe').contentDocument"
                ".querySelectorAll('*')].flatMap(e => [...e.attributes])"
                ".filter(a => a.name.startsWith('on') || /javascript:|url\\(/i.test(a.value))"
                ".length"
            )
            == 0
        )
        frame.locator("a", has_text="click me").click()
        assert page.title() == "correo"
        assert errors == [], errors
        # a positive end point: asking for images loads the one picture, and only it
        page.get_by_role("button", name="Show images").click()
        page.wait_for_function(
            "() => { const f = document.querySelector('#reader iframe');"
            " const d = f && f.contentDocument;"
            " const i = d && d.querySelector('img[alt=tracker]');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert recorder.RequestHandlerClass.paths == ["/tracker.gif"]  # type: ignore[attr-defined]
        assert errors == [], errors
        assert page.title() == "correo"
    finally:
        recorder.shutdown()
        recorder.server_close()


def test_dev_inbox_shows_mail_sent_by_smtplib(page: Page, errors: list[str], shot: Shot) -> None:
    """``correo dev`` prints the web address; the page opens the catch-all at once."""
    from tests.server.test_dev_mode import start_dev

    dev = start_dev()
    try:
        message = EmailMessage()
        message["From"], message["To"] = "app@shop.example", "customer@anywhere.example"
        message["Subject"] = "Your order has shipped"
        message.set_content("Tracking number: 12345\n")
        message.add_alternative("<p>Tracking number: <b>12345</b></p>", subtype="html")
        with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=30) as smtp:
            smtp.send_message(message)
        page.goto(f"https://127.0.0.1:{dev.ports['https']}/")
        expect(page.locator("body.ready")).to_be_visible()  # no login form: the catch-all
        row(page, "Your order has shipped").click()
        frame = page.frame_locator("#reader iframe")
        expect(frame.locator("b")).to_have_text("12345")
        shot(page, "dev-inbox")
        assert errors == [], errors
    finally:
        assert dev.stop() == 0, "".join(dev.stderr)[-3000:]


def test_compose_and_send_arrives_over_imap(
    server: Server, page: Page, errors: list[str], shot: Shot
) -> None:
    """Written in the page with an attachment, sent by EmailSubmission, read over IMAP."""
    sender, to = "alice@example.test", "bob@example.test"
    prepare(server, sender)
    log_in(page, server, sender)
    page.keyboard.press("c")
    composer = page.locator("#composer")
    expect(composer).to_be_visible()
    composer.get_by_label("To", exact=True).fill(f"Bob Example <{to}>")
    composer.get_by_label("Subject").fill("Lunch on Friday? Café Zoë")
    composer.get_by_label("Message text", exact=True).fill("Shall we try the new place?\n")
    composer.locator("input[type=file]").set_input_files(
        files=[{"name": "menü.txt", "mimeType": "text/plain", "buffer": b"soup\nbread\n"}]
    )
    expect(composer.locator("#attached")).to_contain_text("menü.txt")
    shot(page, "webmail-compose")
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_be_hidden()
    deadline = time.monotonic() + 15
    raw = b""
    while not raw and time.monotonic() < deadline:
        client = imap(server, to)
        try:
            client.select("INBOX")
            _, hits = client.search(None, "SUBJECT", '"Lunch on Friday"')
            if hits[0].split():
                _, data = client.fetch(hits[0].split()[0], "(BODY.PEEK[])")
                raw = data[0][1]  # type: ignore[index]
        finally:
            client.logout()
        time.sleep(0.1)
    assert raw, "the message did not arrive"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(message["Subject"]) == "Lunch on Friday? Café Zoë"
    assert message["To"].addresses[0].addr_spec == to
    body = message.get_body(("plain",))
    assert body is not None and "Shall we try the new place?" in body.get_content()
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "menü.txt"
    assert attachment.get_content() == "soup\nbread\n"
    page.locator("#mailboxes .mailbox[data-role=sent]").click()
    expect(row(page, "Lunch on Friday?")).to_be_visible()
    page.locator("#mailboxes .mailbox[data-role=drafts]").click()
    expect(page.locator("#list-status")).to_have_text("No messages")
    assert errors == [], errors


def test_search_and_keyboard_flags(server: Server, page: Page, errors: list[str]) -> None:
    user = "carol@example.test"
    prepare(server, user)
    deliver(server, user, "Zebra crossing report", "Stripes everywhere.\n")
    deliver(server, user, "Unrelated note", "Nothing to see.\n")
    log_in(page, server, user)
    page.keyboard.press("/")
    page.get_by_label("Search mail").fill("zebra")
    page.get_by_label("Search mail").press("Enter")
    expect(row(page, "Zebra crossing report")).to_be_visible()
    expect(row(page, "Unrelated note")).to_have_count(0)
    row(page, "Zebra crossing report").click()
    page.locator("#list").focus()
    page.keyboard.press("s")  # star
    expect(row(page, "Zebra crossing report").locator(".flag")).to_have_text("★")
    client = imap(server, user)
    try:
        client.select("INBOX")
        _, found = client.search(None, "FLAGGED")
        assert len(found[0].split()) == 1
    finally:
        client.logout()
    assert errors == [], errors


PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e1e2d0"
    "6d0000000049454e44ae426082"
)


def test_inline_picture_and_attachment_download(
    server: Server, page: Page, errors: list[str]
) -> None:
    user = "bob@example.test"
    prepare(server, user)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "s@sender.example", user, "Pictures"
    message.set_content("see the picture\n")
    message.add_alternative(
        '<p>Logo: <img alt="logo" src="cid:logo@sender.example"></p>', subtype="html"
    )
    html_part = message.get_payload()[1]  # type: ignore[index]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@sender.example>")
    message.add_attachment(b"col1,col2\n1,2\n", maintype="text", subtype="csv", filename="data.csv")
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(message, from_addr="s@sender.example", to_addrs=[user])
    log_in(page, server, user)
    row(page, "Pictures").click()
    # the message's own picture loads inside the sandboxed frame (same origin, cookie)
    page.wait_for_function(
        "() => { const f = document.querySelector('#reader iframe');"
        " const d = f && f.contentDocument;"
        " const i = d && d.querySelector('img[alt=logo]');"
        " return i && i.complete && i.naturalWidth === 1; }"
    )
    expect(page.locator(".images-note")).to_have_count(0)  # nothing remote was left out
    with page.expect_download() as info:
        page.get_by_role("link", name="data.csv").click()
    download = info.value
    assert download.suggested_filename == "data.csv"
    assert Path(download.path()).read_bytes().replace(b"\r\n", b"\n") == b"col1,col2\n1,2\n"
    assert errors == [], errors
