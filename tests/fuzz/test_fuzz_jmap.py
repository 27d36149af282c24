"""Property tests for the JMAP core under hostile input: any decoded JSON is a request
or a request error, any arguments resolve or fail as a method error, any token is a
state or nothing, and any octets parse as an Email (never another exception)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.jmap.core import (
    Limits,
    MethodError,
    Request,
    RequestError,
    parse_request,
    resolve_references,
)
from correo.jmap.mail import parse_email, read_state

KNOWN = frozenset({"urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(json_values)
def test_any_json_is_a_request_or_a_request_error(value: Any) -> None:
    try:
        request = parse_request(value, Limits(), KNOWN)
    except RequestError as exc:
        assert exc.body()["type"].startswith("urn:ietf:params:jmap:error:")
    else:
        assert isinstance(request, Request)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["#ids", "ids", "filter", "#x", "x"]), json_values))
def test_any_arguments_resolve_or_fail_as_a_method_error(args: dict[str, Any]) -> None:
    responses = [("Email/query", {"ids": ["E1"], "list": [{"id": "a"}]}, "0")]
    try:
        resolved = resolve_references(args, responses)
    except MethodError as exc:
        assert exc.arguments()["type"] in ("invalidResultReference", "invalidArguments")
    else:
        assert not any(k.startswith("#") for k in resolved)


@given(st.text(max_size=200))
def test_any_token_is_a_state_or_none(token: str) -> None:
    state = read_state(token)
    assert state is None or isinstance(state, dict)


@settings(max_examples=200)
@given(st.binary(max_size=2000))
def test_any_octets_parse_as_an_email(raw: bytes) -> None:
    props = ["subject", "from", "textBody", "htmlBody", "attachments", "bodyValues",
             "preview", "bodyStructure", "header:X:asText", "sentAt", "messageId"]  # fmt: skip
    out = parse_email(raw, props, blob="Bx", body_values={"all": True})
    assert set(props) <= set(out)
