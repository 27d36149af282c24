"""The web listener's JMAP, push and login endpoints under hostile input, over real TLS:

* a login form of more than its eight fields answered 500 (parse_qs's ValueError);
* a JMAP request of millions of empty arrays (9 MB, under maxSizeRequest) held the GIL
  for about a second in orjson, even in a worker thread: now a "limit" problem;
* WebSocketPushEnable with ``dataTypes`` a number or a bool raised out of the frame loop
  and ended the socket: now a problem frame, and the socket still serves requests;
* an EventSource ``ping`` of hundreds of digits made the wait's deadline overflow.

The module ends by checking that nothing crashed and the loop never stalled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

from tests.conftest import Server, crash_free_server
from tests.server.jmap_helpers import USING, Jmap
from tests.server.push_helpers import basic

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from crash_free_server(tmp_path_factory, "hostile-more2-web", "https.error")


def _base(srv: Server) -> str:
    return f"https://127.0.0.1:{srv.ports['https']}"


def test_a_login_form_of_too_many_fields_is_a_bad_request(srv: Server) -> None:
    base = _base(srv)
    headers = {"Origin": base, "Sec-Fetch-Site": "same-origin",
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    got = requests.post(
        base + "/login", data=b"a=1&" * 20, headers=headers, verify=False, timeout=10
    )
    assert got.status_code == 400, got.text[:200]
    good = requests.post(
        base + "/login", data=b"username=x&password=y", headers=headers, verify=False,
        timeout=10, allow_redirects=False,
    )  # fmt: skip
    assert good.status_code == 401  # the form still read, the login refused


def test_a_request_of_millions_of_containers_is_a_limit(srv: Server) -> None:
    jmap = Jmap(srv, ALICE)
    body = b'{"using": [], "methodCalls": [], "x": [' + b"[]," * 3_000_000 + b"[]]}"
    got = jmap.http.post(
        jmap.base + "/jmap/api/", data=body, timeout=60,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert got.status_code == 400
    problem = got.json()
    assert problem["type"] == "urn:ietf:params:jmap:error:limit", problem
    assert jmap.call("Mailbox/get", ids=None)["list"]  # the account still served


def _ws(srv: Server) -> str:
    return f"wss://127.0.0.1:{srv.ports['https']}/jmap/ws/"


def test_a_push_enable_with_data_types_not_a_list_keeps_the_socket(srv: Server) -> None:
    async def scenario() -> list[dict[str, Any]]:
        answers = []
        async with (
            aiohttp.ClientSession(headers=basic(ALICE)) as http,
            http.ws_connect(_ws(srv), protocols=("jmap",), ssl=False) as ws,
        ):
            for types in (5, True, "Email", {"Email": 1}):
                await ws.send_str(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": types}))
                answers.append(json.loads((await asyncio.wait_for(ws.receive(), 10)).data))
            await ws.send_str("[" * 50 + "]" * 50)
            answers.append(json.loads((await asyncio.wait_for(ws.receive(), 10)).data))
            request = {"@type": "Request", "id": "r1", "using": USING,
                       "methodCalls": [["Mailbox/get", {"ids": None}, "0"]]}  # fmt: skip
            await ws.send_str(json.dumps(request))
            answers.append(json.loads((await asyncio.wait_for(ws.receive(), 10)).data))
        return answers

    answers = asyncio.run(scenario())
    assert [a["@type"] for a in answers[:5]] == ["RequestError"] * 5, answers
    assert answers[5]["@type"] == "Response" and answers[5]["requestId"] == "r1"


def test_an_eventsource_ping_of_hundreds_of_digits_is_served(srv: Server) -> None:
    jmap = Jmap(srv, ALICE)
    start = len(srv.log_lines)
    with jmap.http.get(
        jmap.base + "/jmap/eventsource/", params={"types": "*", "ping": "9" * 400},
        stream=True, timeout=10,
    ) as got:  # fmt: skip
        assert got.status_code == 200
        assert got.headers["Content-Type"].startswith("text/event-stream")
    assert jmap.call("Mailbox/get", ids=None)["list"]  # logged after the stream's end
    assert srv.wait_log("path=/jmap/api/", start=start)
    errors = [line for line in srv.log_lines[start:] if "https.error" in line]
    assert not errors, errors  # before: OverflowError, the stream cut
