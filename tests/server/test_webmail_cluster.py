"""Webmail sessions on two nodes of one PostgreSQL store: a login made on one node is
good on the other, and a logout on either ends it on both (tests/pg.py starts a private
cluster; skipped where PostgreSQL is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server.cluster_helpers import make_node
from tests.server.test_webmail_http import _api, _base, _http, login

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")


def test_session_made_on_one_node_works_on_the_other(pg_url: str, tmp_path: Path) -> None:
    one = make_node(tmp_path / "one", pg_url, "one.example.test", users=True)
    two = make_node(tmp_path / "two", pg_url, "two.example.test")
    one.start()
    two.start()
    try:
        http, bearer = login(one, "alice@example.test")
        echo = [["Core/echo", {"node": "two"}, "0"]]
        got = _api(_http(), two, bearer, echo)
        assert got.status_code == 200, got.text
        assert got.json()["methodResponses"][0][1] == {"node": "two"}
        out = _http().post(
            _base(two) + "/logout",
            headers={"Origin": _base(two), "X-CSRF-Token": bearer},
            cookies={"__Host-correo": http.cookies["__Host-correo"]},
            allow_redirects=False,
            timeout=10,
        )
        assert out.status_code == 303
        assert _api(_http(), one, bearer, echo).status_code == 401
    finally:
        assert one.stop() == 0, one.log()[-3000:]
        assert two.stop() == 0, two.log()[-3000:]
