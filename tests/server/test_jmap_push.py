"""JMAP push over real sockets (RFC 8620 §7.3 EventSource, RFC 8887 WebSocket): every
type the account has is announced with its new state when it changes — Mailbox, Email,
Thread, EmailDelivery and Quota by a delivery over SMTP, Identity, EmailSubmission,
VacationResponse and SieveScript by their /set; SieveScript and Quota changed over
ManageSieve and by the CLI (another process), and EmailSubmission when the queue
delivers or bounces — and the state announced is the one the type's /get answers
afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, correo
from tests.server.jmap_helpers import sieve_login
from tests.server.push_helpers import (
    ALICE,
    BOB,
    Client,
    Events,
    ReplyMx,
    WsPush,
    deliver,
    sieve_server,
)

#: Well under the 15 s the push watch waits before it reads the store unprompted: a
#: change seen within this was pushed by the store's account feed.
PROMPT = 5.0


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    yield from sieve_server(tmp_path)


def test_every_type_is_announced_over_eventsource(srv: Server) -> None:
    jmap = Client(srv)
    account = jmap.account
    (identity,) = jmap.call("Identity/get", ids=None)["list"]  # the default one, made now
    events = Events(srv)
    try:
        # a delivery over SMTP: the mail types, EmailDelivery and Quota (usage moved)
        deliver(srv, "pushed")
        mail = jmap.state("Mailbox/get")
        assert mail == jmap.state("Email/get", properties=["id"])
        events.expect(
            account,
            {"Mailbox": mail, "Email": mail, "Thread": mail, "EmailDelivery": None,
             "Quota": jmap.state("Quota/get")},
        )  # fmt: skip
        # Identity/set
        done = jmap.call("Identity/set", update={identity["id"]: {"name": "Alice A."}})
        assert done["updated"] == {identity["id"]: None}, done
        assert done["newState"] == jmap.state("Identity/get")
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
        assert sent["newState"] == jmap.state("EmailSubmission/get")
        events.expect(account, {"EmailSubmission": sent["newState"]})
        # VacationResponse/set (the account's Sieve vacation)
        on = jmap.call(
            "VacationResponse/set",
            update={"singleton": {"isEnabled": True, "textBody": "Away."}},
        )
        assert on["updated"] == {"singleton": None}, on
        assert on["newState"] == jmap.state("VacationResponse/get")
        events.expect(account, {"VacationResponse": on["newState"]})
        # SieveScript/set: a new script
        blob = jmap.upload(b"keep;\r\n")
        made = jmap.call("SieveScript/set", create={"a": {"name": "plain", "blobId": blob}})
        assert "a" in made["created"], made
        assert made["newState"] == jmap.state("SieveScript/get")
        events.expect(account, {"SieveScript": made["newState"]})
    finally:
        events.close()


def test_a_websocket_announces_identity_and_sieve_changes(srv: Server) -> None:
    jmap = Client(srv)
    account = jmap.account
    (identity,) = jmap.call("Identity/get", ids=None)["list"]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str, str]:
        async with WsPush(srv, push_state="stale") as push:
            catch_up = await push.receive()
            renamed = await asyncio.to_thread(
                jmap.call, "Identity/set", update={identity["id"]: {"name": "Push"}}
            )
            first = await push.until(
                lambda c: c["changed"][account].get("Identity") == renamed["newState"]
            )
            blob = await asyncio.to_thread(jmap.upload, b"keep;\r\n")
            made = await asyncio.to_thread(
                jmap.call, "SieveScript/set", create={"a": {"name": "ws", "blobId": blob}}
            )
            second = await push.until(
                lambda c: c["changed"][account].get("SieveScript") == made["newState"]
            )
            return catch_up, first, second, renamed["newState"], made["newState"]

    catch_up, first, second, identity_state, sieve_state = asyncio.run(scenario())
    # RFC 8887 §4.3.5.2: a pushState the server does not know brings every state now
    assert catch_up["@type"] == "StateChange"
    assert set(catch_up["changed"][account]) >= {"Email", "Identity", "SieveScript", "Quota"}
    assert first["changed"][account] == {"Identity": identity_state}
    assert second["changed"][account] == {"SieveScript": sieve_state}
    assert first["pushState"] != second["pushState"] != catch_up["pushState"]


def test_managesieve_and_cli_changes_are_pushed_at_once(srv: Server) -> None:
    """Writers outside JMAP — a ManageSieve session, the CLI in a process of its own —
    reach push through the store's account feed, not a poll of the store."""
    jmap = Client(srv)
    account = jmap.account
    events = Events(srv)
    try:
        events.sync(jmap)
        sieve = sieve_login(srv.ports["sieve"])
        script = b"keep;\r\n"
        put = sieve.cmd(b'PUTSCRIPT "managed" {%d+}\r\n' % len(script) + script)
        assert put[-1] == b"OK", put
        sieve.cmd(b"LOGOUT")
        events.expect(account, {"SieveScript": jmap.state("SieveScript/get")}, PROMPT)
        # the CLI: another process, writing the same store
        done = correo(srv.data, "sieve", "put", ALICE, "cli", "-", "--activate", stdin="keep;\n")
        assert done.returncode == 0, done.stderr
        wanted = jmap.state("SieveScript/get")
        events.expect(account, {"SieveScript": wanted}, PROMPT)
        (active,) = jmap.call("SieveScript/query", filter={"isActive": True})["ids"]
        assert jmap.call("SieveScript/get", ids=[active])["list"][0]["name"] == "cli"
        done = correo(srv.data, "user", "quota", ALICE, "20M", "--messages", "500")
        assert done.returncode == 0, done.stderr
        quota = jmap.call("Quota/get", ids=None)
        assert {q["resourceType"]: q["hardLimit"] for q in quota["list"]} == {
            "octets": 20 * 1024 * 1024,
            "count": 500,
        }
        events.expect(account, {"Quota": quota["state"]}, PROMPT)
    finally:
        events.close()


