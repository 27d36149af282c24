"""Answering TLS-ALPN-01 (RFC 8737) on the live TLS listeners.

While a name is being validated, a handshake that names it (SNI) and offers the ALPN
protocol ``acme-tls/1`` gets the validation certificate; every other handshake goes
on with the server's own certificate.  What Python's ``ssl`` allows, as checked on
OpenSSL 3 (tests/unit/test_tls_alpn.py):

* The SNI callback runs before ALPN is negotiated and before the certificate is
  chosen.  Assigning ``ssl_object.context`` there (OpenSSL's ``SSL_set_SSL_CTX``)
  makes the handshake use that context's certificate *and* its ALPN list, so
  ``acme-tls/1`` is negotiated on the swapped context.
* The SNI callback cannot see the ALPN protocols the client offered.  The context's
  message callback (``SSLContext._msg_callback``, CPython's handshake-tracing hook)
  receives the ClientHello before the SNI callback runs, so its ALPN extension is read
  there.  The hook is set only while a validation is pending: connections opened at
  other times pay nothing for it.
* On a Python without that hook, any handshake naming a name under validation gets
  the validation certificate for the seconds the validation lasts.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Sequence

__all__ = ["ACME_TLS_ALPN", "AlpnChallenges", "offered_alpn"]

ACME_TLS_ALPN = b"acme-tls/1"  # RFC 8737 §6.2
_HANDSHAKE = 22  # TLS ContentType handshake (RFC 8446 §5.1)
_CLIENT_HELLO = 1  # HandshakeType client_hello (RFC 8446 §4)
_ALPN_EXTENSION = 16  # RFC 7301 §3.1
#: Whether this Python has the message hook (CPython 3.8+ does, undocumented).
_HAS_PEEK = hasattr(ssl.SSLContext, "_msg_callback")


def offered_alpn(hello: bytes) -> list[bytes]:
    """The ALPN protocol names a ClientHello offers; [] if none, or if it is malformed.

    ``hello`` is the handshake message with or without its 4-octet header.  One pass,
    every length checked against what is there (the peer is not trusted).
    """
    data = memoryview(hello)
    if len(data) >= 4 and data[0] == _CLIENT_HELLO and _int(data[1:4]) == len(data) - 4:
        data = data[4:]
    pos = 2 + 32  # RFC 8446 §4.1.2: legacy_version, random
    for width in (1, 2, 1):  # legacy_session_id, cipher_suites, legacy_compression_methods
        if pos + width > len(data):
            return []
        pos += width + _int(data[pos : pos + width])
    if pos + 2 > len(data):
        return []  # no extensions at all
    end = min(len(data), pos + 2 + _int(data[pos : pos + 2]))
    pos += 2
    while pos + 4 <= end:
        kind, size = _int(data[pos : pos + 2]), _int(data[pos + 2 : pos + 4])
        pos += 4
        if kind == _ALPN_EXTENSION:
            body = data[pos : min(end, pos + size)]
            names: list[bytes] = []
            i, stop = 2, min(len(body), 2 + _int(body[:2]))  # RFC 7301 §3.1 ProtocolNameList
            while i < stop:
                length = body[i]
                if i + 1 + length > stop:
                    break
                names.append(bytes(body[i + 1 : i + 1 + length]))
                i += 1 + length
            return names
        pos += size
    return []


def _int(octets: memoryview) -> int:
    return int.from_bytes(octets, "big")


class AlpnChallenges:
    """The validation contexts by name, and the hooks on the serving contexts.

    Changed only on the event loop's thread, where the handshakes run as well.
    """

    def __init__(self) -> None:
        self._pending: dict[str, ssl.SSLContext] = {}
        self._serving: list[ssl.SSLContext] = []
        self._offered: weakref.WeakSet[object] = weakref.WeakSet()

    def attach(self, contexts: Sequence[ssl.SSLContext]) -> None:
        """Route validation handshakes on ``contexts`` (the listeners' own)."""
        for ctx in contexts:
            if ctx not in self._serving:
                ctx.sni_callback = self._select
                self._serving.append(ctx)

    def add(self, name: str, validation: ssl.SSLContext) -> None:
        """Serve ``validation`` (certificate and ALPN acme-tls/1) for ``name`` from now on."""
        self._pending[name.lower()] = validation
        self._peek(True)

    def remove(self, name: str) -> None:
        self._pending.pop(name.lower(), None)
        if not self._pending:
            self._peek(False)

    @property
    def pending(self) -> tuple[str, ...]:
        return tuple(self._pending)

    def _peek(self, on: bool) -> None:
        if not _HAS_PEEK:
            return
        for ctx in self._serving:
            setattr(ctx, "_msg_callback", self._hello if on else None)  # noqa: B010

    def _hello(
        self,
        conn: object,
        direction: str,
        version: object,
        content_type: int,
        msg_type: int,
        data: bytes,
    ) -> None:
        """Message hook: note the connections whose ClientHello offers acme-tls/1."""
        if direction != "read" or content_type != _HANDSHAKE or msg_type != _CLIENT_HELLO:
            return
        try:
            if ACME_TLS_ALPN in offered_alpn(data):
                self._offered.add(conn)
        except Exception:
            pass

    def _select(self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        """SNI callback (before ALPN and certificate selection)."""
        if not name or not self._pending:
            return
        validation = self._pending.get(name.lower())
        if validation is None:
            return
        if _HAS_PEEK and conn not in self._offered:
            return  # RFC 8737 §4: the validation certificate is for acme-tls/1 only
        self._offered.discard(conn)
        conn.context = validation
