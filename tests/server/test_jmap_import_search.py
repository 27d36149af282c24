"""JMAP Email/import, Email/parse, Email/copy, text filters, SearchSnippet/get and the
queryChanges methods over real TLS, with their error paths; IMAP sees what JMAP files."""

from __future__ import annotations

from typing import Any

from tests.conftest import Server
from tests.server.imap_helpers import imap
from tests.server.push_helpers import ALICE, Client, deliver

MESSAGE = (
    b"From: Carol <carol@far.test>\r\nTo: alice@example.test\r\nSubject: imported one\r\n"
    b"Message-ID: <imp1@far.test>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n"
    b"An imported body about kumquats.\r\n"
)


def test_parse_import_and_copy(server: Server) -> None:
    jmap = Client(server)
    blob = jmap.upload(MESSAGE, "message/rfc822")
    parsed = jmap.call(
        "Email/parse",
        blobIds=[blob, "Uffffffffffffffffffffffff", "nonsense"],
        properties=["subject", "from", "id", "size", "bodyValues"],
        fetchTextBodyValues=True,
    )
    entry = parsed["parsed"][blob]
    assert entry["subject"] == "imported one" and entry["id"] is None
    assert entry["from"] == [{"name": "Carol", "email": "carol@far.test"}]
    assert entry["size"] == len(MESSAGE)
    assert "kumquats" in next(iter(entry["bodyValues"].values()))["value"]
    assert sorted(parsed["notFound"]) == ["Uffffffffffffffffffffffff", "nonsense"]
    inbox = jmap.mailbox_id("INBOX")
    got = jmap.call(
        "Email/import",
        emails={
            "a": {
                "blobId": blob,
                "mailboxIds": {inbox: True},
                "keywords": {"$seen": True, "$flagged": True},
                "receivedAt": "2026-12-01T10:00:00Z",
            },
            "nobox": {"blobId": blob, "mailboxIds": {"Mnope": True}},
            "noblob": {"blobId": "Uffffffffffffffffffffffff", "mailboxIds": {inbox: True}},
            "badkw": {"blobId": blob, "mailboxIds": {inbox: True}, "keywords": {"a b": True}},
            "extra": {"blobId": blob, "mailboxIds": {inbox: True}, "size": 3},
        },
    )
    made = got["created"]["a"]
    assert made["size"] == len(MESSAGE) and made["id"].startswith("E")
    errors = {k: v["type"] for k, v in got["notCreated"].items()}
    assert errors == {
        "nobox": "invalidProperties",
        "noblob": "blobNotFound",
        "badkw": "invalidProperties",
        "extra": "invalidProperties",
    }
    again = jmap.call("Email/import", emails={"b": {"blobId": blob, "mailboxIds": {inbox: True}}})
    assert again["notCreated"]["b"] == {"type": "alreadyExists", "existingId": made["id"]}
    (shown,) = jmap.call(
        "Email/get", ids=[made["id"]], properties=["keywords", "receivedAt", "subject"]
    )["list"]
    assert shown["keywords"] == {"$seen": True, "$flagged": True}
    assert shown["receivedAt"] == "2026-12-01T10:00:00Z"
    # the same message over IMAP, with its flags
    client = imap(server, ALICE)
    client.select("INBOX", readonly=True)
    _, hits = client.search(None, "SUBJECT", '"imported one"')
    (uid,) = hits[0].split()
    _, data = client.fetch(uid, "(FLAGS)")
    assert b"\\Seen" in data[0] and b"\\Flagged" in data[0]
    client.logout()
    # a stored message is a blob to parse too
    stored = jmap.call("Email/parse", blobIds=[made["blobId"]], properties=["subject"])
    assert stored["parsed"][made["blobId"]]["subject"] == "imported one"
    errors2 = jmap.calls(
        ("Email/import", {"emails": [1]}),
        ("Email/import", {"ifInState": "stale", "emails": {}}),
        ("Email/parse", {"blobIds": "x"}),
        ("Email/parse", {"blobIds": [], "properties": ["color"]}),
        ("Email/copy", {"fromAccountId": "Aother", "create": {}}),
        ("Email/copy", {"fromAccountId": jmap.account, "create": {}}),
    )
    assert [e[1]["type"] for e in errors2] == [
        "invalidArguments",
        "stateMismatch",
        "invalidArguments",
        "invalidArguments",
        "fromAccountNotFound",
        "invalidArguments",
    ]


