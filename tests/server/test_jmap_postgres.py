"""JMAP on the PostgreSQL store: the same ids, moves, keyword changes and changes
feed as on SQLite, with IMAP on the same node seeing each change (tests/pg.py starts a
private cluster; skipped where PostgreSQL is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.imap_helpers import imap, message
from tests.server.jmap_helpers import Jmap
from tests.server.test_postgres_store import pg_node

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")


def test_jmap_over_postgresql(pg_url: str, tmp_path: Path) -> None:
    server = pg_node(tmp_path / "node", pg_url)
    server.start()
    try:
        client = imap(server)
        client.append("INBOX", "", '"01-Jan-2024 10:00:00 +0000"', message("on postgres"))
        client.create("Archive")
        client.logout()
        jmap = Jmap(server)
        ids = jmap.email_ids()
        got = jmap.call("Email/get", ids=ids, properties=["subject", "mailboxIds"])
        email = next(e for e in got["list"] if e["subject"] == "on postgres")
        state = got["state"]
        archive = jmap.mailbox_id("Archive")
        update = {email["id"]: {"mailboxIds": {archive: True}, "keywords/$flagged": True}}
        assert jmap.call("Email/set", update=update)["updated"] == {email["id"]: None}
        after = jmap.call("Email/get", ids=[email["id"]], properties=["mailboxIds", "keywords"])
        assert after["list"][0]["mailboxIds"] == {archive: True}
        assert after["list"][0]["keywords"] == {"$flagged": True}
        changes = jmap.call("Email/changes", sinceState=state)
        assert changes["updated"] == [email["id"]] and changes["destroyed"] == []
        check = imap(server)
        check.select("Archive")
        _, flags = check.fetch("1", "(FLAGS)")
        assert b"\\Flagged" in flags[0]
        check.logout()
    finally:
        assert server.stop() == 0, server.log()[-3000:]
