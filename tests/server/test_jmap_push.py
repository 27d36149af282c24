"""JMAP push over real sockets (RFC 8620 §7.3 EventSource, RFC 8887 WebSocket): every
type the account has is announced with its new state when it changes — Mailbox, Email,
Thread, EmailDelivery and Quota by a delivery over SMTP, Identity, EmailSubmission,
VacationResponse and SieveScript by their /set — and the state announced is the one
the type's /get answers afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.helpers import RawSmtp
from tests.server.jmap_helpers import Jmap, sieve_server

ALICE = "alice@example.test"
BOB = "bob@example.test"
USING = [
    "urn:ietf:params:jmap:core",
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:submission",
    "urn:ietf:params:jmap:vacationresponse",
    "urn:ietf:params:jmap:quota",
    "urn:ietf:params:jmap:sieve",
]


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    yield from sieve_server(tmp_path)


class Client(Jmap):
    using = USING

    def upload(self, data: bytes) -> str:
        got = self.http.post(f"{self.base}/jmap/upload/{self.account}/", data=data, timeout=10)
        assert got.status_code == 201, got.text
        return str(got.json()["blobId"])


class Events:
    """An EventSource stream (RFC 8620 §7.3) read off a raw TLS socket: the latest
    state announced of each type, gathered from its StateChange events."""

    def __init__(self, server: Server, user: str = ALICE) -> None:
        port = server.ports["https"]
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_tls().wrap_socket(raw)
        auth = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        self.sock.sendall(
            b"GET /jmap/eventsource/?types=*&closeafter=no&ping=0 HTTP/1.1\r\n"
            + f"Host: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
        assert b"transfer-encoding: chunked" in head.lower(), head
        self.raw = head.partition(b"\r\n\r\n")[2]  # chunked (RFC 9112 §7.1)
        self.text = b""
        self.seen: dict[str, dict[str, str]] = {}

    def _dechunk(self) -> None:
        while b"\r\n" in self.raw:
            size_line, _, rest = self.raw.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.text += rest[:size]
            self.raw = rest[size + 2 :]

    def _events(self) -> None:
        while b"\n\n" in self.text:
            event, _, self.text = self.text.partition(b"\n\n")
            lines = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line)
            if lines.get(b"event") != b"state":
                continue
            change = json.loads(lines[b"data"])
            assert change["@type"] == "StateChange", change
            for account, states in change["changed"].items():
                self.seen.setdefault(account, {}).update(states)

    def expect(self, account: str, wanted: dict[str, str | None], timeout: float = 10) -> None:
        """Until every type of ``wanted`` was announced with its state (None: any)."""

        def done() -> bool:
            seen = self.seen.get(account, {})
            return all(k in seen and v in (None, seen[k]) for k, v in wanted.items())

        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"announced {self.seen}, expected {wanted}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data, "the stream ended"
            self.raw += data
            self._dechunk()
            self._events()

    def close(self) -> None:
        self.sock.close()


def _deliver(server: Server, subject: str) -> None:
    smtp = RawSmtp(server.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd("MAIL FROM:<carol@elsewhere.test>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(
        f"From: carol@elsewhere.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@t>\r\n\r\nhello\r\n.\r\n".encode()
    )
    assert smtp.reply()[0] == 250
    smtp.close()


def _state(jmap: Client, method: str, **args: Any) -> str:
    return str(jmap.call(method, ids=None, **args)["state"])


def test_every_type_is_announced_over_eventsource(srv: Server) -> None:
    jmap = Client(srv)
    account = jmap.account
    (identity,) = jmap.call("Identity/get", ids=None)["list"]  # the default one, made now
    events = Events(srv)
    try:
        # a delivery over SMTP: the mail types, EmailDelivery and Quota (usage moved)
        _deliver(srv, "pushed")
        mail = _state(jmap, "Mailbox/get")
        assert mail == _state(jmap, "Email/get", properties=["id"])
        events.expect(
            account,
            {"Mailbox": mail, "Email": mail, "Thread": mail, "EmailDelivery": None,
             "Quota": _state(jmap, "Quota/get")},
        )  # fmt: skip
        # Identity/set
        done = jmap.call("Identity/set", update={identity["id"]: {"name": "Alice A."}})
        assert done["updated"] == {identity["id"]: None}, done
        assert done["newState"] == _state(jmap, "Identity/get")
        events.expect(account, {"Identity": done["newState"]})
        # EmailSubmission/set: a draft sent to a local recipient
        draft = jmap.call(
            "Email/set",
            create={
                "d": {
                    "mailboxIds": {jmap.mailbox_id("INBOX"): True},
                    "keywords": {"$draft": True},
                    "from": [{"email": ALICE}],
                    "to": [{"email": BOB}],
                    "subject": "submitted",
                    "textBody": [{"partId": "1", "type": "text/plain"}],
                    "bodyValues": {"1": {"value": "Sent over JMAP.\n"}},
                }
            },
        )["created"]["d"]["id"]
        sent = jmap.call(
            "EmailSubmission/set",
            create={"s": {"identityId": identity["id"], "emailId": draft}},
        )
        assert "s" in sent["created"], sent
        assert sent["newState"] == _state(jmap, "EmailSubmission/get")
        events.expect(account, {"EmailSubmission": sent["newState"]})
        # VacationResponse/set (the account's Sieve vacation)
        on = jmap.call(
            "VacationResponse/set",
            update={"singleton": {"isEnabled": True, "textBody": "Away."}},
        )
        assert on["updated"] == {"singleton": None}, on
        assert on["newState"] == _state(jmap, "VacationResponse/get")
        events.expect(account, {"VacationResponse": on["newState"]})
        # SieveScript/set: a new script
        blob = jmap.upload(b"keep;\r\n")
        made = jmap.call("SieveScript/set", create={"a": {"name": "plain", "blobId": blob}})
        assert "a" in made["created"], made
        assert made["newState"] == _state(jmap, "SieveScript/get")
        events.expect(account, {"SieveScript": made["newState"]})
    finally:
        events.close()


def test_a_websocket_announces_identity_and_sieve_changes(srv: Server) -> None:
    jmap = Client(srv)
    account = jmap.account
    (identity,) = jmap.call("Identity/get", ids=None)["list"]
    token = base64.b64encode(f"{ALICE}:{PASSWORDS[ALICE]}".encode()).decode()
    url = f"wss://127.0.0.1:{srv.ports['https']}/jmap/ws/"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str, str]:
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as http,
            http.ws_connect(url, protocols=("jmap",), ssl=False) as ws,
        ):
            await ws.send_str(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None,
                                          "pushState": "stale"}))  # fmt: skip
            catch_up = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            renamed = await asyncio.to_thread(
                jmap.call, "Identity/set", update={identity["id"]: {"name": "Push"}}
            )
            first = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            blob = await asyncio.to_thread(jmap.upload, b"keep;\r\n")
            made = await asyncio.to_thread(
                jmap.call, "SieveScript/set", create={"a": {"name": "ws", "blobId": blob}}
            )
            second = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            return catch_up, first, second, renamed["newState"], made["newState"]

    catch_up, first, second, identity_state, sieve_state = asyncio.run(scenario())
    # RFC 8887 §4.3.5.2: a pushState the server does not know brings every state now
    assert catch_up["@type"] == "StateChange"
    assert set(catch_up["changed"][account]) >= {"Email", "Identity", "SieveScript", "Quota"}
    assert first["changed"][account] == {"Identity": identity_state}
    assert second["changed"][account] == {"SieveScript": sieve_state}
    assert first["pushState"] != second["pushState"] != catch_up["pushState"]
