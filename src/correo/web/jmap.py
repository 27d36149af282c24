"""JMAP over HTTP (RFC 8620): the session resource, the API, blobs and push.

* ``GET /.well-known/jmap``: the session (§2), for the authenticated user;
* ``POST /jmap/api/``: a Request (§3.3), each invocation dispatched from one table;
* ``POST /jmap/upload/{accountId}/`` and ``GET /jmap/download/…``: blobs (§6);
* ``GET /jmap/eventsource/`` and ``GET /jmap/ws/``: push as Server-Sent Events (§7.3)
  and JMAP over WebSocket (RFC 8887), in :mod:`correo.web.jmap_push`.

Every request authenticates with HTTP Basic (RFC 7617) over TLS: the account's address
and password, through the same throttled check IMAP uses, so failures count toward the
same lockout.  The limits of :class:`correo.jmap.core.Limits` are advertised in the
session and enforced here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from correo.jmap.core import (
    CORE,
    MAIL,
    Limits,
    MethodError,
    RequestError,
    parse_request,
    resolve_references,
)
from correo.jmap.mail import digest_of, find_part
from correo.server.auth import check_password
from correo.server.context import ServerContext, new_session_id
from correo.store.api import StoreError
from correo.web.app import CTX, LOG_FIELDS
from correo.web.jmap_download import STREAM_MIN, stream_message, stream_part
from correo.web.jmap_email import EMAIL_METHODS
from correo.web.jmap_import import IMPORT_METHODS
from correo.web.jmap_mail import ExpungeIndex, MailView
from correo.web.jmap_methods import METHODS, Call
from correo.web.jmap_quota import QUOTA, QUOTA_METHODS
from correo.web.jmap_search import SEARCH_METHODS
from correo.web.jmap_sieve import SIEVE, SIEVE_METHODS, script_blob, sieve_capability
from correo.web.jmap_submission import SUBMISSION, SUBMISSION_METHODS
from correo.web.jmap_vacation import VACATION, VACATION_METHODS
from correo.web.session_auth import web_account

__all__ = ["SESSION_PATH", "account_id", "add_routes", "session_body"]

SESSION_PATH = "/.well-known/jmap"
API_PATH = "/jmap/api/"
WS_PATH = "/jmap/ws/"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
_JSON = "application/json"
# every capability the session object lists may be named in ``using`` (RFC 8620 §3.6.1:
# unknownCapability is for one the server does not support); WebSocket names no methods
_KNOWN = frozenset({CORE, MAIL, SUBMISSION, VACATION, QUOTA, SIEVE, WEBSOCKET})
_ALL_METHODS = {
    **METHODS,
    **EMAIL_METHODS,
    **IMPORT_METHODS,
    **SEARCH_METHODS,
    **SUBMISSION_METHODS,
    **VACATION_METHODS,
    **QUOTA_METHODS,
    **SIEVE_METHODS,
}
_NEEDS = {
    **{name: CORE if name.startswith("Core/") else MAIL for name in _ALL_METHODS},
    **dict.fromkeys(SUBMISSION_METHODS, SUBMISSION),  # RFC 8621 §1.3.3
    **dict.fromkeys(VACATION_METHODS, VACATION),
    **dict.fromkeys(QUOTA_METHODS, QUOTA),
    **dict.fromkeys(SIEVE_METHODS, SIEVE),
}
_UPLOADS_HELD = 4  # an account's uploads of the last hour: this many maxSizeUpload
_UPLOAD_TTL = 3600.0  # RFC 8620 §6.1: an unused upload is kept at least an hour

INDEX = web.AppKey("jmap_index", ExpungeIndex)
LIMITS = web.AppKey("jmap_limits", Limits)
BUSY = web.AppKey("jmap_busy", dict)
STOPPING = web.AppKey("jmap_stopping", asyncio.Event)


def account_id(account: str) -> str:
    """The account's JMAP id: stable, and free of ``@`` (RFC 8620 §1.2 Id syntax)."""
    return "A" + hashlib.sha256(account.encode()).hexdigest()[:20]


