"""JMAP Identity and EmailSubmission (RFC 8621 §6-7) over real TLS: a draft made over
JMAP is sent to a local recipient (read back over IMAP) and to a remote one (the queue
hands it to a capturing mail exchanger), DKIM-signed, with the submission port's
checks; every method's error paths."""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir
from tests.server.cluster_helpers import CaptureMx, eventually
from tests.server.jmap_helpers import Jmap

SUBMISSION = "urn:ietf:params:jmap:submission"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", SUBMISSION]
ALICE = "alice@example.test"


@pytest.fixture
def mx() -> Iterator[CaptureMx]:
    capture = CaptureMx()
    yield capture
    capture.close()


@pytest.fixture
def relayed(tmp_path: Path, mx: CaptureMx) -> Iterator[Server]:
    """A server whose outbound mail goes to ``mx`` (a smart host without TLS)."""
    data = tmp_path / "data"
    make_data_dir(data)
    with (data / "correo.toml").open("a") as fh:
        fh.write(f'\n[outbound]\nrelayhost = "[127.0.0.1]:{mx.port}"\nrelayhost_tls = "none"\n')
    srv = Server(data)
    srv.start()
    yield srv
    srv.stop()


class Client(Jmap):
    using = USING


def _draft(jmap: Client, to: list[str], subject: str, sender: str = ALICE) -> str:
    drafts = jmap.mailbox_id("INBOX")
    got = jmap.call(
        "Email/set",
        create={
            "d": {
                "mailboxIds": {drafts: True},
                "keywords": {"$draft": True},
                "from": [{"email": sender}],
                "to": [{"email": a} for a in to],
                "subject": subject,
                "textBody": [{"partId": "1", "type": "text/plain"}],
                "bodyValues": {"1": {"value": "Sent over JMAP.\n"}},
            }
        },
    )
    assert got["created"], got
    return str(got["created"]["d"]["id"])


def _imap_subjects(server: Server, user: str) -> list[bytes]:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=client_tls())
    try:
        client.login(user, PASSWORDS[user])
        client.select("INBOX", readonly=True)
        _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT DKIM-SIGNATURE)])")
        return [part[1] for part in data if isinstance(part, tuple)]
    finally:
        client.logout()


def test_submit_reaches_a_local_mailbox_and_a_remote_exchanger(
    relayed: Server, mx: CaptureMx
) -> None:
    jmap = Client(relayed)
    assert SUBMISSION in jmap.session["capabilities"]
    assert jmap.session["primaryAccounts"][SUBMISSION] == jmap.account
    (identity,) = jmap.call("Identity/get", ids=None)["list"]
    assert identity["email"] == ALICE and identity["mayDelete"] is False
    email_id = _draft(jmap, ["bob@example.test", "carol@far.test"], "over jmap")
    responses = jmap.calls(
        (
            "EmailSubmission/set",
            {
                "create": {"s": {"identityId": identity["id"], "emailId": email_id}},
                "onSuccessUpdateEmail": {"#s": {"keywords/$draft": None, "keywords/$seen": True}},
            },
        ),
    )
    assert [r[0] for r in responses] == ["EmailSubmission/set", "Email/set"], responses
    created = responses[0][1]["created"]["s"]
    assert created["undoStatus"] == "final"
    assert responses[1][1]["updated"] == {email_id: None}
    keywords = jmap.call("Email/get", ids=[email_id], properties=["keywords"])["list"][0]
    assert keywords["keywords"] == {"$seen": True}
    # the local recipient reads it over IMAP, signed as submission signs
    assert eventually(
        lambda: any(b"over jmap" in h for h in _imap_subjects(relayed, "bob@example.test")), 10
    )
    (header,) = [h for h in _imap_subjects(relayed, "bob@example.test") if b"over jmap" in h]
    assert b"DKIM-Signature:" in header
    # the remote one arrives at the exchanger, with the envelope JMAP derived
    assert eventually(lambda: len(mx.delivered()) == 1, 15)
    (sent,) = mx.delivered()
    assert sent.sender.endswith(f"<{ALICE}>")
    assert [r.split("<")[1].rstrip(">") for r in sent.recipients] == ["carol@far.test"]
    assert b"Subject: over jmap" in sent.data and b"DKIM-Signature:" in sent.data
    assert b"\nBcc:" not in sent.data
    got = jmap.call("EmailSubmission/get", ids=[created["id"]])["list"][0]
    assert got["emailId"] == email_id
    assert set(got["deliveryStatus"]) == {"bob@example.test", "carol@far.test"}
    assert got["envelope"]["rcptTo"] == [
        {"email": "bob@example.test", "parameters": None},
        {"email": "carol@far.test", "parameters": None},
    ]
    query = jmap.call("EmailSubmission/query", filter={"emailIds": [email_id]})
    assert query["ids"] == [created["id"]]


