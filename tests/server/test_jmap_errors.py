"""JMAP error paths over real TLS that the method tests leave out (RFC 8620 §3.6, §5;
RFC 8621 §2-4): query anchors and sorts, changes from states never given, ifInState,
maxObjectsInGet/maxObjectsInSet, mailbox destruction refusals, oversized and
over-quota Emails, and a message that is not one."""

from __future__ import annotations

from typing import Any

from tests.conftest import Server, correo
from tests.server.imap_helpers import imap, message
from tests.server.jmap_helpers import Jmap

CAROL = "carol@example.test"
DATE = '"01-Jan-2024 10:00:00 +0000"'


def _error(jmap: Jmap, name: str, **args: Any) -> dict[str, Any]:
    """The error a single call answers (it must be one)."""
    ((kind, body, _),) = jmap.calls((name, {"accountId": jmap.account, **args}))
    assert kind == "error", (name, body)
    return dict(body)


def _fill(server: Server, user: str, count: int) -> None:
    client = imap(server, user)
    for i in range(count):
        client.append("INBOX", "", DATE, message(f"n{i}"))
    client.logout()


def test_query_changes_and_limits_refusals(server: Server) -> None:
    jmap = Jmap(server)
    _fill(server, "alice@example.test", 3)
    ids = jmap.email_ids()
    assert len(ids) == 3
    # RFC 8620 §5.5: an anchor not in the results
    missing = "E" + "0" * 24
    assert _error(jmap, "Email/query", anchor=missing)["type"] == "anchorNotFound"
    at = jmap.call("Email/query", anchor=ids[1], anchorOffset=0, limit=1)
    assert at["ids"] == [ids[1]] and at["position"] == 1  # the anchor itself works
    # RFC 8620 §5.5: a sort or a filter the server does not do
    assert _error(jmap, "Email/query", sort=[{"property": "color"}])["type"] == "unsupportedSort"
    assert _error(jmap, "Email/query", filter={"color": "red"})["type"] == "unsupportedFilter"
    assert _error(jmap, "Email/query", limit=-1)["type"] == "invalidArguments"
    assert _error(jmap, "Email/query", sort="receivedAt")["type"] == "invalidArguments"
    # RFC 8620 §5.2: a state this server never gave, of each /changes
    for name in ("Email/changes", "Mailbox/changes", "Thread/changes"):
        got = _error(jmap, name, sinceState="not-a-state")
        assert got["type"] == "cannotCalculateChanges", (name, got)
    state = jmap.call("Email/get", ids=[])["state"]
    _fill(server, "alice@example.test", 3)
    too_many = _error(jmap, "Email/changes", sinceState=state, maxChanges=1)
    assert too_many["type"] == "cannotCalculateChanges"
    fine = jmap.call("Email/changes", sinceState=state, maxChanges=50)
    assert len(fine["created"]) == 3
    # RFC 8620 §5.3: ifInState that is not the state now
    inbox = jmap.mailbox_id("INBOX")
    for name in ("Email/set", "Mailbox/set"):
        got = _error(jmap, name, ifInState="stale", update={})
        assert got["type"] == "stateMismatch", (name, got)
    # RFC 8620 §5.1, §5.3: maxObjectsInGet and maxObjectsInSet, as the session says
    core = jmap.session["capabilities"]["urn:ietf:params:jmap:core"]
    many_get = [missing] * (core["maxObjectsInGet"] + 1)
    assert _error(jmap, "Email/get", ids=many_get)["type"] == "requestTooLarge"
    many_set = {f"x{i}": {"mailboxIds": {inbox: True}} for i in range(core["maxObjectsInSet"] + 1)}
    assert _error(jmap, "Email/set", create=many_set)["type"] == "requestTooLarge"
    # RFC 8620 §3.6.2: an account that is not this user's
    assert _error(jmap, "Mailbox/get", accountId="Anobody")["type"] == "accountNotFound"
    # Email/get of ids that are no Email: notFound, not an error
    got = jmap.call("Email/get", ids=[missing, "junk"], properties=["subject"])
    assert got["list"] == [] and sorted(got["notFound"]) == sorted([missing, "junk"])


def test_mailbox_and_email_set_refusals(server: Server) -> None:
    jmap = Jmap(server)
    made = jmap.call(
        "Mailbox/set",
        create={"p": {"name": "Parent"}, "c": {"name": "Child", "parentId": "#p"}},
    )["created"]
    parent, child = made["p"]["id"], made["c"]["id"]
    # RFC 8621 §2.5: a mailbox with a child, or with Emails unless asked to remove them
    refused = jmap.call("Mailbox/set", destroy=[parent])
    assert refused["notDestroyed"][parent]["type"] == "mailboxHasChild", refused
    client = imap(server)
    client.append("Parent/Child", "", DATE, message("kept"))
    client.logout()
    refused = jmap.call("Mailbox/set", destroy=[child])
    assert refused["notDestroyed"][child]["type"] == "mailboxHasEmail", refused
    gone = jmap.call("Mailbox/set", destroy=[child], onDestroyRemoveEmails=True)
    assert gone["destroyed"] == [child], gone
    # an id that is none: notFound for update and destroy
    ghost = "M999999"
    refused = jmap.call("Mailbox/set", update={ghost: {"name": "x"}}, destroy=[ghost])
    assert refused["notUpdated"][ghost]["type"] == "notFound", refused
    assert refused["notDestroyed"][ghost]["type"] == "notFound", refused
    ghost_email = "E" + "f" * 24
    refused = jmap.call("Email/set", update={ghost_email: {"keywords": {}}})
    assert refused["notUpdated"][ghost_email]["type"] == "notFound", refused


def test_email_too_large_and_over_quota(server: Server) -> None:
    done = correo(server.data, "user", "quota", CAROL, "20K")
    assert done.returncode == 0, done.stderr
    jmap = Jmap(server, CAROL)
    inbox = jmap.mailbox_id("INBOX")

    def create(text: str) -> dict[str, Any]:
        got = jmap.call(
            "Email/set",
            create={
                "e": {
                    "mailboxIds": {inbox: True},
                    "from": [{"email": CAROL}],
                    "subject": "big",
                    "textBody": [{"partId": "1", "type": "text/plain"}],
                    "bodyValues": {"1": {"value": text}},
                }
            },
        )
        return dict(got)

    # RFC 8621 §4.6: past the account's quota the store refuses it: overQuota
    over = create("words and more words\n" * 2000)
    assert over["notCreated"]["e"]["type"] == "overQuota", over
    assert jmap.email_ids() == []  # nothing was kept
    fits = create("a short one\n")
    assert "e" in fits["created"], fits
    # an Email/import of a blob that is not a message: invalidEmail
    up = jmap.http.post(
        f"{jmap.base}/jmap/upload/{jmap.account}/", data=b"\x00\x01 not mail", timeout=10
    )
    assert up.status_code == 201, up.text
    blob = up.json()["blobId"]
    got = jmap.call("Email/import", emails={"i": {"blobId": blob, "mailboxIds": {inbox: True}}})
    assert got["notCreated"]["i"]["type"] == "invalidEmail", got