def test_cli_changes_reach_push_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL the CLI's write reaches the node by NOTIFY (postgres_feed.py)."""
    pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")
    from tests.server.test_postgres_store import pg_node

    server = pg_node(tmp_path / "node", pg_url)
    server.start()
    try:
        jmap = Client(server)
        events = Events(server)
        try:
            events.sync(jmap)
            done = correo(server.data, "sieve", "put", ALICE, "pg", "-", stdin="keep;\n")
            assert done.returncode == 0, done.stderr
            wanted = jmap.state("SieveScript/get")
            events.expect(jmap.account, {"SieveScript": wanted}, PROMPT)
            done = correo(server.data, "user", "quota", ALICE, "30M")
            assert done.returncode == 0, done.stderr
            quota = jmap.call("Quota/get", ids=None)
            assert [q["hardLimit"] for q in quota["list"]] == [30 * 1024 * 1024]
            events.expect(jmap.account, {"Quota": quota["state"]}, PROMPT)
        finally:
            events.close()
    finally:
        assert server.stop() == 0, server.log()[-3000:]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Server, ReplyMx]]:
    """A server whose queue relays remote.test to a peer that takes ok@ and refuses the
    rest for good (RFC 5321 §4.2.2 550)."""
    mx = ReplyMx(lambda rcpt: b"250 2.1.5 ok" if rcpt.startswith("ok@") else b"550 5.1.1 no")
    outbound = f"transport = {json.dumps([f'remote.test smtp:[127.0.0.1]:{mx.port}'])}"
    try:
        for server in sieve_server(tmp_path, outbound + "\nretry_initial = 3600.0"):
            yield server, mx
    finally:
        mx.close()


def test_the_queue_s_outcomes_are_pushed_as_emailsubmission_changes(
    relay: tuple[Server, ReplyMx],
) -> None:
    """RFC 8621 §7: deliveryStatus follows the queue — "queued" when sent, then "yes"
    for the recipient the peer took and "no" for the one it refused — and each move of
    the EmailSubmission state is pushed."""
    srv, mx = relay
    jmap = Client(srv)
    account = jmap.account
    (identity,) = jmap.call("Identity/get", ids=None)["list"]
    draft = jmap.call(
        "Email/set",
        create={
            "d": {
                "mailboxIds": {jmap.mailbox_id("INBOX"): True},
                "from": [{"email": ALICE}],
                "to": [{"email": "ok@remote.test"}, {"email": "gone@remote.test"}],
                "subject": "relayed",
                "textBody": [{"partId": "1", "type": "text/plain"}],
                "bodyValues": {"1": {"value": "Out through the queue.\n"}},
            }
        },
    )["created"]["d"]["id"]
    events = Events(srv)
    try:
        events.sync(jmap)
        sent = jmap.call(
            "EmailSubmission/set", create={"s": {"identityId": identity["id"], "emailId": draft}}
        )
        ident = sent["created"]["s"]["id"]
        # the queue's answers each move the state, and each move is pushed at once (a
        # quick queue's may come before the push of the submission's own)
        state = sent["newState"]
        for _ in range(5):
            got = jmap.call("EmailSubmission/get", ids=[ident])
            delivery = got["list"][0]["deliveryStatus"]
            if all(d["delivered"] != "queued" for d in delivery.values()):
                events.expect(account, {"EmailSubmission": got["state"]}, PROMPT)
                break
            state = events.moved(account, "EmailSubmission", state, PROMPT)
        assert delivery["ok@remote.test"]["delivered"] == "yes", delivery
        assert delivery["ok@remote.test"]["smtpReply"].startswith("250"), delivery
        assert delivery["gone@remote.test"]["delivered"] == "no", delivery
        assert delivery["gone@remote.test"]["smtpReply"].startswith("5"), delivery
        assert set(mx.answered) == {"ok@remote.test", "gone@remote.test"}
    finally:
        events.close()
