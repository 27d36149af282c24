"""JMAP Sieve scripts (RFC 9661) over real TLS: the scripts ManageSieve keeps, uploaded as
blobs, checked as ManageSieve checks them, activated, and used by delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.server.cluster_helpers import eventually
from tests.server.jmap_helpers import sieve_login
from tests.server.push_helpers import Client, deliver, sieve_server

SIEVE = "urn:ietf:params:jmap:sieve"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    yield from sieve_server(tmp_path)


SCRIPT = (
    b'require ["fileinto"];\r\nif header :contains "subject" "sorted" { fileinto "Sorted"; }\r\n'
)


def test_sieve_scripts_are_managesieve_s(srv: Server) -> None:
    jmap = Client(srv)
    capability = jmap.session["accounts"][jmap.account]["accountCapabilities"][SIEVE]
    assert capability["maxNumberScripts"] > 0 and "fileinto" in capability["sieveExtensions"]
    jmap.call("Mailbox/set", create={"s": {"name": "Sorted"}})
    blob = jmap.upload(SCRIPT)
    bad = jmap.upload(b'require ["nonsense"];\r\nkeep;\r\n')
    state = jmap.call("SieveScript/get", ids=None)["state"]
    got = jmap.call(
        "SieveScript/set",
        create={
            "a": {"name": "rules", "blobId": blob},
            "b": {"name": "broken", "blobId": bad},
            "c": {"name": "bad\x01name", "blobId": blob},
            "d": {"name": "noblob", "blobId": "Uffffffffffffffffffffffff"},
        },
        onSuccessActivateScript="#a",
    )
    made = got["created"]["a"]["id"]
    assert {k: v["type"] for k, v in got["notCreated"].items()} == {
        "b": "invalidSieve",
        "c": "invalidProperties",
        "d": "blobNotFound",
    }
    (shown,) = jmap.call("SieveScript/get", ids=[made])["list"]
    assert shown["name"] == "rules" and shown["isActive"] is True
    content = jmap.http.get(
        f"{jmap.base}/jmap/download/{jmap.account}/{shown['blobId']}/rules.sieve", timeout=10
    )
    assert content.status_code == 200 and content.content == SCRIPT
    # ManageSieve sees it, active; delivery runs it
    sieve = sieve_login(srv.ports["sieve"])
    assert b'"rules" ACTIVE' in sieve.cmd(b"LISTSCRIPTS")
    sieve.cmd(b"LOGOUT")
    deliver(srv, "to be sorted")
    sorted_box = jmap.mailbox_id("Sorted")
    assert eventually(lambda: len(jmap.email_ids("Sorted")) == 1, 10), sorted_box
    changes = jmap.call("SieveScript/changes", sinceState=state)
    assert changes["created"] == [made]
    validated = jmap.calls(
        ("SieveScript/validate", {"blobId": blob}),
        ("SieveScript/validate", {"blobId": bad}),
    )
    assert validated[0][1]["error"] is None
    assert validated[1][1]["error"]["type"] == "invalidSieve"
    refused = jmap.call(
        "SieveScript/set",
        update={made: {"name": "renamed"}, "Snope": {"blobId": blob}},
        destroy=[made],
    )
    assert refused["notUpdated"][made]["type"] == "invalidProperties"
    assert refused["notUpdated"]["Snope"]["type"] == "notFound"
    assert refused["notDestroyed"][made]["type"] == "scriptIsActive"
    off = jmap.call("SieveScript/set", onSuccessDeactivateScript=True, destroy=[])
    assert off["oldState"] != off["newState"]
    assert jmap.call("SieveScript/set", destroy=[made])["destroyed"] == [made]
    assert jmap.call("SieveScript/query", filter={"isActive": True})["ids"] == []
    errors = jmap.calls(
        ("SieveScript/set", {"ifInState": "sstale"}),
        ("SieveScript/query", {"filter": {"color": 1}}),
        ("SieveScript/get", {"properties": ["color"]}),
        ("SieveScript/changes", {"sinceState": "garbage"}),
    )
    assert [e[1]["type"] for e in errors] == [
        "stateMismatch",
        "unsupportedFilter",
        "invalidArguments",
        "cannotCalculateChanges",
    ]