def _problem(error: RequestError) -> web.Response:
    return web.json_response(
        error.body(), status=error.status, content_type="application/problem+json"
    )


async def _authenticate(request: web.Request) -> str:
    """The account of a request's Basic credentials; 401 if there are none that fit."""
    ctx = request.app[CTX]
    web_session = await web_account(request)  # the webmail's bearer token (or cookie on GET)
    if web_session is not None:
        return web_session
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Basic realm="correo", charset="UTF-8"'}
    if scheme.lower() != "basic" or not value or len(value) > 4096:
        raise web.HTTPUnauthorized(headers=challenge, text="authentication required\n")
    try:
        user, colon, password = (
            base64.b64decode(value.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        raise web.HTTPUnauthorized(headers=challenge, text="malformed credentials\n") from None
    if not colon or not user:
        raise web.HTTPUnauthorized(headers=challenge, text="malformed credentials\n")
    outcome = await check_password(
        ctx,
        session=new_session_id(),
        peer_ip=request.remote or "?",
        user=user[:320],
        password=password[:1024],
    )
    if outcome.account is None:
        raise web.HTTPUnauthorized(headers=challenge, text="authentication failed\n")
    request[LOG_FIELDS] = {"user": outcome.account}
    return outcome.account


def _base(request: web.Request) -> str:
    return f"https://{request.host}"


async def _session(request: web.Request) -> web.Response:
    account = await _authenticate(request)
    body = session_body(request, account)
    return web.json_response(body, headers={"Cache-Control": "no-cache, no-store"})


def session_body(request: web.Request, account: str) -> dict[str, Any]:
    """The session resource of ``account`` (RFC 8620 §2), as the request's host names it."""
    limits = request.app[LIMITS]
    ident = account_id(account)
    base = _base(request)
    body: dict[str, Any] = {
        "capabilities": {
            CORE: limits.capability(),
            MAIL: {},
            SUBMISSION: {},
            VACATION: {},
            QUOTA: {},
            SIEVE: {},
            # RFC 8887 §4: requests and push over one WebSocket
            WEBSOCKET: {"url": "wss://" + request.host + WS_PATH, "supportsPush": True},
        },
        "accounts": {
            ident: {
                "name": account,
                "isPersonal": True,
                "isReadOnly": False,
                "accountCapabilities": {
                    MAIL: {
                        "maxMailboxesPerEmail": None,
                        "maxMailboxDepth": None,
                        "maxSizeMailboxName": 255,
                        "maxSizeAttachmentsPerEmail": limits.max_size_upload,
                        "emailQuerySortOptions": ["receivedAt", "size", "id"],
                        "mayCreateTopLevelMailbox": True,
                    },
                    CORE: {},
                    # RFC 8621 §1.3.2: sent at once, no delayed sending or SMTP extensions
                    SUBMISSION: {"maxDelayedSend": 0, "submissionExtensions": {}},
                    VACATION: {},  # the account's Sieve vacation (jmap_vacation.py)
                    QUOTA: {},  # RFC 9425 §3: the account's STORAGE and MESSAGE quotas
                    SIEVE: sieve_capability(  # RFC 9661 §2: ManageSieve's scripts
                        request.app[CTX].config.delivery.max_script_size,
                        request.app[CTX].config.delivery.max_scripts,
                    ),
                },
            }
        },
        "primaryAccounts": {
            CORE: ident,
            MAIL: ident,
            SUBMISSION: ident,
            VACATION: ident,
            QUOTA: ident,
            SIEVE: ident,
        },
        "username": account,
        "apiUrl": base + API_PATH,
        "downloadUrl": base + "/jmap/download/{accountId}/{blobId}/{name}?accept={type}",
        "uploadUrl": base + "/jmap/upload/{accountId}/",
        "eventSourceUrl": base
        + "/jmap/eventsource/?types={types}&closeafter={closeafter}&ping={ping}",
    }
    body["state"] = _session_state(account, limits)
    return body


def _session_state(account: str, limits: Limits) -> str:
    seed = json.dumps([account, limits.capability(), sorted(_KNOWN)], sort_keys=True)
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


class _Slot:
    """At most ``most`` requests of one account at a time (maxConcurrentRequests)."""

    def __init__(self, busy: dict[str, int], account: str, most: int, what: str) -> None:
        self.busy, self.account, self.most, self.what = busy, account, most, what

    def __enter__(self) -> None:
        if self.busy.get(self.account, 0) >= self.most:
            raise RequestError("limit", "too many requests at once", limit=self.what)
        self.busy[self.account] = self.busy.get(self.account, 0) + 1

    def __exit__(self, *exc: object) -> None:
        left = self.busy.get(self.account, 1) - 1
        if left > 0:
            self.busy[self.account] = left
        else:
            self.busy.pop(self.account, None)


async def _read_body(request: web.Request, most: int, what: str) -> bytes:
    """The request body, refused (before reading) when larger than ``most``."""
    if request.content_length is not None and request.content_length > most:
        raise RequestError("limit", "the request is too large", limit=what)
    data = bytearray()
    while chunk := await request.content.read(65536):
        data += chunk
        if len(data) > most:
            raise RequestError("limit", "the request is too large", limit=what)
    return bytes(data)


async def _api(request: web.Request) -> web.Response:
    account = await _authenticate(request)
    app = request.app
    ctx, limits = app[CTX], app[LIMITS]
    try:
        with _Slot(app[BUSY], account, limits.max_concurrent_requests, "maxConcurrentRequests"):
            body = await _read_body(request, limits.max_size_request, "maxSizeRequest")
            value = await decode_json(body)
            parsed = parse_request(value, limits, _KNOWN)
            octets: list[int] = []
            answer = await _run(
                ctx, app[INDEX], limits, account, parsed, peer=request.remote or "", octets=octets
            )
    except RequestError as exc:
        return _problem(exc)
    answer["sessionState"] = _session_state(account, limits)
    return web.Response(body=await encode_json(answer, sum(octets)), content_type=_JSON)


_INLINE_JSON = 256 * 1024  # octets of JSON parsed or made on the event loop (< 1 ms)
# arrays and objects a request may hold (brackets inside strings counted too, which no
# real request comes near): orjson holds the GIL for all of its parse, even in a worker
# thread, and 3 million empty arrays (9 MB, under maxSizeRequest) held it 1.1 s
_MAX_CONTAINERS = 100_000


async def decode_json(body: bytes | str) -> Any:
    """A request's JSON: a small one parsed at once, a larger one in a worker thread
    (a hop costs more than the parse when the machine is busy)."""
    if isinstance(body, str):
        containers = body.count("[") + body.count("{")
    else:
        containers = body.count(b"[") + body.count(b"{")
    if containers > _MAX_CONTAINERS:
        raise RequestError("limit", "too many arrays and objects", limit="maxSizeRequest")
    try:
        if len(body) <= _INLINE_JSON:
            return orjson.loads(body)
        return await asyncio.to_thread(orjson.loads, body)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        raise RequestError("notJSON", "the request is not JSON") from None


async def encode_json(answer: dict[str, Any], octets: int = 0) -> bytes:
    """An answer as UTF-8 JSON (RFC 8620 §3.4); made in a worker thread when the
    methods read ``octets`` of messages into it, else at once."""
    if octets <= _INLINE_JSON:
        return _dumps(answer)
    return await asyncio.to_thread(_dumps, answer)


def _dumps(answer: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer past 64 bits: the standard encoder takes it
        return json.dumps(answer, ensure_ascii=False).encode()


async def _run(
    ctx: ServerContext,
    index: ExpungeIndex,
    limits: Limits,
    account: str,
    parsed: Any,
    *,
    peer: str = "",
    octets: list[int] | None = None,
) -> dict[str, Any]:
    """The answer to a parsed Request; ``octets`` gets the octets of messages its
    methods read into it (how costly it is to encode)."""
    view = MailView(ctx.store, account, index)
    call = Call(
        view,
        account_id(account),
        limits,
        ctx.log,
        mailbox_limit=ctx.config.limits.mailboxes_per_account,
        max_message=ctx.config.limits.message_size or 50_000_000,
        hostname=ctx.config.hostname,
        created=dict(parsed.created_ids or {}),
        ctx=ctx,
        peer=peer,
    )
    responses: list[tuple[str, dict[str, Any], str]] = []
    for invocation in parsed.calls:
        name = invocation.name
        try:
            method = _ALL_METHODS.get(name)
            if method is None:
                raise MethodError("unknownMethod", name[:100])
            if _NEEDS[name] not in parsed.using:  # RFC 8620 §3.6.2: capability not in using
                raise MethodError("unknownMethod", f"{name} needs {_NEEDS[name]} in using")
            args = resolve_references(invocation.arguments, responses)
            result = await method(call, args)
            if name.endswith(("/set", "/copy", "/import")):
                index.bump(account)  # push reads the states of every type again
            responses.append((name, result, invocation.call_id))
            for implied in call.implicit:  # RFC 8621 §7.5: same call id, after ours
                responses.append((*implied, invocation.call_id))
            call.implicit.clear()
        except MethodError as exc:
            responses.append(("error", exc.arguments(), invocation.call_id))
        except StoreError as exc:
            ctx.log.warning("jmap.store_failed", method=name[:100], error=str(exc)[:300])
            responses.append(("error", {"type": "serverFail"}, invocation.call_id))
            view.forget()
        except Exception as exc:  # a bug costs this call only (RFC 8620 §3.6.2 serverFail)
            ctx.log.error("jmap.error", method=name[:100], error=repr(exc)[:300])
            responses.append(("error", {"type": "serverFail"}, invocation.call_id))
            view.forget()
    if octets is not None:
        octets.append(call.octets)
    out: dict[str, Any] = {"methodResponses": [list(r) for r in responses]}
    if parsed.created_ids is not None:
        out["createdIds"] = call.created
    return out


# -- blobs (RFC 8620 §6) ---------------------------------------------------------------


def _uploads(ctx: ServerContext, account: str) -> Path:
    return ctx.config.data_dir / "jmap-uploads" / account_id(account)


async def _upload(request: web.Request) -> web.Response:
    account = await _authenticate(request)
    if request.match_info["account"] != account_id(account):
        return web.json_response({"type": "accountNotFound"}, status=404)
    app = request.app
    limits, ctx = app[LIMITS], app[CTX]
    try:
        with _Slot(app[BUSY], "up:" + account, limits.max_concurrent_upload, "maxConcurrentUpload"):
            data = await _read_body(request, limits.max_size_upload, "maxSizeUpload")
    except RequestError as exc:
        return _problem(exc)
    digest = hashlib.sha256(data).hexdigest()
    folder = _uploads(ctx, account)
    ctype = request.headers.get("Content-Type", "application/octet-stream")[:200]

    room = _UPLOADS_HELD * limits.max_size_upload

    def save() -> bool:
        folder.mkdir(parents=True, exist_ok=True)
        now, held = time.time(), 0
        for old in folder.iterdir():  # uploads nobody used within the hour go
            info = old.stat()
            if now - info.st_mtime > _UPLOAD_TTL:
                old.unlink(missing_ok=True)
            else:
                held += info.st_size
        path = folder / digest[:24]
        if path.exists():
            path.touch()  # the same octets again: one copy, kept another hour
            return True
        if held + len(data) > room:
            return False  # the account's uploads of the last hour fill its room
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        return True

    if not await asyncio.to_thread(save):
        return _problem(
            RequestError("limit", "too many uploads within the hour", 413, "maxSizeUpload")
        )
    return web.json_response(
        {
            "accountId": account_id(account),
            "blobId": "U" + digest[:24],
            "type": ctype,
            "size": len(data),
        },
        status=201,
    )


async def _download(request: web.Request) -> web.StreamResponse:
    account = await _authenticate(request)
    ctx = request.app[CTX]
    if request.match_info["account"] != account_id(account):
        raise web.HTTPNotFound(text="no such account\n")
    blob = request.match_info["blob"]
    name = request.match_info["name"]
    accept = request.query.get("accept", "application/octet-stream")
    if "\r" in accept or "\n" in accept or len(accept) > 200:
        accept = "application/octet-stream"
    disposition = {"Content-Disposition": _attachment(name)}
    if blob.startswith("Z"):  # a Sieve script (RFC 9661 §2: its content is a blob)
        for script, _ in await ctx.store.sieve_list(account):
            text = await ctx.store.sieve_get(account, script)
            if text is not None and script_blob(text) == blob:
                return web.Response(body=text.encode(), content_type=accept, headers=disposition)
        raise web.HTTPNotFound(text="no such blob\n")
    if blob.startswith("U") and len(blob) == 25 and digest_of("B" + blob[1:]):
        path = _uploads(ctx, account) / blob[1:]
        if not await asyncio.to_thread(path.is_file):
            raise web.HTTPNotFound(text="no such blob\n")
        # sent from the file in pieces (sendfile where the loop has it), never read whole
        return web.FileResponse(path, headers={**disposition, "Content-Type": accept})
    base, _, part = blob.partition("p")
    digest = digest_of(base)
    if digest is None or base[0] != "B" or (part and not part.isdigit()):
        raise web.HTTPNotFound(text="no such blob\n")
    view = MailView(ctx.store, account, request.app[INDEX])
    email = (await view.emails()).get(digest)
    if email is None:
        raise web.HTTPNotFound(text="no such blob\n")
    # RFC 8620 §6.2: the type is what the client asked for; the blob is not to be sniffed
    headers = {
        **disposition,
        "Content-Type": accept,
        "Cache-Control": "private, immutable, max-age=31536000",
    }
    if not part:
        return await stream_message(request, view, email.first, headers)
    if email.first.info.size >= STREAM_MIN:
        streamed = await stream_part(request, view, email.first, part, headers)
        if streamed is not None:
            return streamed
    limit = ctx.config.limits.message_size or 50_000_000
    try:
        raw = await view.raw(email.first, limit)
    except StoreError:
        raise web.HTTPNotFound(text="no such blob\n") from None
    found = await asyncio.to_thread(find_part, raw, part)
    if found is None:
        raise web.HTTPNotFound(text="no such blob\n")
    return web.Response(body=found[0], headers=headers)


def _attachment(name: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename*=UTF-8''{quote(name[:200], safe='')}"


def add_routes(app: web.Application) -> None:
    """The JMAP endpoints, with their shared state (limits, the expunge index)."""
    limits = Limits(max_size_upload=app[CTX].config.limits.message_size or 50_000_000)
    app[LIMITS] = limits
    app[INDEX] = ExpungeIndex()
    app[BUSY] = {}
    app[STOPPING] = asyncio.Event()

    async def stop(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(stop)
    from correo.web import jmap_push

    app[jmap_push.HUB] = jmap_push.PushHub(app[CTX], app[INDEX], app[STOPPING])
    app.router.add_get(SESSION_PATH, _session)
    app.router.add_post(API_PATH, _api)
    app.router.add_post("/jmap/api", _api)
    app.router.add_post("/jmap/upload/{account}/", _upload)
    app.router.add_get("/jmap/download/{account}/{blob}/{name}", _download)
    app.router.add_get("/jmap/eventsource/", jmap_push.eventsource)
    app.router.add_get(WS_PATH, jmap_push.websocket)