def test_text_filters_and_search_snippets(server: Server) -> None:
    deliver(server, "About fruit", body="I like the pineapple & <mango> best.\r\n\r\ntsx81")
    deliver(server, "Pineapple news", body="Nothing inside.\r\n\r\ntsx81")
    deliver(server, "Other things", body="Only apples here.\r\n\r\ntsx81")
    jmap = Client(server)

    def query(cond: dict[str, Any]) -> list[str]:
        mine = {"body": "tsx81"}  # the server is shared with other tests
        got = jmap.call("Email/query", filter={"operator": "AND", "conditions": [mine, cond]})
        ids = list(got["ids"])
        subjects = jmap.call("Email/get", ids=ids, properties=["subject"])["list"] if ids else []
        return sorted(e["subject"] for e in subjects)

    assert query({"text": "pineapple"}) == ["About fruit", "Pineapple news"]
    assert query({"body": "pineapple"}) == ["About fruit"]
    assert query({"text": "carol@elsewhere.test", "body": "apples"}) == ["Other things"]
    assert query({"operator": "NOT", "conditions": [{"text": "pineapple"}]}) == ["Other things"]
    assert query({"operator": "OR", "conditions": [{"body": "mango"}, {"body": "apples"}]}) == [
        "About fruit",
        "Other things",
    ]
    ids = jmap.call("Email/query", filter={"text": "pineapple"})["ids"]
    got = jmap.call(
        "SearchSnippet/get",
        filter={"text": "pineapple"},
        emailIds=[*ids, "Eaaaaaaaaaaaaaaaaaaaaaaaa"],
    )
    assert got["notFound"] == ["Eaaaaaaaaaaaaaaaaaaaaaaaa"]
    by_subject = {s["subject"] or "": s for s in got["list"]}
    assert by_subject["<mark>Pineapple</mark> news"]["preview"] is None
    fruit = by_subject[""]
    assert fruit["preview"] == "I like the <mark>pineapple</mark> &amp; &lt;mango&gt; best. tsx81"
    bad = jmap.calls(
        ("Email/query", {"filter": {"text": 7}}),
        ("SearchSnippet/get", {"emailIds": "x"}),
        ("SearchSnippet/get", {"emailIds": [], "filter": {"color": "red"}}),
    )
    assert [b[1]["type"] for b in bad] == [
        "invalidArguments",
        "invalidArguments",
        "unsupportedFilter",
    ]


def test_query_changes_bring_a_cached_list_up_to_date(server: Server) -> None:
    for n in range(3):
        deliver(server, f"qc {n}")
    jmap = Client(server)
    sort = [{"property": "receivedAt", "isAscending": False}]
    cond: dict[str, Any] = {"notKeyword": "$seen"}
    before = jmap.call("Email/query", filter=cond, sort=sort)
    assert before["canCalculateChanges"] is True
    old = list(before["ids"])
    jmap.call("Email/set", update={old[1]: {"keywords/$seen": True}}, destroy=[old[2]])
    deliver(server, "qc new")
    after = jmap.call("Email/query", filter=cond, sort=sort)["ids"]
    changes = jmap.call(
        "Email/queryChanges",
        filter=cond,
        sort=sort,
        sinceQueryState=before["queryState"],
        calculateTotal=True,
    )
    cached = [i for i in old if i not in changes["removed"]]
    for added in sorted(changes["added"], key=lambda a: a["index"]):
        cached.insert(added["index"], added["id"])
    assert cached == after and changes["total"] == len(after)
    assert old[1] in changes["removed"] and old[2] in changes["removed"]
    too_many = jmap.calls(
        ("Email/queryChanges", {"sinceQueryState": before["queryState"], "maxChanges": 1}),
        ("Email/queryChanges", {"sinceQueryState": "garbage"}),
        ("Email/queryChanges", {}),
        ("Mailbox/queryChanges", {"sinceQueryState": "garbage"}),
    )
    assert [t[1]["type"] for t in too_many] == [
        "tooManyChanges",
        "cannotCalculateChanges",
        "invalidArguments",
        "cannotCalculateChanges",
    ]
    boxes = jmap.call("Mailbox/query", sort=[{"property": "name"}])
    made = jmap.call("Mailbox/set", create={"n": {"name": "Zzz new"}})["created"]["n"]["id"]
    box_changes = jmap.call(
        "Mailbox/queryChanges", sort=[{"property": "name"}], sinceQueryState=boxes["queryState"]
    )
    assert box_changes["added"] == [{"id": made, "index": len(boxes["ids"])}]
