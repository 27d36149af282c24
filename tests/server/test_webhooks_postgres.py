"""Webhooks on PostgreSQL with two nodes: each attempt is made by one node, the call is
sent once accepted, and an attachment link written by one node opens on the other."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.server.cluster_helpers import make_node
from tests.server.test_webhooks import (
    BIG,
    BOB,
    SECRET,
    Receiver,
    accepted,
    fetch,
    sample_message,
    verify,
)

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")


def hook_node(data: Path, url: str, receiver: Receiver, *, users: bool) -> Server:
    server = make_node(data, url, "localhost", users=users)
    settings = {
        "url": receiver.url,
        "events": ["received"],
        "secret": SECRET,
        "retry_initial": 0.3,
        "retry_max": 0.6,
        "inline_limit": 100,
    }
    with (data / "correo.toml").open("a") as fh:
        fh.write(
            "\n[[webhooks]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        )
    return server


def test_two_nodes_share_the_call_and_the_links(pg_url: str, tmp_path: Path) -> None:
    receiver = Receiver(fail=2).start()
    one = hook_node(tmp_path / "one", pg_url, receiver, users=True)
    two = hook_node(tmp_path / "two", pg_url, receiver, users=False)
    one.start()
    two.start()
    try:
        with smtplib.SMTP("127.0.0.1", one.ports["smtp"], timeout=30) as smtp:
            smtp.sendmail("sender@elsewhere.test", [BOB], sample_message())
        (done,) = receiver.wait(accepted("received"), timeout=30)
        attempts = [c for c in receiver.calls if c.headers["Webhook-Event"] == "received"]
        assert [c.status for c in attempts] == [503, 503, 204]
        assert [c.headers["Webhook-Attempt"] for c in attempts] == ["1", "2", "3"]
        assert {c.headers["Webhook-Id"] for c in attempts} == {done.headers["Webhook-Id"]}
        verify(done)
        message = done.json["data"]["message"]
        assert message["text"] == "Plain body: día\n"
        big = message["attachments"][1]
        for node in (one, two):  # one key for the cluster: either node serves the link
            status, body, _ = fetch(big["url"], node.ports["https"])
            assert (status, body) == (200, BIG)
        logs = one.log() + two.log()
        assert logs.count("event=webhook.sent") == 1
        assert logs.count("event=webhook.failed") == 2
    finally:
        assert one.stop() == 0
        assert two.stop() == 0
        receiver.stop()
