"""A small JMAP client over real TLS for the tests (requests, certificate not checked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import urllib3

from tests.conftest import PASSWORDS, Server, make_data_dir

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


class Jmap:
    #: The capabilities every request declares; a subclass adds its own.
    using: list[str] = USING

    def __init__(self, server: Server, user: str = "alice@example.test") -> None:
        self.base = f"https://127.0.0.1:{server.ports['https']}"
        self.http = requests.Session()
        self.http.verify = False
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.http.auth = (user, PASSWORDS[user])
        got = self.http.get(self.base + "/.well-known/jmap", timeout=10)
        assert got.status_code == 200, got.text
        self.session: dict[str, Any] = got.json()
        self.account: str = self.session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    def post(self, body: object, **kwargs: Any) -> requests.Response:
        return self.http.post(self.base + "/jmap/api/", json=body, timeout=30, **kwargs)

    def calls(self, *calls: tuple[str, dict[str, Any]]) -> list[list[Any]]:
        """Run ``calls`` (accountId filled in); the method responses."""
        body = {
            "using": self.using,
            "methodCalls": [
                [name, {"accountId": self.account, **args}, str(i)]
                for i, (name, args) in enumerate(calls)
            ],
        }
        got = self.post(body)
        assert got.status_code == 200, got.text
        responses: list[list[Any]] = got.json()["methodResponses"]
        return responses

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        (response,) = self.calls((name, args))
        assert response[0] == name, response
        result: dict[str, Any] = response[1]
        return result

    def mailbox_id(self, name: str) -> str:
        for box in self.call("Mailbox/get", ids=None)["list"]:
            if box["name"] == name and box["parentId"] is None:
                return str(box["id"])
        raise KeyError(name)

    def email_ids(self, mailbox: str | None = None) -> list[str]:
        cond = {"inMailbox": self.mailbox_id(mailbox)} if mailbox else None
        args: dict[str, Any] = {"filter": cond} if cond else {}
        return list(self.call("Email/query", **args)["ids"])


def sieve_login(port: int, user: str = "alice@example.test") -> Any:
    """A ManageSieve client (tests/server/test_mda_managesieve.Client) logged in over
    STARTTLS with PLAIN, whatever else the server offers."""
    import base64

    from tests.server.test_mda_managesieve import Client

    client = Client(port)
    client.response()
    client.starttls()
    token = base64.b64encode(f"\0{user}\0{PASSWORDS[user]}".encode())
    done = client.cmd(b'AUTHENTICATE "PLAIN" "' + token + b'"')
    assert done[-1].startswith(b"OK"), done
    return client


def sieve_server(tmp_path: Path, outbound: str = "") -> Iterator[Server]:
    """A running server with ManageSieve on and ``outbound`` settings (TOML lines of
    ``[outbound]``), for a fixture to ``yield from``."""
    data = tmp_path / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]'})
    if outbound:
        with (data / "correo.toml").open("a") as fh:
            fh.write(f"\n[outbound]\n{outbound}\n")
    server = Server(data)
    server.start()
    yield server
    server.stop()
