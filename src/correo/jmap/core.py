"""The JMAP request envelope (RFC 8620 §3): parsing, limits, result references, errors.

Pure functions over decoded JSON values.  A malformed request is a :class:`RequestError`
(problem details, §3.6.1, answered with HTTP 400); a failing method call is a
:class:`MethodError` whose ``error`` invocation takes the call's place (§3.6.2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CORE",
    "MAIL",
    "Invocation",
    "Limits",
    "MethodError",
    "Request",
    "RequestError",
    "SetError",
    "is_id",
    "parse_request",
    "resolve_references",
]

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
_ERR = "urn:ietf:params:jmap:error:"
_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # RFC 8620 §1.2


def is_id(value: object) -> bool:
    """RFC 8620 §1.2: 1-255 octets of the URL-safe base64 alphabet."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Limits:
    """The core capability's limits (RFC 8620 §2), advertised and enforced."""

    max_size_upload: int = 50_000_000
    max_concurrent_upload: int = 4
    max_size_request: int = 10_000_000
    max_concurrent_requests: int = 4
    max_calls_in_request: int = 16
    max_objects_in_get: int = 500
    max_objects_in_set: int = 500

    def capability(self) -> dict[str, Any]:
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
            "collationAlgorithms": ["i;ascii-casemap", "i;unicode-casemap"],
        }


class RequestError(Exception):
    """The whole request is refused (RFC 8620 §3.6.1): a problem details object."""

    def __init__(self, kind: str, detail: str, status: int = 400, limit: str = "") -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.limit = limit

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": _ERR + self.kind, "status": self.status}
        out["detail"] = self.detail
        if self.limit:
            out["limit"] = self.limit  # RFC 8620 §3.6.1: the limit that was exceeded
        return out


class MethodError(Exception):
    """One method call fails (RFC 8620 §3.6.2): ``["error", {"type": …}, callId]``."""

    def __init__(self, kind: str, description: str = "", **extra: Any) -> None:
        super().__init__(description or kind)
        self.kind = kind
        self.description = description
        self.extra = extra

    def arguments(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, **self.extra}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class SetError:
    """Why one object of a /set could not be created, updated or destroyed (§5.3)."""

    kind: str
    description: str = ""
    properties: tuple[str, ...] = ()

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.description:
            out["description"] = self.description
        if self.properties:
            out["properties"] = list(self.properties)
        return out


@dataclass(frozen=True, slots=True)
class Invocation:
    name: str
    arguments: dict[str, Any]
    call_id: str


@dataclass(frozen=True, slots=True)
class Request:
    using: frozenset[str]
    calls: tuple[Invocation, ...]
    created_ids: dict[str, str] | None = field(default=None)


def parse_request(value: object, limits: Limits, known: frozenset[str]) -> Request:
    """A Request object (RFC 8620 §3.3) from decoded JSON; RequestError if it is not one."""
    if not isinstance(value, dict):
        raise RequestError("notRequest", "the request is not a JSON object")
    using, calls = value.get("using"), value.get("methodCalls")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        raise RequestError("notRequest", "using must be a list of strings")
    if not isinstance(calls, list):
        raise RequestError("notRequest", "methodCalls must be a list")
    unknown = [u for u in using if u not in known]
    if unknown:  # RFC 8620 §3.6.1
        raise RequestError("unknownCapability", f"unknown capability {unknown[0][:100]}")
    if len(calls) > limits.max_calls_in_request:  # RFC 8620 §2: maxCallsInRequest
        raise RequestError(
            "limit", "too many method calls in one request", limit="maxCallsInRequest"
        )
    invocations = []
    for call in calls:
        if (
            not isinstance(call, list)
            or len(call) != 3
            or not isinstance(call[0], str)
            or not isinstance(call[1], dict)
            or not isinstance(call[2], str)
        ):
            raise RequestError("notRequest", "an invocation is [name, arguments, callId]")
        invocations.append(Invocation(call[0], call[1], call[2]))
    created = value.get("createdIds")
    if created is not None and (
        not isinstance(created, dict) or not all(isinstance(v, str) for v in created.values())
    ):
        raise RequestError("notRequest", "createdIds must map ids to ids")
    return Request(frozenset(using), tuple(invocations), created)


def resolve_references(
    arguments: dict[str, Any], responses: Sequence[tuple[str, dict[str, Any], str]]
) -> dict[str, Any]:
    """Replace ``#name`` arguments by the values their ResultReference points at (§3.7).

    References inside a ``filter`` (``{"#inMailbox": …}``, as clients such as jmapc
    send) are resolved too, condition by condition.
    """
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if key == "filter" and isinstance(value, dict):
            out[key] = _resolve_filter(value, responses, 0)
            continue
        if not key.startswith("#"):
            out[key] = value
            continue
        name = key[1:]
        if name in arguments:
            raise MethodError("invalidArguments", f"both {name} and #{name} given")
        if not isinstance(value, dict):
            raise MethodError("invalidResultReference", "a reference is an object")
        result_of, method, path = value.get("resultOf"), value.get("name"), value.get("path")
        if not (isinstance(result_of, str) and isinstance(method, str) and isinstance(path, str)):
            raise MethodError("invalidResultReference", "resultOf, name and path are strings")
        for rname, rargs, rid in responses:
            if rid == result_of:
                if rname != method:  # RFC 8620 §3.7: the first response with the id
                    raise MethodError("invalidResultReference", f"{result_of} is not {method}")
                out[name] = evaluate_pointer(rargs, path)
                break
        else:
            raise MethodError("invalidResultReference", f"no result {result_of[:100]}")
    return out


def _resolve_filter(
    node: dict[str, Any], responses: Sequence[tuple[str, dict[str, Any], str]], depth: int
) -> dict[str, Any]:
    if depth > 10:
        raise MethodError("invalidArguments", "filters nest at most 10 deep")
    if isinstance(node.get("conditions"), list):
        conditions = [
            _resolve_filter(c, responses, depth + 1) if isinstance(c, dict) else c
            for c in node["conditions"]
        ]
        return {**node, "conditions": conditions}
    if not any(k.startswith("#") for k in node):
        return node
    return resolve_references(node, responses)


def evaluate_pointer(value: Any, path: str) -> Any:
    """A JSON Pointer (RFC 6901) with JMAP's ``*`` over arrays (RFC 8620 §3.7)."""
    if path == "":
        return value
    if not path.startswith("/"):
        raise MethodError("invalidResultReference", "a path starts with /")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]
    return _walk(value, tokens)


def _walk(value: Any, tokens: list[str]) -> Any:
    if not tokens:
        return value
    token, rest = tokens[0], tokens[1:]
    if isinstance(value, list):
        if token == "*":  # each item, results flattened one level
            out: list[Any] = []
            for item in value:
                got = _walk(item, rest)
                out.extend(got if isinstance(got, list) else [got])
            return out
        if token.isdigit() and int(token) < len(value):
            return _walk(value[int(token)], rest)
    elif isinstance(value, Mapping) and token in value:
        return _walk(value[token], rest)
    raise MethodError("invalidResultReference", "the path names nothing")
