"""DANE in an outbound session (RFC 7672): the server's chain against the target's TLSA.

The TLS handshake itself authenticates nothing for a DANE target (it uses the
opportunistic context); right after it, before EHLO is repeated and anything else is
sent, :func:`dane_failure` checks the chain the server sent with
:func:`correo.dane.check_chain` and says why the host must not get the mail.
"""

from __future__ import annotations

import ssl

from correo.dane.match import check_chain
from correo.queue.routing import Target

__all__ = ["DANE_STATUS", "dane_failure", "peer_chain"]

#: RFC 7672 §2.2 leaves the code to us: RFC 3463 X.7.5, cryptographic failure.
DANE_STATUS = "4.7.5"


def peer_chain(sslobj: ssl.SSLObject | None) -> list[bytes]:
    """The certificates the server sent, leaf first, as DER (unverified: DANE checks them).

    Python 3.13 makes ``get_unverified_chain`` public; before, the same OpenSSL call
    (SSL_get_peer_cert_chain) is a method of the private ``_sslobj``.  Without either,
    the leaf alone: DANE-EE still works, DANE-TA then fails closed.
    """
    if sslobj is None:
        return []
    getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    chain = getter() if getter is not None else None
    if chain:
        return [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain]
    leaf = sslobj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


_DER: int = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]  # 3.11's Certificate.public_bytes


def dane_failure(target: Target, sslobj: ssl.SSLObject | None) -> str | None:
    """Why the session with a DANE target must stop (None: go on, or not DANE).

    A target whose TLSA records are all unusable only needs TLS (RFC 7672 §2.2)."""
    if not target.dane or not target.tlsa:
        return None
    return check_chain(target.tlsa, peer_chain(sslobj), target.names)
