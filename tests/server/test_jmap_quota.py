"""JMAP Quota (RFC 9425) over real TLS: the account's STORAGE and MESSAGE quotas, set by
``correo user quota`` on the running server, their usage moving with delivered mail."""

from __future__ import annotations

from tests.conftest import Server, correo
from tests.server.helpers import RawSmtp
from tests.server.jmap_helpers import Jmap

QUOTA = "urn:ietf:params:jmap:quota"
USING = ["urn:ietf:params:jmap:core", QUOTA]
CAROL = "carol@example.test"


class Client(Jmap):
    using = USING


def _deliver(server: Server) -> None:
    smtp = RawSmtp(server.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd("MAIL FROM:<bob@elsewhere.test>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{CAROL}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(f"From: bob@elsewhere.test\r\nTo: {CAROL}\r\nSubject: q\r\n\r\nhi\r\n.\r\n".encode())
    assert smtp.reply()[0] == 250
    smtp.close()


def test_quota_objects_follow_the_account_quota(server: Server) -> None:
    jmap = Client(server, CAROL)
    assert QUOTA in jmap.session["capabilities"]
    assert QUOTA in jmap.session["accounts"][jmap.account]["accountCapabilities"]
    none = jmap.call("Quota/get", ids=None)
    assert none["list"] == []  # no limit, no quota
    done = correo(server.data, "user", "quota", CAROL, "10M", "--messages", "100")
    assert done.returncode == 0, done.stderr
    got = jmap.call("Quota/get", ids=None)
    by_id = {q["id"]: q for q in got["list"]}
    assert by_id["Qoctets"]["hardLimit"] == 10 * 1024 * 1024
    assert by_id["Qoctets"]["resourceType"] == "octets" and by_id["Qoctets"]["types"] == ["Mail"]
    assert by_id["Qcount"]["hardLimit"] == 100 and by_id["Qcount"]["scope"] == "account"
    used = by_id["Qcount"]["used"]
    _deliver(server)
    changes = jmap.call("Quota/changes", sinceState=got["state"])
    assert sorted(changes["updated"]) == ["Qcount", "Qoctets"]
    assert changes["updatedProperties"] == ["used"]
    (count,) = jmap.call("Quota/get", ids=["Qcount"], properties=["used"])["list"]
    assert count == {"id": "Qcount", "used": used + 1}
    query = jmap.call("Quota/query", filter={"resourceType": "count"}, calculateTotal=True)
    assert query["ids"] == ["Qcount"] and query["total"] == 1
    bad = jmap.calls(
        ("Quota/changes", {"sinceState": "nonsense"}),
        ("Quota/query", {"filter": {"color": "red"}}),
        ("Quota/query", {"sort": [{"property": "hardLimit"}]}),
        ("Quota/get", {"properties": ["color"]}),
        ("Quota/queryChanges", {"sinceQueryState": query["queryState"]}),
    )
    assert [b[1]["type"] for b in bad] == [
        "cannotCalculateChanges",
        "unsupportedFilter",
        "unsupportedSort",
        "invalidArguments",
        "cannotCalculateChanges",
    ]
    assert correo(server.data, "user", "quota", CAROL, "none", "--messages", "none").returncode == 0
    gone = jmap.call("Quota/changes", sinceState=got["state"])
    assert sorted(gone["destroyed"]) == ["Qcount", "Qoctets"]
