"""What the JMAP push and Sieve tests share: a JMAP client that uploads, a delivery over
SMTP, an EventSource stream (RFC 8620 §7.3) and a WebSocket (RFC 8887) read until a
wanted state arrives, and a peer MX whose replies a test chooses."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.helpers import RawSmtp
from tests.server.jmap_helpers import Jmap, sieve_server

__all__ = ["ALICE", "BOB", "Client", "Events", "ReplyMx", "WsPush", "basic", "deliver",
           "sieve_server"]  # fmt: skip

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


class Client(Jmap):
    """A JMAP client declaring every capability push announces, that uploads blobs."""

    using = USING

    def upload(self, data: bytes, content_type: str | None = None) -> str:
        headers = {"Content-Type": content_type} if content_type else None
        got = self.http.post(
            f"{self.base}/jmap/upload/{self.account}/", data=data, headers=headers, timeout=10
        )
        assert got.status_code == 201, got.text
        return str(got.json()["blobId"])

    def state(self, method: str, **args: Any) -> str:
        """The state a type's /get answers now."""
        return str(self.call(method, ids=None, **args)["state"])


def deliver(
    server: Server,
    subject: str,
    rcpt: str = ALICE,
    *,
    body: str = "hello",
    headers: str | None = None,
    sender: str = "carol@elsewhere.test",
) -> None:
    """A message from outside over SMTP, accepted (250 after DATA).  ``headers``
    (fields ending in CRLF, or none) stand in for the Message-ID made of the subject."""
    if headers is None:
        headers = f"Message-ID: <{subject.replace(' ', '.')}@t>\r\n"
    smtp = RawSmtp(server.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n{headers}"
        f"\r\n{body}\r\n.\r\n".encode()
    )
    assert smtp.reply()[0] == 250
    smtp.close()


def basic(user: str = ALICE) -> dict[str, str]:
    """HTTP Basic credentials as a header (RFC 7617), as JMAP clients send them."""
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Events:
    """An EventSource stream (RFC 8620 §7.3) read off a raw TLS socket: the latest
    state announced of each type, gathered from its StateChange events, and when."""

    def __init__(self, server: Server, user: str = ALICE) -> None:
        port = server.ports["https"]
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_tls().wrap_socket(raw)
        auth = basic(user)["Authorization"]
        self.sock.sendall(
            b"GET /jmap/eventsource/?types=*&closeafter=no&ping=0 HTTP/1.1\r\n"
            + f"Host: 127.0.0.1\r\nAuthorization: {auth}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
        assert b"transfer-encoding: chunked" in head.lower(), head
        self.raw = head.partition(b"\r\n\r\n")[2]  # chunked (RFC 9112 §7.1)
        self.text = b""
        self.seen: dict[str, dict[str, str]] = {}
        #: (type, state) -> time.monotonic() of the event that announced it
        self.arrived: dict[tuple[str, str], float] = {}

    def _dechunk(self) -> None:
        while b"\r\n" in self.raw:
            size_line, _, rest = self.raw.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if len(rest) < size + 2:
                return
            self.text += rest[:size]
            self.raw = rest[size + 2 :]

    def _events(self, now: float) -> None:
        while b"\n\n" in self.text:
            event, _, self.text = self.text.partition(b"\n\n")
            lines = dict(line.split(b": ", 1) for line in event.split(b"\n") if b": " in line)
            if lines.get(b"event") != b"state":
                continue
            change = json.loads(lines[b"data"])
            assert change["@type"] == "StateChange", change
            for account, states in change["changed"].items():
                self.seen.setdefault(account, {}).update(states)
                for kind, state in states.items():
                    self.arrived.setdefault((kind, state), now)

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
            self._read(left)

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        assert data, "the stream ended"
        self.raw += data
        self._dechunk()
        self._events(time.monotonic())

    def moved(self, account: str, kind: str, old: str, timeout: float = 10) -> str:
        """Until a state of ``kind`` other than ``old`` was announced; that state."""
        deadline = time.monotonic() + timeout
        while self.seen.get(account, {}).get(kind, old) == old:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{kind} still {old} after {timeout} s")
            self._read(left)
        return self.seen[account][kind]

    def sync(self, jmap: Client) -> None:
        """Once the stream's watch is surely reading: a change made now is announced
        (a change made before the stream's first read is in that read, not announced)."""
        (identity,) = jmap.call("Identity/get", ids=None)["list"]
        name = f"sync {time.monotonic()}"
        done = jmap.call("Identity/set", update={identity["id"]: {"name": name}})
        self.expect(jmap.account, {"Identity": done["newState"]})

    def close(self) -> None:
        self.sock.close()


class WsPush:
    """A JMAP WebSocket (RFC 8887) with push enabled for every type: ``async with``."""

    def __init__(self, server: Server, user: str = ALICE, push_state: str | None = None):
        self.url = f"wss://127.0.0.1:{server.ports['https']}/jmap/ws/"
        self.user = user
        self.push_state = push_state
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> WsPush:
        self._http = aiohttp.ClientSession(headers=basic(self.user))
        self.ws = await self._http.ws_connect(self.url, protocols=("jmap",), ssl=False)
        enable: dict[str, Any] = {"@type": "WebSocketPushEnable", "dataTypes": None}
        if self.push_state is not None:
            enable["pushState"] = self.push_state
        await self.ws.send_str(json.dumps(enable))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._http is not None:
            await self._http.close()

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        assert self.ws is not None
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        value: dict[str, Any] = json.loads(message.data)
        return value

    async def until(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """The first StateChange ``done`` accepts, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no such StateChange in time")
            value = await self.receive(left)
            if value.get("@type") == "StateChange" and done(value):
                return value


class ReplyMx:
    """A peer MX on loopback that answers RCPT with what ``reply`` says for the address
    (250 or a refusal) and accepts the data; it notes when it gave each final answer."""

    def __init__(self, reply: Callable[[str], bytes]) -> None:
        answered: dict[str, float] = {}
        lock = threading.Lock()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 mx.test ESMTP\r\n")
                accepted: list[str] = []
                while line := self.rfile.readline(4096):
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.wfile.write(b"250-mx.test\r\n250 8BITMIME\r\n")
                    elif verb == b"RCPT":
                        address = line.decode().partition("<")[2].partition(">")[0]
                        answer = reply(address)
                        self.wfile.write(answer + b"\r\n")
                        if answer.startswith(b"250"):
                            accepted.append(address)
                        else:
                            with lock:
                                answered[address] = time.monotonic()
                    elif verb == b"DATA":
                        self.wfile.write(b"354 go ahead\r\n")
                        while self.rfile.readline(1 << 20) not in (b".\r\n", b""):
                            pass
                        self.wfile.write(b"250 2.0.0 taken\r\n")
                        with lock:
                            answered.update(dict.fromkeys(accepted, time.monotonic()))
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 2.0.0 bye\r\n")
                        return
                    else:  # MAIL, RSET, NOOP
                        self.wfile.write(b"250 2.0.0 ok\r\n")

        class Srv(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.answered = answered
        self._server = Srv(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
