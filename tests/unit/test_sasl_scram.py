"""The SCRAM server mechanism without sockets: RFC 5802 / RFC 7677 test vectors, the
state machine, SASLprep (RFC 4013) and hostile messages."""

from __future__ import annotations

import base64

import pytest

from correo.sasl import (
    Challenge,
    ChannelBinding,
    Credentials,
    Failed,
    ScramContext,
    ScramVerifier,
    Success,
    make_verifier,
    parse_verifiers,
    server_mechanism,
)
from correo.sasl import scram as scram_module
from correo.sasl.saslprep import SaslprepError, saslprep

SALT_256 = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")  # RFC 7677 §3
SALT_1 = base64.b64decode("QSXCR+Q6sek8bf92")  # RFC 5802 §5


def context(
    verifiers: dict[str, ScramVerifier], binding: ChannelBinding | None = None
) -> ScramContext:
    return ScramContext(
        lookup=lambda user, family: verifiers.get(family) if user == "user" else None,
        binding=binding,
        secret=b"k" * 32,
        iterations={"SCRAM-SHA-1": 4096, "SCRAM-SHA-256": 4096},
    )


@pytest.mark.parametrize(
    "family, salt, c_nonce, s_nonce, proof, signature",
    [
        (
            "SCRAM-SHA-256",
            SALT_256,
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
        (
            "SCRAM-SHA-1",
            SALT_1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
    ],
)
def test_rfc_vectors(
    monkeypatch: pytest.MonkeyPatch,
    family: str,
    salt: bytes,
    c_nonce: str,
    s_nonce: str,
    proof: str,
    signature: str,
) -> None:
    """RFC 7677 §3 and RFC 5802 §5: user "user", password "pencil", i=4096."""
    verifier = make_verifier(family, "pencil", 4096, salt)
    monkeypatch.setattr(scram_module.secrets, "token_urlsafe", lambda n: s_nonce)
    mech = server_mechanism(family, context({family: verifier}))
    assert mech is not None
    first = mech.start(f"n,,n=user,r={c_nonce}".encode())
    nonce = c_nonce + s_nonce
    b64salt = base64.b64encode(salt).decode()
    assert first == Challenge(f"r={nonce},s={b64salt},i=4096".encode())
    done = mech.step(f"c=biws,r={nonce},p={proof}".encode())
    assert isinstance(done, Credentials) and done.authcid == "user" and done.proof is not None
    assert done.proof.valid and done.proof.server_final == f"v={signature}".encode()
    assert mech.step(b"") == Success()
    assert isinstance(mech.step(b""), Failed)  # over


def test_verifier_round_trip() -> None:
    one = make_verifier("SCRAM-SHA-1", "pencil", 4096)
    two = make_verifier("SCRAM-SHA-256", "pencil", 8192)
    stored = f"{one.encode()} {two.encode()} SCRAM-SHA-256$x:y$z junk"
    assert parse_verifiers(stored) == {"SCRAM-SHA-1": one, "SCRAM-SHA-256": two}
    assert "pencil" not in repr(one) and "stored_key" not in repr(two)


def test_saslprep() -> None:
    """RFC 4013 §3 examples."""
    assert saslprep("I\u00adX") == "IX"
    assert saslprep("user") == "user"
    assert saslprep("USER") == "USER"
    assert saslprep("\u00aa") == "a"
    assert saslprep("\u2168") == "IX"
    assert saslprep("a\u00a0b") == "a b"
    for bad in ("\u0007", "\u0627\u0031"):
        with pytest.raises(SaslprepError):
            saslprep(bad)


def exchange_first(mech_name: str, first: bytes, binding: ChannelBinding | None = None) -> object:
    verifier = make_verifier("SCRAM-SHA-256", "pencil", 4096, SALT_256)
    mech = server_mechanism(mech_name, context({"SCRAM-SHA-256": verifier}, binding))
    assert mech is not None
    return mech.start(first)


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"n,,",
        b"q,,n=user,r=abc",
        b"n,x=y,n=user,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,,m=1,n=user,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=,r=abc",
        b"n,,r=abc,n=user",
        b"n,,n=user,r=",
        b"n,,n=user,r=a b",
        b"n,,n=user,r=abc,junk",
        b"n,,n=user,r=abc\x00",
        b"n,,n=\xff,r=abc",
        b"p=tls-unique,,n=user,r=abc",  # binding asked of a mechanism without -PLUS
        b"n,,n=user,r=" + b"a" * 5000,
    ],
)
def test_bad_client_first(first: bytes) -> None:
    assert isinstance(exchange_first("SCRAM-SHA-256", first), Failed)


