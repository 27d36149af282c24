"""The webmail on the ``https`` listener: its page, its static files, and mail HTML made
safe to show.

* ``GET /``: the webmail for a logged-in browser, else the login form
  (:mod:`correo.web.session_auth`); in ``correo dev`` the catch-all mailbox at once;
* ``GET /account``: the account page (:mod:`correo.web.account`); ``GET /admin``: the
  admin page (:mod:`correo.web.admin`);
* ``GET /webmail/static/{name}``: the page's modules and style, from the package
  (``correo/web/static``: plain JavaScript modules, no build step, nothing from elsewhere);
* ``GET /webmail/html/{blobId}[?images=1]``: one HTML body part of a message, sanitized
  (:mod:`correo.web.sanitize`) in a worker thread, its ``cid:`` pictures pointed at the
  JMAP download URL, served with a CSP of its own for the page's sandboxed frame.

Everything else the page does, it does over JMAP with the session's bearer token.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
from importlib.resources import files
from urllib.parse import quote

from aiohttp import web

from correo.jmap.mail import _decoded, _leaves, digest_of, parse_message
from correo.store.api import StoreError
from correo.web import account, admin, session_auth
from correo.web.app import CTX
from correo.web.jmap import INDEX, account_id
from correo.web.jmap_mail import MailView
from correo.web.sanitize import frame_csp, sanitize_html
from correo.web.session_auth import harden, web_account

__all__ = ["add_routes", "sanitized_document"]

_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_MAX_HTML = 4 * 1024 * 1024  # a larger HTML part is offered as a download instead
_FRAME_STYLE = (
    "body{font:15px/1.45 system-ui,sans-serif;margin:12px;color:#1d232b;"
    "overflow-wrap:anywhere}img{max-width:100%;height:auto}"
    "table{max-width:100%}pre{white-space:pre-wrap}"
)


def _load() -> tuple[str, dict[str, tuple[bytes, str, str]]]:
    """Every static file once: ``(version, {name: (bytes, type, etag)})``; the version is a
    digest of them all, so a release's files get new URLs and old ones can be cached for
    good (RFC 9111 §5.2.2, RFC 8246 ``immutable``)."""
    folder = files("correo.web").joinpath("static")
    found: dict[str, tuple[bytes, str, str]] = {}
    whole = hashlib.sha256()
    for item in sorted(folder.iterdir(), key=lambda i: i.name):
        suffix = "." + item.name.rpartition(".")[2]
        if suffix not in _TYPES or item.name.startswith(".") or not item.is_file():
            continue
        data = item.read_bytes()
        whole.update(item.name.encode() + b"\0" + data)
        found[item.name] = (data, _TYPES[suffix], f'"{hashlib.sha256(data).hexdigest()[:20]}"')
    version = whole.hexdigest()[:16]
    for name, (data, ctype, _) in list(found.items()):
        if name.endswith(".html"):  # the pages name the versioned folder
            data = data.replace(b'"/webmail/static/', f'"/webmail/v/{version}/'.encode())
            found[name] = (data, ctype, f'"{hashlib.sha256(data).hexdigest()[:20]}"')
    return version, found


_ASSETS: tuple[str, dict[str, tuple[bytes, str, str]]] | None = None


def _assets() -> tuple[str, dict[str, tuple[bytes, str, str]]]:
    global _ASSETS
    if _ASSETS is None:
        _ASSETS = _load()
    return _ASSETS


def static_file(name: str) -> tuple[bytes, str] | None:
    """A static file (pages with their links to the versioned folder), or None."""
    found = _assets()[1].get(name)
    return None if found is None else (found[0], found[1])


def asset_path(name: str) -> str:
    """The URL of static file ``name`` that may be cached for good."""
    return f"/webmail/v/{_assets()[0]}/{name}"


def _serve(request: web.Request, name: str, cache: str) -> web.Response:
    found = _assets()[1].get(name)
    if found is None or name.endswith(".html"):
        raise web.HTTPNotFound(text="no such file\n")
    data, ctype, etag = found
    if etag in request.headers.get("If-None-Match", ""):  # RFC 9110 §13.1.2
        response = web.Response(status=304)
    else:
        response = web.Response(body=data, content_type=ctype)
    harden(response)
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = cache
    return response


async def _asset(request: web.Request) -> web.Response:
    # revalidated each time: a new release shows at once
    return _serve(request, request.match_info["name"], "no-cache")


async def _versioned(request: web.Request) -> web.Response:
    """A file under the release's digest never changes: cached for a year, unasked."""
    same = request.match_info["version"] == _assets()[0]
    cache = "public, max-age=31536000, immutable" if same else "no-cache"
    return _serve(request, request.match_info["name"], cache)


