"""correo.sasl: server-side SASL mechanisms (RFC 4422), sans-I/O, bytes in and out."""

from correo.sasl.mechanisms import (
    SUPPORTED,
    Challenge,
    Credentials,
    Failed,
    LocalProtocolError,
    LoginMechanism,
    Mechanism,
    PlainMechanism,
    ScramProof,
    Step,
    Success,
    server_mechanism,
)
from correo.sasl.scram import (
    SCRAM_MECHANISMS,
    ChannelBinding,
    ScramContext,
    ScramMechanism,
    ScramVerifier,
    make_verifier,
    parse_verifiers,
)

__all__ = [
    "SCRAM_MECHANISMS",
    "SUPPORTED",
    "Challenge",
    "ChannelBinding",
    "Credentials",
    "Failed",
    "LocalProtocolError",
    "LoginMechanism",
    "Mechanism",
    "PlainMechanism",
    "ScramContext",
    "ScramMechanism",
    "ScramProof",
    "ScramVerifier",
    "Step",
    "Success",
    "make_verifier",
    "parse_verifiers",
    "server_mechanism",
]
