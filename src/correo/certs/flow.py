"""One certificate order with the ``acme`` library (RFC 8555 §7.4), start to finish.

Synchronous (the library speaks HTTP with ``requests``): :mod:`correo.certs.manager`
runs it in a worker thread, never on the event loop.  The flow: account (created, or
found by its key: §7.3.1), order, one challenge per authorization published through
the :class:`Responder` and answered (§7.5.1), polling, finalization with a CSR for
the ECDSA P-256 key (the renewed certificate's, else a fresh one), download of the chain.
"""

from __future__ import annotations

import datetime
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC
from requests.adapters import HTTPAdapter

from correo import __version__

__all__ = ["AcmeFailure", "Challenge", "Issued", "Order", "Responder", "new_key", "obtain"]

#: Seconds the CA gets to validate every name and issue (the library polls meanwhile).
ISSUE_DEADLINE = 120.0
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")  # at least 128 bits of entropy (§8.1)
#: Seconds one HTTP request to the ACME server may take.
REQUEST_TIMEOUT = 30


class AcmeFailure(Exception):
    """An order that did not end in a certificate; the message says why, per name."""


class _TlsAlpn01Response(challenges.KeyAuthorizationChallengeResponse):
    typ = "tls-alpn-01"


class _TlsAlpn01(challenges.KeyAuthorizationChallenge):
    """RFC 8737 §3, which recent releases of the library no longer define."""

    response_cls = _TlsAlpn01Response
    typ = "tls-alpn-01"

    def validation(self, account_key: JWK, **unused: Any) -> str:
        return self.key_authorization(account_key)


if "tls-alpn-01" not in challenges.Challenge.TYPES:  # parse it as a key-authorization challenge
    challenges.Challenge.register(_TlsAlpn01)
    challenges.ChallengeResponse.register(_TlsAlpn01Response)


@dataclass(frozen=True, slots=True)
class Challenge:
    """What the servers must show the CA for one name: ``kind`` is the challenge type,
    ``token`` its token (http-01 path), ``key_authorization`` the answer (RFC 8555 §8.1)."""

    kind: str
    name: str
    token: str
    key_authorization: str


class Responder(Protocol):
    """Publishes answers on the listeners; both calls return once the change is live."""

    def publish(self, challenge: Challenge) -> None: ...

    def withdraw(self, challenge: Challenge) -> None: ...


@dataclass(frozen=True, slots=True)
class Order:
    directory: str
    email: str
    names: tuple[str, ...]
    challenge: str  # "tls-alpn-01" or "http-01"
    account_key: bytes  # PEM
    ca_file: Path | None = None
    #: The certificate key to keep (PEM; b"" = a fresh one).  Renewals reuse the key so
    #: the DANE TLSA record published for it (``3 1 1``, RFC 7671 §5.1) stays valid.
    key: bytes = b""


@dataclass(frozen=True, slots=True)
class Issued:
    chain: bytes  # PEM, leaf first
    key: bytes  # PEM


def new_key() -> bytes:
    """A fresh ECDSA P-256 key in PEM (certificates and accounts alike)."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Trust(HTTPAdapter):
    """The system's CAs plus ``[acme] ca_file``, for a private ACME server."""

    def __init__(self, ca_file: Path) -> None:
        self._ctx = ssl.create_default_context()
        self._ctx.load_verify_locations(cafile=str(ca_file))
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ctx
        super().init_poolmanager(*args, **kwargs)


def obtain(order: Order, responder: Responder, stop: threading.Event) -> Issued:
    """Run one order to the end; AcmeFailure (or a library error) when it fails."""
    account = serialization.load_pem_private_key(order.account_key, password=None)
    assert isinstance(account, ec.EllipticCurvePrivateKey)
    jwk = JWKEC(key=account)
    net = client.ClientNetwork(
        jwk,
        alg=ES256,  # RFC 8555 §6.2: ES256 for a P-256 account key
        user_agent=f"correo/{__version__}",
        timeout=REQUEST_TIMEOUT,
    )
    if order.ca_file is not None:
        net.session.mount("https://", _Trust(order.ca_file))
    try:
        acme = client.ClientV2(client.ClientV2.get_directory(order.directory, net), net)
        _account(acme, net, order.email)
        key = order.key or new_key()
        try:
            csr = crypto_util.make_csr(key, list(order.names))
        except (ValueError, TypeError):  # an unreadable stored key: start afresh
            key = new_key()
            csr = crypto_util.make_csr(key, list(order.names))
        pending = acme.new_order(csr)
        published: list[Challenge] = []
        try:
            for authz in pending.authorizations:
                if stop.is_set():
                    raise AcmeFailure("stopped")
                if authz.body.status == messages.STATUS_VALID:
                    continue  # RFC 8555 §7.1.4: an authorization still valid from before
                challb, answer = _pick(authz, order.challenge, jwk)
                responder.publish(answer)
                published.append(answer)
                acme.answer_challenge(challb, challb.chall.response(jwk))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ISSUE_DEADLINE)
            try:
                done = acme.poll_and_finalize(pending, deadline)
            except errors.ValidationError as exc:
                raise AcmeFailure(_why(exc.failed_authzrs)) from None
            except errors.TimeoutError:
                raise AcmeFailure(f"no certificate within {ISSUE_DEADLINE:.0f} s") from None
        finally:
            for answer in published:
                responder.withdraw(answer)
        return Issued(done.fullchain_pem.encode("ascii"), key)
    except messages.Error as exc:  # a problem document from the server (RFC 8555 §6.7)
        raise AcmeFailure(f"ACME server: {exc}") from None
    except requests.RequestException as exc:
        raise AcmeFailure(f"cannot reach the ACME server: {exc}") from None
    finally:
        net.session.close()


def _account(acme: client.ClientV2, net: client.ClientNetwork, email: str) -> None:
    """Register the account key, or find the account it already has (RFC 8555 §7.3.1)."""
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as exc:
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())


def _pick(
    authz: messages.AuthorizationResource, kind: str, jwk: JWK
) -> tuple[messages.ChallengeBody, Challenge]:
    name = str(authz.body.identifier.value)
    for challb in authz.body.challenges:
        chall = challb.chall
        if chall.typ != kind or not isinstance(chall, challenges.KeyAuthorizationChallenge):
            continue
        token = chall.encode("token")
        if not _TOKEN.fullmatch(token):  # RFC 8555 §8.1: base64url, a safe path segment
            raise AcmeFailure(f"{name}: the {kind} token is not base64url")
        return challb, Challenge(kind, name, token, chall.key_authorization(jwk))
    offered = ", ".join(str(c.chall.typ) for c in authz.body.challenges) or "none"
    raise AcmeFailure(f"{name}: the ACME server offers no {kind} challenge (only {offered})")


def _why(failed: list[messages.AuthorizationResource]) -> str:
    """One line per name: the challenge that failed and the CA's problem detail."""
    reasons = []
    for authz in failed:
        name = authz.body.identifier.value
        for challb in authz.body.challenges:
            if challb.error is not None:
                detail = challb.error.detail or challb.error.code or "failed"
                reasons.append(f"{name}: {challb.chall.typ}: {detail}")
    return "; ".join(reasons) or "validation failed"