def test_submission_refusals(relayed: Server, mx: CaptureMx) -> None:
    jmap = Client(relayed)
    identity = jmap.call("Identity/get", ids=None)["list"][0]["id"]
    spoof = _draft(jmap, ["bob@example.test"], "spoofed", sender="bob@example.test")
    fine = _draft(jmap, ["bob@example.test"], "fine")
    got = jmap.call(
        "EmailSubmission/set",
        create={
            "from": {  # the envelope is hers, the From header is not
                "identityId": identity,
                "emailId": spoof,
                "envelope": {
                    "mailFrom": {"email": ALICE},
                    "rcptTo": [{"email": "bob@example.test"}],
                },
            },
            "derived": {"identityId": identity, "emailId": spoof},  # MAIL FROM is From
            "mailfrom": {
                "identityId": identity,
                "emailId": fine,
                "envelope": {
                    "mailFrom": {"email": "bob@example.test"},
                    "rcptTo": [{"email": "bob@example.test"}],
                },
            },
            "norcpt": {
                "identityId": identity,
                "emailId": fine,
                "envelope": {"mailFrom": {"email": ALICE}, "rcptTo": []},
            },
            "unknown": {
                "identityId": identity,
                "emailId": fine,
                "envelope": {
                    "mailFrom": {"email": ALICE},
                    "rcptTo": [{"email": "nobody@example.test"}],
                },
            },
            "noidentity": {"identityId": "Inope", "emailId": fine},
            "noemail": {"identityId": identity, "emailId": "Eaaaaaaaaaaaaaaaaaaaaaaaa"},
            "badprop": {"identityId": identity, "emailId": fine, "sendAt": "x"},
        },
    )
    errors = {k: v["type"] for k, v in got["notCreated"].items()}
    assert errors == {
        "from": "forbiddenFrom",
        "derived": "forbiddenMailFrom",
        "mailfrom": "forbiddenMailFrom",
        "norcpt": "noRecipients",
        "unknown": "invalidRecipients",
        "noidentity": "invalidProperties",
        "noemail": "invalidProperties",
        "badprop": "invalidProperties",
    }
    assert got["notCreated"]["unknown"]["invalidRecipients"] == ["nobody@example.test"]
    assert got["created"] is None
    assert mx.delivered() == []
    # nothing is delayed, so nothing can be cancelled; unknown ids are notFound
    sent = jmap.call(
        "EmailSubmission/set", create={"s": {"identityId": identity, "emailId": fine}}
    )["created"]["s"]["id"]
    got = jmap.call(
        "EmailSubmission/set",
        update={sent: {"undoStatus": "canceled"}, "Snope": {"undoStatus": "canceled"}},
        destroy=["Snope"],
    )
    assert got["notUpdated"][sent]["type"] == "cannotUnsend"
    assert got["notUpdated"]["Snope"]["type"] == "notFound"
    assert got["notDestroyed"]["Snope"]["type"] == "notFound"
    # method-level errors
    bad = jmap.calls(
        ("EmailSubmission/set", {"ifInState": "999"}),
        ("EmailSubmission/changes", {"sinceState": "nonsense"}),
        ("EmailSubmission/query", {"filter": {"color": "red"}}),
        ("EmailSubmission/query", {"sort": [{"property": "size"}]}),
        ("EmailSubmission/get", {"ids": "all"}),
        ("EmailSubmission/set", {"onSuccessDestroyEmail": {"a": 1}}),
    )
    assert [r[1]["type"] for r in bad] == [
        "stateMismatch",
        "cannotCalculateChanges",
        "unsupportedFilter",
        "unsupportedSort",
        "invalidArguments",
        "invalidArguments",
    ]
    # without the capability in "using" the methods are unknown (RFC 8620 §3.6.2)
    plain = Jmap(relayed)
    (only,) = plain.calls(("Identity/get", {}))
    assert only[0] == "error" and only[1]["type"] == "unknownMethod"
    # destroying a submission keeps the mail; changes name it
    state = jmap.call("EmailSubmission/get", ids=[])["state"]
    assert jmap.call("EmailSubmission/set", destroy=[sent])["destroyed"] == [sent]
    changes = jmap.call("EmailSubmission/changes", sinceState=state)
    assert changes["destroyed"] == [sent] and changes["created"] == []


