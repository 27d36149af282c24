"""Server-side SASL PLAIN and LOGIN: tables of exchanges, plus a fuzz invariant."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correo.sasl import (
    SUPPORTED,
    Challenge,
    Credentials,
    Failed,
    LocalProtocolError,
    Step,
    server_mechanism,
)


def test_supported_and_lookup() -> None:
    assert SUPPORTED == ("PLAIN", "LOGIN")
    for name in ("plain", "PLAIN", "Login", "LOGIN"):
        mech = server_mechanism(name)
        assert mech is not None
        assert mech.name == name.upper()
    assert server_mechanism("CRAM-MD5") is None
    assert server_mechanism("") is None


PLAIN_CASES: list[tuple[bytes, Step]] = [
    (b"\x00alice\x00secret", Credentials("", "alice", "secret")),
    (b"admin\x00alice\x00s e c", Credentials("admin", "alice", "s e c")),
    ("\x00jos\u00e9\x00p\u00e4ss".encode(), Credentials("", "jos\u00e9", "p\u00e4ss")),
    (b"alice\x00secret", Failed("Malformed PLAIN message")),
    (b"\x00a\x00b\x00c", Failed("Malformed PLAIN message")),
    (b"", Failed("Malformed PLAIN message")),
    (b"\x00\x00secret", Failed("Empty user name or password")),
    (b"\x00alice\x00", Failed("Empty user name or password")),
    (b"\x00al\xffice\x00secret", Failed("PLAIN fields must be UTF-8")),
    (b"\xc3\x00alice\x00secret", Failed("PLAIN fields must be UTF-8")),
]


@pytest.mark.parametrize(("message", "expected"), PLAIN_CASES)
def test_plain_initial_response(message: bytes, expected: Step) -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert mech.start(message) == expected


@pytest.mark.parametrize(("message", "expected"), PLAIN_CASES)
def test_plain_after_empty_challenge(message: bytes, expected: Step) -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert mech.start(None) == Challenge(b"")
    assert mech.step(message) == expected


def test_plain_step_after_completion_fails() -> None:
    mech = server_mechanism("PLAIN")
    assert mech is not None
    assert isinstance(mech.start(b"\x00a\x00b"), Credentials)
    assert isinstance(mech.step(b"\x00a\x00b"), Failed)


LOGIN_CASES: list[tuple[bytes | None, list[bytes], list[Step]]] = [
    (
        None,
        [b"alice", b"secret"],
        [Challenge(b"Username:"), Challenge(b"Password:"), Credentials("", "alice", "secret")],
    ),
    (b"alice", [b"secret"], [Challenge(b"Password:"), Credentials("", "alice", "secret")]),
    (None, [b""], [Challenge(b"Username:"), Failed("Invalid user name")]),
    (b"", [], [Failed("Invalid user name")]),
    (b"alice", [b""], [Challenge(b"Password:"), Failed("Invalid password")]),
    (b"al\x00ice", [], [Failed("Invalid user name")]),
    (b"alice", [b"\xff"], [Challenge(b"Password:"), Failed("Invalid password")]),
    (b"alice", [b"pa\x00ss"], [Challenge(b"Password:"), Failed("Invalid password")]),
]


@pytest.mark.parametrize(("initial", "responses", "expected"), LOGIN_CASES)
def test_login_exchanges(
    initial: bytes | None, responses: list[bytes], expected: list[Step]
) -> None:
    mech = server_mechanism("LOGIN")
    assert mech is not None
    got = [mech.start(initial)] + [mech.step(r) for r in responses]
    assert got == expected


def test_credentials_repr_hides_password() -> None:
    creds = Credentials("", "alice", "hunter2")
    assert "hunter2" not in repr(creds)
    assert "hunter2" not in str(creds)
    assert "alice" in repr(creds)


def test_misuse_raises_local_error() -> None:
    for name in SUPPORTED:
        mech = server_mechanism(name)
        assert mech is not None
        with pytest.raises(LocalProtocolError):
            mech.step(b"x")
        mech.start(None)
        with pytest.raises(LocalProtocolError):
            mech.start(None)


@given(
    name=st.sampled_from(SUPPORTED),
    initial=st.none() | st.binary(max_size=64),
    responses=st.lists(st.binary(max_size=64), max_size=4),
)
def test_fuzz_mechanisms(name: str, initial: bytes | None, responses: list[bytes]) -> None:
    """Invariant: any client bytes yield Challenge, Credentials or Failed, never an
    exception, and once Credentials or Failed is returned every later step fails."""
    mech = server_mechanism(name)
    assert mech is not None
    finished = False
    for step in [mech.start(initial)] + [mech.step(r) for r in responses]:
        assert isinstance(step, Challenge | Credentials | Failed)
        if finished:
            assert isinstance(step, Failed)
        if isinstance(step, Credentials):
            assert step.authcid and step.password
            assert "\x00" not in step.authcid + step.password + step.authzid
        finished = finished or not isinstance(step, Challenge)
