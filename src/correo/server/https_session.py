"""The asyncio shell around :mod:`correo.http`: one request per connection, then close.

Only what mail needs from the web is served (the MTA-STS policy, client
autoconfiguration); the request head is bounded and must arrive within the command
timeout (at most 30 seconds), so the listener cannot be held open by a slow client.
"""

from __future__ import annotations

import time

from correo.http import HttpError, Site, parse_request, response
from correo.http.request import MAX_HEAD
from correo.server.connection import Connection, capped, remaining
from correo.server.context import ServerContext, new_session_id

__all__ = ["HttpsSession", "site_for"]


def site_for(ctx: ServerContext) -> Site:
    """What this server publishes: its local domains, as the directory has them now."""
    config = ctx.config
    listening = {**config.listen, **{k: tuple(v) for k, v in ctx.bound.items()}}
    ports = {service: addrs[0][1] for service, addrs in listening.items() if addrs}
    return Site(
        config.hostname,
        ctx.directory.domains,
        ports,
        config.mta_sts.mode,
        config.mta_sts.max_age,
    )


class HttpsSession:
    def __init__(self, ctx: ServerContext, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.id = new_session_id()
        self.shutdown_requested = False
        self.site = site_for(ctx)

    @property
    def in_transaction(self) -> bool:
        return False  # nothing to finish: a shutdown may cut a request off

    async def run(self) -> None:
        limit = capped(self.ctx.config.limits.command_timeout, 30.0)
        started = time.monotonic()
        buf = bytearray()
        try:
            while (end := buf.find(b"\r\n\r\n")) < 0:
                if len(buf) > MAX_HEAD:
                    raise HttpError(431, "request head too large")
                try:
                    data = await self.conn.read(remaining(limit, started))
                except TimeoutError:
                    raise HttpError(408, "request head not received in time") from None
                if not data:
                    return
                buf += data
            request = parse_request(bytes(buf[:end]))
            answer = self.site.answer(request)
            self.conn.write(answer)
            self.ctx.log.info(
                "https.request",
                session=self.id,
                peer=self.conn.peer,
                host=request.host,
                path=request.path[:200],
                status=int(answer[9:12]),  # "HTTP/1.1 NNN"
            )
        except HttpError as exc:
            self.conn.write(response(exc.status, (str(exc) + "\n").encode()))
            self.ctx.log.info(
                "https.refused", session=self.id, peer=self.conn.peer, status=exc.status
            )
        except Exception as exc:  # a bug still gets an answer, and costs this request only
            self.conn.write(response(500, b"Internal server error\n"))
            self.ctx.log.error(
                "https.error", session=self.id, peer=self.conn.peer, error=repr(exc)[:300]
            )
        finally:
            await self.conn.close(linger=min(limit, 5.0))
