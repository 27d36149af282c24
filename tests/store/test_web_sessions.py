"""Web sessions in the store (SQLite and PostgreSQL): kept across a restart, expired
ones unseen and swept, deleted on logout."""

from __future__ import annotations

import time
from pathlib import Path

from tests.store.test_contract import Factory, factory, opened, run  # noqa: F401


def test_web_sessions_survive_restart_expire_and_end(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        now = time.time()
        assert await store.web_session_get("k1") is None
        await store.web_session_put("k1", "alice@x.test", now + 3600)
        await store.web_session_put("k2", "bob@x.test", now - 1)  # already over
        await store.close()
        store = await opened(factory, tmp_path)  # another process, or node, sees them
        assert await store.web_session_get("k1") == ("alice@x.test", now + 3600)
        assert await store.web_session_get("k2") is None
        await store.web_session_put("k1", "alice@x.test", now + 7200)  # extended
        assert await store.web_session_get("k1") == ("alice@x.test", now + 7200)
        await store.web_session_put("k3", "alice@x.test", now + 3600)
        await store.web_session_put("k4", "carol@x.test", now + 3600)
        assert await store.web_sessions_end("alice@x.test", keep="k1") == 1  # k3 went
        assert await store.web_session_get("k3") is None
        assert await store.web_session_get("k1") is not None
        assert await store.web_session_get("k4") is not None
        await store.web_session_delete("k1")
        await store.web_session_delete("unknown")
        assert await store.web_session_get("k1") is None
        await store.close()

    run(go())