def test_identities_set_get_changes_and_errors(relayed: Server) -> None:
    from tests.conftest import correo

    assert correo(relayed.data, "alias", "add", "sales@example.test", ALICE).returncode == 0
    jmap = Client(relayed)
    first = jmap.call("Identity/get", ids=None)
    state = first["state"]
    got = jmap.call(
        "Identity/set",
        create={
            "sales": {"email": "sales@example.test", "name": "Sales", "textSignature": "-- S"},
            "theft": {"email": "bob@example.test"},
            "noemail": {"name": "x"},
            "badreply": {"email": "sales@example.test", "replyTo": "x"},
        },
    )
    sales = got["created"]["sales"]["id"]
    assert {k: v["type"] for k, v in got["notCreated"].items()} == {
        "theft": "forbiddenFrom",
        "noemail": "invalidProperties",
        "badreply": "invalidProperties",
    }
    got = jmap.call(
        "Identity/set",
        update={sales: {"name": "Sales team"}, "Inope": {"name": "x"}},
        destroy=["Idefault", "Inope"],
    )
    assert got["updated"] == {sales: None}
    assert got["notUpdated"]["Inope"]["type"] == "notFound"
    assert got["notDestroyed"] == {
        "Idefault": {"type": "forbidden", "description": "the account's own identity"},
        "Inope": {"type": "notFound"},
    }
    immutable = jmap.call("Identity/set", update={sales: {"email": ALICE}})
    assert immutable["notUpdated"][sales]["type"] == "invalidProperties"
    changes = jmap.call("Identity/changes", sinceState=state)
    assert changes["created"] == [sales] and changes["updated"] == []
    (shown,) = jmap.call("Identity/get", ids=[sales])["list"]
    assert shown["name"] == "Sales team" and shown["textSignature"] == "-- S"
    paged = jmap.call("Identity/changes", sinceState="0", maxChanges=1)
    assert paged["hasMoreChanges"] is True and len(paged["created"]) == 1
    assert jmap.call("Identity/set", destroy=[sales])["destroyed"] == [sales]
    after = jmap.call("Identity/changes", sinceState=changes["newState"])
    assert after["destroyed"] == [sales]
    bad = jmap.calls(
        ("Identity/changes", {"sinceState": "99999"}),
        ("Identity/set", {"ifInState": "0"}),
        ("Identity/get", {"properties": ["color"]}),
        ("Identity/get", {"accountId": "Anope"}),
    )
    assert [r[1]["type"] for r in bad] == [
        "cannotCalculateChanges",
        "stateMismatch",
        "invalidArguments",
        "accountNotFound",
    ]