def test_channel_binding_rules() -> None:
    cb = ChannelBinding("tls-unique", b"\x01" * 12)
    assert server_mechanism("SCRAM-SHA-256-PLUS", context({})) is None  # nothing to bind to
    assert isinstance(exchange_first("SCRAM-SHA-256", b"y,,n=user,r=abc", cb), Failed)
    assert isinstance(exchange_first("SCRAM-SHA-256", b"y,,n=user,r=abc"), Challenge)
    assert isinstance(exchange_first("SCRAM-SHA-256-PLUS", b"n,,n=user,r=abc", cb), Failed)
    plus = b"p=tls-exporter,,n=user,r=abc"
    assert isinstance(exchange_first("SCRAM-SHA-256-PLUS", plus, cb), Failed)
    unique = b"p=tls-unique,,n=user,r=abc"
    assert isinstance(exchange_first("SCRAM-SHA-256-PLUS", unique, cb), Challenge)


def test_escaped_names_and_authzid() -> None:
    seen: list[str] = []

    def lookup(user: str, family: str) -> ScramVerifier | None:
        seen.append(user)
        return None

    ctx = ScramContext(
        lookup=lookup,
        binding=None,
        secret=b"s" * 32,
        iterations={"SCRAM-SHA-256": 8192},
    )
    mech = server_mechanism("SCRAM-SHA-256", ctx)
    assert mech is not None
    first = mech.start(b"n,a=b=3Dc,n=a=2Cb,r=abc")
    assert isinstance(first, Challenge) and b",i=8192" in first.data
    assert seen == ["a,b"]
    nonce = first.data.split(b",")[0][2:]
    done = mech.step(b"c=" + base64.b64encode(b"n,a=b=3Dc,") + b",r=" + nonce + b",p=AAAA")
    assert isinstance(done, Credentials) and done.authzid == "b=c" and done.proof is not None
    assert not done.proof.valid and done.proof.server_final == b""
    assert isinstance(mech.step(b""), Failed)  # no Success after a refused proof


@pytest.mark.parametrize(
    "final",
    [
        b"c=biws,r={n}",  # no proof
        b"c=biws,r=other,p=AAAA",  # wrong nonce
        b"c=!!,r={n},p=AAAA",
        b"c=biws,r={n},p=!!",
        b"r={n},c=biws,p=AAAA",
        b"c=biws,r={n},x,p=AAAA",
        b"c=biws,r={n},p=AAAA\xff",
    ],
)
def test_bad_client_final(final: bytes) -> None:
    verifier = make_verifier("SCRAM-SHA-256", "pencil", 4096, SALT_256)
    mech = server_mechanism("SCRAM-SHA-256", context({"SCRAM-SHA-256": verifier}))
    assert mech is not None
    first = mech.start(b"n,,n=user,r=abc")
    assert isinstance(first, Challenge)
    nonce = first.data.split(b",")[0][2:]
    assert isinstance(mech.step(final.replace(b"{n}", nonce)), Failed)


def test_wrong_header_in_final_fails_the_proof() -> None:
    """c= must repeat the gs2 header of client-first (RFC 5802 §5.1)."""
    verifier = make_verifier("SCRAM-SHA-256", "pencil", 4096, SALT_256)
    mech = server_mechanism("SCRAM-SHA-256", context({"SCRAM-SHA-256": verifier}))
    assert mech is not None
    first = mech.start(b"n,,n=user,r=abc")
    assert isinstance(first, Challenge)
    nonce = first.data.split(b",")[0][2:]
    done = mech.step(b"c=eSws,r=" + nonce + b",p=" + base64.b64encode(bytes(32)))
    assert isinstance(done, Credentials) and done.proof is not None and not done.proof.valid
