"""JMAP (RFC 8620, RFC 8621) over real TLS against a real server: the session, the
request envelope and its errors, limits, mail methods, blobs, push, and one store
shared with IMAP (a change on either side shows on the other at once)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from typing import Any

import pytest
import requests

from tests.conftest import Server, client_tls
from tests.server.helpers import RawSmtp
from tests.server.imap_helpers import RawImap, imap, message, unique
from tests.server.jmap_helpers import USING, Jmap

ALICE = "alice@example.test"


def _deliver(server: Server, subject: str, body: str = "Hello there.\r\n") -> None:
    smtp = RawSmtp(server.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd("MAIL FROM:<bob@elsewhere.test>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(message(subject, body, sender="bob@elsewhere.test", to=ALICE) + b".\r\n")
    assert smtp.reply()[0] == 250
    smtp.close()


def _find(jmap: Jmap, subject: str) -> dict[str, Any]:
    ids = jmap.email_ids()
    got = jmap.call("Email/get", ids=ids, properties=["subject", "mailboxIds", "keywords"])
    for email in got["list"]:
        if email["subject"] == subject:
            return dict(email)
    raise AssertionError(f"no Email with subject {subject}: {got}")


def test_the_session_needs_credentials_and_advertises_limits(server: Server) -> None:
    url = f"https://127.0.0.1:{server.ports['https']}/.well-known/jmap"
    anonymous = requests.get(url, verify=False, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.get(url, verify=False, timeout=10, auth=(ALICE, "not-her-password"))
    assert wrong.status_code == 401
    jmap = Jmap(server)
    session = jmap.session
    core = session["capabilities"]["urn:ietf:params:jmap:core"]
    for limit in ("maxSizeRequest", "maxCallsInRequest", "maxObjectsInGet", "maxObjectsInSet",
                  "maxSizeUpload", "maxConcurrentRequests"):  # fmt: skip
        assert isinstance(core[limit], int) and core[limit] > 0
    assert "urn:ietf:params:jmap:mail" in session["capabilities"]
    assert session["username"] == ALICE
    assert session["accounts"][jmap.account]["isPersonal"] is True
    assert session["apiUrl"].endswith("/jmap/api/")


def test_request_level_errors_are_problem_details(server: Server) -> None:
    """RFC 8620 §3.6.1: notJSON, notRequest, unknownCapability and limit."""
    jmap = Jmap(server)
    core = jmap.session["capabilities"]["urn:ietf:params:jmap:core"]

    def problem(got: requests.Response) -> str:
        assert got.status_code == 400, got.text
        assert got.headers["Content-Type"].startswith("application/problem+json")
        kind: str = got.json()["type"]
        return kind.rpartition(":")[2]

    url = jmap.base + "/jmap/api/"
    assert problem(jmap.http.post(url, data=b"{not json", timeout=10)) == "notJSON"
    assert problem(jmap.post({"using": USING})) == "notRequest"
    assert problem(jmap.post({"using": USING, "methodCalls": [["x", {}]]})) == "notRequest"
    unknown = {"using": ["urn:example:nothing"], "methodCalls": []}
    assert problem(jmap.post(unknown)) == "unknownCapability"
    many = [["Core/echo", {}, str(i)] for i in range(core["maxCallsInRequest"] + 1)]
    got = jmap.post({"using": USING, "methodCalls": many})
    assert problem(got) == "limit" and got.json()["limit"] == "maxCallsInRequest"
    huge = {
        "using": USING,
        "methodCalls": [["Core/echo", {"x": "a" * core["maxSizeRequest"]}, "0"]],
    }
    got = jmap.post(huge)
    assert problem(got) == "limit" and got.json()["limit"] == "maxSizeRequest"


def test_method_level_errors_take_the_call_s_place(server: Server) -> None:
    """RFC 8620 §3.6.2: the other calls of the request still run."""
    jmap = Jmap(server)
    body = {
        "using": USING,
        "methodCalls": [
            ["Nope/nothing", {}, "a"],
            ["Mailbox/get", {"accountId": "Anobody"}, "b"],
            ["Core/echo", {"hello": True}, "c"],
            [
                "Email/get",
                {
                    "accountId": jmap.account,
                    "#ids": {"resultOf": "zz", "name": "Email/query", "path": "/ids"},
                },
                "d",
            ],
            ["Email/query", {"accountId": jmap.account, "filter": {"header": ["X-A"]}}, "e"],
            ["Email/get", {"accountId": jmap.account, "ids": ["E0"] * 501}, "f"],
            ["Mailbox/get", {"accountId": jmap.account, "ids": None}, "g"],
            ["Email/get", {"accountId": jmap.account, "ids": [], "properties": ["bogus"]}, "h"],
            [
                "Email/get",
                {
                    "accountId": jmap.account,
                    "ids": [],
                    "properties": ["header:Subject:asText", "header:X-A:all"],
                },
                "i",
            ],
        ],
    }
    only_core = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [body["methodCalls"][6]]}
    responses = jmap.post(body).json()["methodResponses"]
    kinds = [(r[0], r[1].get("type"), r[2]) for r in responses]
    assert kinds[0] == ("error", "unknownMethod", "a")
    assert kinds[1] == ("error", "accountNotFound", "b")
    assert responses[2] == ["Core/echo", {"hello": True}, "c"]
    assert kinds[3] == ("error", "invalidResultReference", "d")
    assert kinds[4] == ("error", "unsupportedFilter", "e")
    assert kinds[5] == ("error", "requestTooLarge", "f")  # more than maxObjectsInGet
    assert kinds[6][0] == "Mailbox/get"
    assert kinds[7] == ("error", "invalidArguments", "h")
    assert kinds[8][0] == "Email/get"
    # a method whose capability the request did not name is unknown (§3.6.2)
    assert jmap.post(only_core).json()["methodResponses"][0][1]["type"] == "unknownMethod"


def test_query_get_with_body_values_and_result_references(server: Server) -> None:
    _deliver(server, "references", "The body text.\r\n")
    jmap = Jmap(server)
    inbox = jmap.mailbox_id("INBOX")
    responses = jmap.calls(
        ("Email/query", {"filter": {"inMailbox": inbox}, "sort": [{"property": "receivedAt"}]}),
        (
            "Email/get",
            {
                "#ids": {"resultOf": "0", "name": "Email/query", "path": "/ids"},
                "properties": ["subject", "from", "bodyValues", "textBody", "preview"],
                "fetchTextBodyValues": True,
            },
        ),
    )
    emails = responses[1][1]["list"]
    mine = [e for e in emails if e["subject"] == "references"]
    assert len(mine) == 1
    email = mine[0]
    assert email["from"] == [{"name": None, "email": "bob@elsewhere.test"}]
    part = email["textBody"][0]["partId"]
    assert email["bodyValues"][part]["value"] == "The body text.\r\n"
    assert email["preview"] == "The body text."


def test_a_jmap_keyword_change_wakes_an_imap_idle(server: Server) -> None:
    _deliver(server, "idle-seen")
    jmap = Jmap(server)
    email = _find(jmap, "idle-seen")
    assert "$seen" not in email["keywords"]
    raw = RawImap(server.ports["imaps"])
    raw.login()
    raw.cmd("S", "SELECT INBOX")
    raw.send(b"I IDLE\r\n")
    assert raw.line().startswith(b"+")
    result = jmap.call("Email/set", update={email["id"]: {"keywords/$seen": True}})
    assert result["updated"] == {email["id"]: None}, result
    raw.sock.settimeout(10)
    seen = b""
    deadline = time.monotonic() + 10
    while b"\\Seen" not in seen and time.monotonic() < deadline:
        seen = raw.line()
    assert b"FETCH" in seen and b"\\Seen" in seen
    raw.send(b"DONE\r\n")
    raw.until(b"I")
    raw.close()


def test_an_imap_store_shows_in_email_changes(server: Server) -> None:
    _deliver(server, "imap-flagged")
    jmap = Jmap(server)
    email = _find(jmap, "imap-flagged")
    state = jmap.call("Email/get", ids=[email["id"]], properties=["id"])["state"]
    client = imap(server)
    client.select("INBOX")
    _, found = client.uid("SEARCH", "HEADER", "Subject", "imap-flagged")
    uid = found[0].split()[-1]
    client.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
    client.logout()
    changes = jmap.call("Email/changes", sinceState=state)
    assert email["id"] in changes["updated"], changes
    assert changes["created"] == [] and changes["destroyed"] == []
    assert changes["newState"] != state
    now = jmap.call("Email/get", ids=[email["id"]], properties=["keywords"])["list"][0]
    assert now["keywords"].get("$flagged") is True
    assert jmap.call("Email/changes", sinceState=changes["newState"])["updated"] == []


def test_a_move_keeps_the_id_and_imap_agrees(server: Server) -> None:
    _deliver(server, "move-me")
    jmap = Jmap(server)
    name = unique("jmapbox")
    made = jmap.call("Mailbox/set", create={"n": {"name": name}})
    target = made["created"]["n"]["id"]
    email = _find(jmap, "move-me")
    state = jmap.call("Email/get", ids=[email["id"]], properties=["id"])["state"]
    moved = jmap.call("Email/set", update={email["id"]: {"mailboxIds": {target: True}}})
    assert moved["updated"] == {email["id"]: None}, moved
    after = jmap.call("Email/get", ids=[email["id"]], properties=["mailboxIds"])["list"]
    assert after == [{"id": email["id"], "mailboxIds": {target: True}}]  # same id
    client = imap(server)
    client.select(name)
    _, found = client.uid("SEARCH", "HEADER", "Subject", "move-me")
    assert found[0].split(), "the message is in the new mailbox over IMAP"
    client.select("INBOX")
    _, left = client.uid("SEARCH", "HEADER", "Subject", "move-me")
    assert not left[0].split(), "and no longer in INBOX"
    client.logout()
    changes = jmap.call("Email/changes", sinceState=state)
    assert changes["updated"] == [email["id"]] and changes["destroyed"] == []
    # a rename keeps the mailbox id too
    renamed = jmap.call("Mailbox/set", update={target: {"name": name + "-renamed"}})
    assert renamed["updated"] == {target: None}, renamed
    boxes = {b["id"]: b["name"] for b in jmap.call("Mailbox/get", ids=None)["list"]}
    assert boxes[target] == name + "-renamed"
    destroyed = jmap.call("Email/set", destroy=[email["id"]])
    assert destroyed["destroyed"] == [email["id"]]
    gone = jmap.call("Email/changes", sinceState=changes["newState"])
    assert gone["destroyed"] == [email["id"]], gone


def test_drafts_are_created_and_seen_over_imap(server: Server) -> None:
    jmap = Jmap(server)
    drafts = unique("Drafts")
    box = jmap.call("Mailbox/set", create={"d": {"name": drafts}})["created"]["d"]["id"]
    created = jmap.call(
        "Email/set",
        create={
            "k1": {
                "mailboxIds": {box: True},
                "keywords": {"$draft": True, "$seen": True},
                "from": [{"name": "Alice", "email": ALICE}],
                "to": [{"email": "bob@example.test"}],
                "subject": "a draft",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "Draft text"}},
            },
            "bad": {"mailboxIds": {}},
        },
    )
    new = created["created"]["k1"]
    assert created["notCreated"]["bad"]["type"] == "invalidProperties"
    client = imap(server)
    client.select(drafts)
    _, data = client.fetch("1", "(FLAGS BODY.PEEK[])")
    assert b"\\Draft" in data[0][0] and b"Subject: a draft" in data[0][1]
    client.logout()
    got = jmap.call("Email/get", ids=[new["id"]], properties=["subject", "keywords"])
    assert got["list"][0]["keywords"] == {"$draft": True, "$seen": True}


def test_blob_download_and_upload(server: Server) -> None:
    _deliver(server, "blob-me", "blob body\r\n")
    jmap = Jmap(server)
    got = jmap.call("Email/get", ids=jmap.email_ids(), properties=["subject", "blobId", "size"])
    email = next(e for e in got["list"] if e["subject"] == "blob-me")
    url = jmap.session["downloadUrl"].format(
        accountId=jmap.account, blobId=email["blobId"], name="m.eml", type="message/rfc822"
    )
    url = url.replace("https://localhost", "https://127.0.0.1")
    url = jmap.base + url.partition(str(jmap.base.rpartition(":")[2]))[2]
    raw = jmap.http.get(url, timeout=10)
    assert raw.status_code == 200 and raw.headers["Content-Type"].startswith("message/rfc822")
    assert b"Subject: blob-me" in raw.content and len(raw.content) == email["size"]
    upload = jmap.http.post(
        f"{jmap.base}/jmap/upload/{jmap.account}/", data=b"uploaded bytes", timeout=10
    )
    assert upload.status_code == 201, upload.text
    blob = upload.json()["blobId"]
    back = jmap.http.get(f"{jmap.base}/jmap/download/{jmap.account}/{blob}/x.bin", timeout=10)
    assert back.content == b"uploaded bytes"
    core = jmap.session["capabilities"]["urn:ietf:params:jmap:core"]
    assert core["maxSizeUpload"] >= len(b"uploaded bytes")
    other = requests.get(
        f"{jmap.base}/jmap/download/{jmap.account}/{blob}/x.bin", verify=False, timeout=10,
        auth=("bob@example.test", "bob-secret-2"),
    )  # fmt: skip
    assert other.status_code == 404  # another account's blob is not there for bob


def test_push_by_eventsource_after_an_imap_append(server: Server) -> None:
    jmap = Jmap(server)
    port = server.ports["https"]
    sock = client_tls().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    auth = base64.b64encode(f"{ALICE}:alice-secret-1".encode()).decode()
    sock.sendall(
        f"GET /jmap/eventsource/?types=*&closeafter=state&ping=0 HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    before = jmap.call("Mailbox/get", ids=None)["state"]
    client = imap(server)
    client.append("INBOX", "", imaplib_date(), message("pushed"))
    client.logout()
    data = head.partition(b"\r\n\r\n")[2]
    deadline = time.monotonic() + 10
    while b"event: state" not in data and time.monotonic() < deadline:
        data += sock.recv(4096)
    sock.close()
    assert b"event: state" in data, data
    payload = data[data.index(b"data: ") + 6 :].split(b"\n", 1)[0]
    change = json.loads(payload)
    assert change["@type"] == "StateChange"
    assert change["changed"][jmap.account]["Email"] != before


def imaplib_date() -> str:
    return '"01-Jan-2024 10:00:00 +0000"'


def test_failed_logins_share_the_imap_lockout(start_server: object) -> None:
    """Guessing over JMAP locks the account for IMAP too (one throttle)."""
    srv: Server = start_server(  # type: ignore[operator]
        {"lockout_failures": "3", "max_delay": "0.1"}
    )
    url = f"https://127.0.0.1:{srv.ports['https']}/.well-known/jmap"
    for _ in range(3):
        got = requests.get(url, verify=False, timeout=30, auth=(ALICE, "guess"))
        assert got.status_code == 401
    right = requests.get(url, verify=False, timeout=30, auth=(ALICE, "alice-secret-1"))
    assert right.status_code == 401  # locked, even with the right password
    raw = RawImap(srv.ports["imaps"])
    out = raw.cmd("L", f'LOGIN "{ALICE}" "alice-secret-1"')
    assert b"L NO" in out[-1]
    raw.close()
    assert "event=auth.locked" in srv.log()


@pytest.mark.parametrize("path", ["/jmap/api/", "/jmap/upload/Ax/"])
def test_posts_without_credentials_are_refused_before_the_body(server: Server, path: str) -> None:
    sock = client_tls().wrap_socket(
        socket.create_connection(("127.0.0.1", server.ports["https"]), timeout=10)
    )
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n".encode())
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except (ssl.SSLError, OSError):
        pass
    sock.close()
    assert head.startswith(b"HTTP/1.1 401"), head


def test_a_body_that_trickles_is_cut_off(start_server: object) -> None:
    """The request's deadline (data_timeout here) covers its body: a slow sender is dropped."""
    srv: Server = start_server({"data_timeout": "1.5"})  # type: ignore[operator]
    sock = client_tls().wrap_socket(
        socket.create_connection(("127.0.0.1", srv.ports["https"]), timeout=10)
    )
    auth = base64.b64encode(f"{ALICE}:alice-secret-1".encode()).decode()
    sock.sendall(
        f"POST /jmap/api/ HTTP/1.1\r\nHost: a\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{".encode()
    )
    got, sent, trickle = b"", 0, 40
    # 40 octets 0.2 s apart take 8 s, five times the deadline: being cut off before the
    # last is the proof, however much a loaded machine stretches each 0.2 s.
    try:
        while sent < trickle:
            sock.sendall(b" ")
            sent += 1
            time.sleep(0.2)
    except (ssl.SSLError, OSError):
        pass
    try:
        got = sock.recv(100)
    except (ssl.SSLError, OSError):
        pass
    sock.close()
    assert sent < trickle, "cut off, not served to the end"
    assert not got.startswith(b"HTTP/1.1 200")


def test_uploads_are_bounded_per_account(start_server: object) -> None:
    """An account's uploads of the last hour hold at most four maxSizeUpload."""
    srv: Server = start_server({"message_size": "100000"})  # type: ignore[operator]
    jmap = Jmap(srv)
    url = f"{jmap.base}/jmap/upload/{jmap.account}/"
    too_big = jmap.http.post(url, data=b"x" * 100_001, timeout=10)
    assert too_big.status_code == 400 and too_big.json()["limit"] == "maxSizeUpload"
    codes = [
        jmap.http.post(url, data=bytes([i]) * 90_000, timeout=10).status_code for i in range(5)
    ]
    assert codes == [201, 201, 201, 201, 413]
    assert jmap.http.post(url, data=b"\x00" * 90_000, timeout=10).status_code == 201  # held
