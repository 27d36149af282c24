"""Web sessions: the webmail's login, its cookie, its JMAP bearer token and CSRF checks.

A login (``POST /login``, the account's password through the same throttled check IMAP
uses) makes a random secret ``T`` that only the browser keeps, in a cookie the page's
script cannot read (HttpOnly, Secure, SameSite=Strict, ``__Host-`` prefix).  From ``T``
follows the bearer token ``B = HMAC(T, "jmap")``: the page fetches it once
(``GET /webmail/session``, readable by same-origin script only) and sends it as
``Authorization: Bearer`` to JMAP and as the CSRF token of every change.  The store
keeps a digest of ``B`` with the account and the expiry (``web_session_*``), so a login
survives a restart and is good on every node of a cluster, and a copy of the store opens
no session.

What a session may do without the bearer token (the cookie alone, which a browser sends
with same-site requests only): read, by GET, what the page shows in places where no
header can be added (the event stream, downloads, the sanitized mail frame).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import secrets
import time
from urllib.parse import parse_qs

from aiohttp import web

from correo.server.auth import check_password
from correo.server.context import new_session_id
from correo.web.app import CTX, LOG_FIELDS

__all__ = [
    "APP_CSP",
    "COOKIE",
    "SESSION_SECONDS",
    "add_routes",
    "bearer_for",
    "cookie_bearer",
    "end_other_sessions",
    "harden",
    "session_info",
    "web_account",
]

COOKIE = "__Host-correo"  # RFC 6265bis §4.1.3.2: Secure, Path=/, no Domain
SESSION_SECONDS = 7 * 86400  # a session unused this long ends; each use extends it
_RENEW = 86400  # extended at most once a day (one store write)
_MAX_FORM = 4096
_KEY_PREFIX = b"jmap"
#: The application's CSP: script and style from correo only, nothing inline, no framing.
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def bearer_for(secret: str) -> str:
    """The bearer token (and CSRF token) of the session whose cookie holds ``secret``."""
    mac = hmac.new(secret.encode(), _KEY_PREFIX, hashlib.sha256).digest()
    return "cw1." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _key(bearer: str) -> str:
    return hashlib.sha256(bearer.encode()).hexdigest()


def harden(response: web.StreamResponse, csp: str = APP_CSP) -> web.StreamResponse:
    """The headers every page of the web app carries."""
    response.headers["Content-Security-Policy"] = csp
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _account_of(request: web.Request, bearer: str) -> str | None:
    if not bearer.startswith("cw1.") or len(bearer) > 100:
        return None
    ctx = request.app[CTX]
    key = _key(bearer)
    found = await ctx.store.web_session_get(key)
    if found is None:
        return None
    account, expires = found
    if not ctx.directory.user_exists(account):
        return None  # the account was deleted: its sessions end with it
    now = time.time()
    if expires - now < SESSION_SECONDS - _RENEW:
        await ctx.store.web_session_put(key, account, now + SESSION_SECONDS)
    request[LOG_FIELDS] = {"user": account}
    return account


async def end_other_sessions(request: web.Request, account: str) -> int:
    """End every session of ``account`` but the request's own (after a password change)."""
    _, _, bearer = request.headers.get("Authorization", "").partition(" ")
    return await request.app[CTX].store.web_sessions_end(account, _key(bearer.strip()))


def _cookie_bearer(request: web.Request) -> str | None:
    secret = request.cookies.get(COOKIE, "")
    if not secret or len(secret) > 100:
        return None
    return bearer_for(secret)


async def web_account(request: web.Request) -> str | None:
    """The account of the request's web session: by ``Authorization: Bearer``, or for a
    GET or HEAD by the session cookie (a WebSocket upgrade with the session's token as
    ``?csrf=`` as well); None when it has neither."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return await _account_of(request, value.strip())
    if request.method not in ("GET", "HEAD"):
        return None
    bearer = _cookie_bearer(request)
    if bearer is None:
        return None
    # A WebSocket opened by GET carries JMAP calls that change mail: never by the cookie
    # alone. A browser cannot add a header to it, so the page puts the session's token
    # (the CSRF token) in the query, and it must be the one that follows from the cookie.
    if "websocket" in request.headers.get("Upgrade", "").lower():
        given = request.query.get("csrf", "")
        if not given or not hmac.compare_digest(given.encode(), bearer.encode()):
            return None
    return await _account_of(request, bearer)


def _same_origin(request: web.Request) -> bool:
    """A browser's POST says where it comes from: only this site's own pages may post.

    ``Origin`` (RFC 6454 §7) names the page's origin; where a browser sends ``null`` or
    none, ``Sec-Fetch-Site``, which no page can set, must say ``same-origin``.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin in (None, "null"):
        return site == "same-origin"
    return origin == f"https://{request.host}"


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_length is not None and request.content_length > _MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_FORM, actual_size=request.content_length)
    body = await request.content.read(_MAX_FORM + 1)
    if len(body) > _MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=_MAX_FORM, actual_size=len(body))
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    except ValueError:  # more fields than the forms have: a 500 before
        raise web.HTTPBadRequest(text="too many form fields\n") from None
    return {k: v[0] for k, v in fields.items()}


