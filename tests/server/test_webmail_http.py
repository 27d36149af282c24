"""The webmail's login, session, CSRF and sanitizer over real HTTPS (no browser)."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage
from typing import Any

import requests
import urllib3

from tests.conftest import PASSWORDS, Server

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


def _http() -> requests.Session:
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    return http


def _base(server: Server) -> str:
    return f"https://127.0.0.1:{server.ports['https']}"


def login(server: Server, user: str) -> tuple[requests.Session, str]:
    """A browser-like login: the session, and the bearer token the page would fetch."""
    http = _http()
    base = _base(server)
    got = http.post(
        base + "/login",
        data={"username": user, "password": PASSWORDS[user]},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    assert got.status_code == 303, got.text
    info = http.get(base + "/webmail/session", timeout=10)
    assert info.status_code == 200, info.text
    assert info.json()["username"] == user
    return http, str(info.json()["bearer"])


def _api(http: requests.Session, server: Server, bearer: str | None, calls: Any) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return http.post(
        _base(server) + "/jmap/api/",
        json={"using": USING, "methodCalls": calls},
        headers=headers,
        timeout=30,
    )


def test_login_page_and_headers(server: Server) -> None:
    got = _http().get(_base(server) + "/", timeout=10)
    assert got.status_code == 200
    assert '<form method="post" action="/login"' in got.text
    csp = got.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp.split("style-src")[0]
    assert got.headers["X-Frame-Options"] == "DENY"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    js = _http().get(_base(server) + "/webmail/static/app.js", timeout=10)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    assert _http().get(_base(server) + "/webmail/static/..%2fapp.py", timeout=10).status_code == 404


def test_login_cookie_bearer_csrf_logout(server: Server) -> None:
    base = _base(server)
    user = "alice@example.test"
    wrong = _http().post(
        base + "/login",
        data={"username": user, "password": "not it"},
        headers={"Origin": base},
        timeout=30,
    )
    assert wrong.status_code == 401 and "Wrong address or password" in wrong.text
    assert server.wait_log("event=auth.failed") and "user=alice@example.test" in server.log()
    cross = _http().post(
        base + "/login",
        data={"username": user, "password": PASSWORDS[user]},
        headers={"Origin": "https://evil.example"},
        timeout=30,
    )
    assert cross.status_code == 403  # login CSRF
    http = _http()
    got = http.post(
        base + "/login",
        data={"username": user, "password": PASSWORDS[user]},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    cookie = got.headers["Set-Cookie"]
    assert cookie.startswith("__Host-correo=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute in cookie, cookie
    bearer = http.get(base + "/webmail/session", timeout=10).json()["bearer"]
    echo = [["Core/echo", {"hello": 1}, "0"]]
    assert _api(http, server, bearer, echo).json()["methodResponses"][0][1] == {"hello": 1}
    # the cookie alone may read (EventSource, downloads) but never change anything
    assert _api(http, server, None, echo).status_code == 401
    assert http.get(base + "/.well-known/jmap", timeout=10).json()["username"] == user
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Protocol": "jmap",
    }
    assert http.get(base + "/jmap/ws/", headers=upgrade, timeout=10).status_code == 401
    # the page's WebSocket: the cookie and the session's token in the query, not another
    wrong = http.get(base + "/jmap/ws/?csrf=cw1.wrong", headers=upgrade, timeout=10)
    assert wrong.status_code == 401
    with http.get(
        base + "/jmap/ws/?csrf=" + bearer, headers=upgrade, timeout=10, stream=True
    ) as opened:
        assert opened.status_code == 101
        assert opened.headers["Sec-WebSocket-Protocol"] == "jmap"
    # a bearer token works without the cookie (it is the credential the page holds)
    assert _api(_http(), server, bearer, echo).status_code == 200
    # logout needs the token (CSRF) and a same-origin request
    assert http.post(base + "/logout", headers={"Origin": base}, timeout=10).status_code == 403
    out = http.post(
        base + "/logout",
        headers={"Origin": base, "X-CSRF-Token": bearer},
        allow_redirects=False,
        timeout=10,
    )
    assert out.status_code == 303
    assert _api(_http(), server, bearer, echo).status_code == 401
    assert http.get(base + "/webmail/session", timeout=10).status_code == 401


def test_session_survives_restart(start_server: Any) -> None:
    server: Server = start_server()
    _, bearer = login(server, "bob@example.test")
    server.stop()
    server.start()
    echo = [["Core/echo", {"after": "restart"}, "0"]]
    got = _api(_http(), server, bearer, echo)
    assert got.status_code == 200 and got.json()["methodResponses"][0][1] == {"after": "restart"}


def _deliver(server: Server, to: str, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(message, from_addr="x@sender.example", to_addrs=[to])


def test_sanitized_html_part(server: Server) -> None:
    user = "carol@example.test"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "x@sender.example", user, "html"
    message.set_content("text version")
    message.add_alternative(
        '<p onclick="alert(1)">Hello<script>alert(2)</script>'
        '<a href="javascript:alert(3)">j</a><img src="http://127.0.0.1:9/remote.png">'
        '<img src="cid:logo@x"></p>',
        subtype="html",
    )
    html_part = message.get_payload()[1]  # type: ignore[index]
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", cid="<logo@x>")
    _deliver(server, user, message)
    http, bearer = login(server, user)
    assert server.wait_log("event=delivery.")
    calls = [
        ["Email/query", {"accountId": _account(http, server)}, "0"],
        [
            "Email/get",
            {
                "accountId": _account(http, server),
                "#ids": {"resultOf": "0", "name": "Email/query", "path": "/ids"},
                "properties": ["htmlBody"],
            },
            "1",
        ],
    ]
    got = _api(http, server, bearer, calls).json()["methodResponses"][1][1]["list"][0]
    blob = got["htmlBody"][0]["blobId"]
    page = http.get(_base(server) + f"/webmail/html/{blob}", timeout=10)
    assert page.status_code == 200, page.text
    assert "Hello" in page.text
    for bad in ("<script", "onclick", "javascript:", "127.0.0.1:9"):
        assert bad not in page.text, bad
    assert '<meta name="correo-blocked" content="1">' in page.text
    assert "/jmap/download/" in page.text  # the cid: picture, from the message itself
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    shown = http.get(_base(server) + f"/webmail/html/{blob}?images=1", timeout=10)
    assert "127.0.0.1:9/remote.png" in shown.text
    assert "img-src 'self' data: https: http:" in shown.headers["Content-Security-Policy"]
    assert _http().get(_base(server) + f"/webmail/html/{blob}", timeout=10).status_code == 401


def _account(http: requests.Session, server: Server) -> str:
    session = http.get(_base(server) + "/.well-known/jmap", timeout=10).json()
    return str(session["primaryAccounts"]["urn:ietf:params:jmap:mail"])


def test_account_changes_need_the_token_and_end_with_the_account(start_server: Any) -> None:
    from tests.conftest import correo

    server: Server = start_server()
    http, bearer = login(server, "carol@example.test")
    base = _base(server)
    script = {"script": 'require "fileinto";\nfileinto "Archive";\n'}
    assert http.put(base + "/webmail/account/sieve", json=script, timeout=10).status_code == 403
    saved = http.put(
        base + "/webmail/account/sieve",
        json=script,
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert saved.status_code == 200, saved.text
    assert (
        http.get(base + "/webmail/account/sieve", timeout=10).json()["script"] == script["script"]
    )
    assert correo(server.data, "user", "del", "carol@example.test").returncode == 0
    echo = [["Core/echo", {}, "0"]]
    deadline = time.monotonic() + 10  # the server sees the directory change soon
    while _api(_http(), server, bearer, echo).status_code != 401:
        assert time.monotonic() < deadline, "the session outlived its account"
        time.sleep(0.1)


def test_password_change_ends_the_other_sessions(start_server: Any) -> None:
    server: Server = start_server()
    user = "bob@example.test"
    _, kept = login(server, user)
    _, other = login(server, user)
    changed = _http().post(
        _base(server) + "/webmail/account/password",
        json={"current": PASSWORDS[user], "new": "bob-new-secret-9"},
        headers={"Authorization": f"Bearer {kept}"},
        timeout=30,
    )
    assert changed.status_code == 200, changed.text
    echo = [["Core/echo", {}, "0"]]
    assert _api(_http(), server, kept, echo).status_code == 200
    assert _api(_http(), server, other, echo).status_code == 401
    assert server.wait_log("event=web.password_changed") and "ended=1" in server.log()