async def _index(request: web.Request) -> web.Response:
    account = await web_account(request)
    bearer = session_auth.cookie_bearer(request)
    if account is None or bearer is None:
        opened = await session_auth.auto_login(request)  # correo dev: the catch-all at once
        return opened or session_auth.login_page(request)
    # What the script would ask for first comes with the page (one round trip less): the
    # session, its JMAP session resource and the inbox's id.
    boot = session_auth.session_info(request, account, bearer)
    try:
        inbox = await MailView(request.app[CTX].store, account, request.app[INDEX]).box_by_name(
            "INBOX"
        )
    except StoreError:
        inbox = None
    boot["inbox"] = inbox.id if inbox is not None else None
    found = static_file("index.html")
    assert found is not None
    content = html.escape(json.dumps(boot, separators=(",", ":")), quote=True)
    body = found[0].replace(
        b'<meta name="correo-boot" content="">',
        f'<meta name="correo-boot" content="{content}">'.encode(),
    )
    response = web.Response(body=body, content_type="text/html")
    harden(response)
    return response


def sanitized_document(raw: bytes, part_id: str, download: str, *, images: bool) -> str | None:
    """The frame document of HTML part ``part_id`` of ``raw``; None when there is none.

    ``download`` is the JMAP download URL of the message's blob with ``{part}`` and
    ``{name}`` left to fill in, for the ``cid:`` pictures.
    """
    message = parse_message(raw)
    leaves = _leaves(message)
    html_part = next((p for p in leaves if p.part_id == part_id), None)
    if html_part is None or html_part.message.get_content_type() != "text/html":
        return None
    cids: dict[str, str] = {}
    for leaf in leaves:
        cid = leaf.message.get("Content-ID")
        if cid and leaf.message.get_content_maintype() == "image":
            ctype = leaf.message.get_content_type()
            cids[str(cid).strip().strip("<>")] = download.format(
                part=leaf.part_id, name="inline", type=quote(ctype, safe="/")
            )
    text, _ = _decoded(html_part.message)
    result = sanitize_html(text[:_MAX_HTML], cids.get, images=images)
    note = "" if images else f'<meta name="correo-blocked" content="{result.blocked}">'
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{note}'
        f"<style>{_FRAME_STYLE}</style></head><body>{result.html}</body></html>"
    )


async def _html(request: web.Request) -> web.Response:
    account = await web_account(request)
    if account is None:
        raise web.HTTPUnauthorized(text="not logged in\n")
    ctx = request.app[CTX]
    base, _, part = request.match_info["blob"].partition("p")
    digest = digest_of(base)
    if digest is None or not base.startswith("B") or not part.isdigit():
        raise web.HTTPNotFound(text="no such part\n")
    view = MailView(ctx.store, account, request.app[INDEX])
    found = (await view.emails()).get(digest)
    if found is None:
        raise web.HTTPNotFound(text="no such message\n")
    try:
        raw = await view.raw(found.first, ctx.config.limits.message_size or 50_000_000)
    except StoreError:
        raise web.HTTPNotFound(text="no such message\n") from None
    images = request.query.get("images") == "1"
    download = f"/jmap/download/{account_id(account)}/{base}p{{part}}/{{name}}?accept={{type}}"
    document = await asyncio.to_thread(sanitized_document, raw, part, download, images=images)
    if document is None:
        raise web.HTTPNotFound(text="no such HTML part\n")
    response = web.Response(text=document, content_type="text/html")
    harden(response, frame_csp(images))
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def add_routes(app: web.Application) -> None:
    """The webmail and its login (every ``https`` listener)."""
    _assets()  # read once, at start
    session_auth.add_routes(app)
    account.add_routes(app)
    admin.add_routes(app)
    app.router.add_get("/", _index)
    app.router.add_get("/webmail/static/{name}", _asset)
    app.router.add_get("/webmail/v/{version}/{name}", _versioned)
    app.router.add_get("/webmail/html/{blob}", _html)