def login_page(request: web.Request, error: str = "", status: int = 200) -> web.Response:
    """The login form; it works without script."""
    from correo.web.webapp import asset_path

    ctx = request.app[CTX]
    note = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    host = html.escape(ctx.config.hostname)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>correo — sign in</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="{asset_path("app.css")}">
</head><body class="login">
<main><form method="post" action="/login" class="login-form">
<h1>correo</h1><p class="muted">{host}</p>{note}
<label for="username">Address</label>
<input id="username" name="username" type="email" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></main></body></html>
"""
    response = web.Response(text=page, content_type="text/html", status=status)
    harden(response)
    return response


async def start_session(request: web.Request, account: str) -> web.Response:
    """A new session for ``account``: stored; the answer sets its cookie and sends the
    browser to ``/``."""
    secret = secrets.token_urlsafe(32)
    ctx = request.app[CTX]
    await ctx.store.web_session_put(
        _key(bearer_for(secret)), account, time.time() + SESSION_SECONDS
    )
    ctx.log.info("web.login", peer=request.remote or "?", user=account)
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(
        COOKIE,
        secret,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
        max_age=SESSION_SECONDS,
    )
    return response


async def _login(request: web.Request) -> web.Response:
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-site request refused\n")
    form = await _form(request)
    user, password = form.get("username", "").strip(), form.get("password", "")
    if not user or not password:
        return login_page(request, "Give an address and a password.", 400)
    ctx = request.app[CTX]
    outcome = await check_password(
        ctx,
        session=new_session_id(),
        peer_ip=request.remote or "?",
        user=user[:320],
        password=password[:1024],
    )
    if outcome.account is None:
        text = (
            "Too many failed attempts; try later."
            if outcome.locked
            else "Wrong address or password."
        )
        return login_page(request, text, 401)
    return await start_session(request, outcome.account)


async def _logout(request: web.Request) -> web.Response:
    """Ends the session: the bearer token must come along (CSRF), as header or field."""
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-site request refused\n")
    bearer = _cookie_bearer(request)
    given = request.headers.get("X-CSRF-Token", "")
    if not given:
        given = (await _form(request)).get("csrf", "")
    if bearer is None or not hmac.compare_digest(bearer, given):
        raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
    await request.app[CTX].store.web_session_delete(_key(bearer))
    response = web.Response(status=303, headers={"Location": "/"})
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


async def _session_info(request: web.Request) -> web.Response:
    """For the page's script: who is logged in, and the token to send with changes."""
    bearer = _cookie_bearer(request)
    account = await web_account(request) if bearer is not None else None
    if account is None or bearer is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    response = web.json_response(session_info(request, account, bearer))
    harden(response)
    return response


def session_info(request: web.Request, account: str, bearer: str) -> dict[str, object]:
    """What the page's script needs to start: who, the token, the JMAP session."""
    from correo.web.jmap import session_body

    ctx = request.app[CTX]
    return {
        "username": account,
        "bearer": bearer,
        "dev": ctx.dev is not None,
        "admin": ctx.directory.is_admin(account),
        "session": session_body(request, account),
    }


def cookie_bearer(request: web.Request) -> str | None:
    """The bearer token that follows from the request's session cookie, if any."""
    return _cookie_bearer(request)


async def auto_login(request: web.Request) -> web.Response | None:
    """``correo dev``: every login opens the catch-all mailbox, so the page opens it too."""
    ctx = request.app[CTX]
    dev = ctx.dev
    if dev is None:
        return None
    account = await asyncio.to_thread(ctx.directory.verify_password, "dev", "dev")
    if account is None:
        return None
    return await start_session(request, account)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/webmail/session", _session_info)
