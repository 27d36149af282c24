"""The LMTP server session (RFC 2033): the SMTP session with LHLO and one reply per
recipient after the data.

LMTP is how a local MTA (Postfix ``virtual_transport = lmtp:...``) hands mail to
correo's store.  Everything but the final reply is the MX role of
:class:`~correo.server.smtp_session.SmtpSession` — same extensions, same recipient
routing (local recipients and aliases only: LMTP never relays), same spooling — so
this module only switches the core to LMTP mode and answers per recipient, letting
one recipient succeed, another be deferred (4xx) and a third refused (5xx, Sieve
reject) in one transaction.
"""

from __future__ import annotations

from correo.delivery.local import DeliveryReport
from correo.server.connection import Connection
from correo.server.context import ServerContext
from correo.server.smtp_session import SmtpSession, _Transaction
from correo.smtp import Reply, ServerConnection

__all__ = ["LmtpSession"]


class LmtpSession(SmtpSession):
    def __init__(self, ctx: ServerContext, conn: Connection) -> None:
        super().__init__(ctx, conn, "lmtp")
        self.core = ServerConnection(self.core.limits, lmtp=True)  # RFC 2033 §4.1: LHLO
        self.core.tls_active = conn.tls_active

    def _send(self, reply: Reply) -> None:
        # RFC 2033 §4.2: after the data every accepted recipient gets a reply; a failure
        # of the whole message (size, storage) is that failure for each of them.
        self.last_code = reply.code
        count = max(1, self.core.replies_expected)
        self._replies[reply.code // 100].inc(count)
        self.conn.write(self.core.send_many([reply] * count))

    def _answer_data(self, tx: _Transaction, delivered: DeliveryReport) -> None:
        outcomes = iter(delivered.outcomes)
        replies: list[Reply] = []
        for rcpt in tx.rcpts:  # RFC 2033 §4.2: in the order of the RCPT commands
            outcome = next(outcomes, None) if rcpt is not None else None
            if rcpt is None or outcome is None:
                replies.append(Reply(250, "2.1.5", f"Ok: queued as {tx.queue_id}"))
            else:
                text = f"{outcome.text} <{rcpt.address}>"
                replies.append(Reply(outcome.code, outcome.status, text))
        self.last_code = replies[-1].code if replies else 250
        for reply in replies:
            self._replies[reply.code // 100].inc()
        self.conn.write(self.core.send_many(replies))
