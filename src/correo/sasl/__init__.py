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
    Step,
    server_mechanism,
)

__all__ = [
    "SUPPORTED",
    "Challenge",
    "Credentials",
    "Failed",
    "LocalProtocolError",
    "LoginMechanism",
    "Mechanism",
    "PlainMechanism",
    "Step",
    "server_mechanism",
]
