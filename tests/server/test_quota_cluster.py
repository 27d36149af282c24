"""Quotas on a cluster: two nodes on one PostgreSQL database race APPENDs and SMTP
deliveries at an account's limit; the limit holds across nodes (the store locks the
account's quota row in each writing transaction), and the 90 % warning comes once."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Server, correo
from tests.pg import PgCluster
from tests.server.cluster_helpers import eventually
from tests.server.helpers import RawSmtp
from tests.server.test_cluster import ALICE, Pair, _start_pair, _stop_pair, imap_login

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

LIMIT = 8


@pytest.fixture(scope="module")
def pair(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    made = _start_pair(tmp_path_factory.mktemp("quota-cluster"), pg_cluster.new_database())
    yield made
    _stop_pair(made)


def _message(n: int) -> bytes:
    return f"From: a@remote.test\r\nSubject: race {n}\r\n\r\n{'x' * 400}\r\n".encode()


def test_racing_appends_and_deliveries_through_two_nodes_never_pass_the_limit(
    pair: Pair,
) -> None:
    r = correo(pair.one.data, "user", "quota", ALICE, "none", "--messages", str(LIMIT))
    assert r.returncode == 0, r.stderr
    outcomes: list[str] = []
    lock = threading.Lock()

    def appender(node: Server, index: int) -> None:
        client = imap_login(node)
        try:
            for n in range(6):
                typ, _ = client.append("INBOX", None, None, _message(index * 100 + n))
                with lock:
                    outcomes.append(typ)
        finally:
            client.logout()

    def sender(node: Server) -> None:
        for _ in range(3):
            c = RawSmtp(node.ports["smtp"])
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@remote.test>")
            code, _ = c.cmd(f"RCPT TO:<{ALICE}>")
            if code == 250:
                assert c.cmd("DATA")[0] == 354
                c.send(_message(999) + b"\r\n.\r\n")
                code, _ = c.reply()
            c.cmd("QUIT")
            c.close()
            with lock:
                outcomes.append("SMTP 250" if code == 250 else f"SMTP {code}")

    threads = [
        threading.Thread(target=appender, args=(node, i))
        for i, node in enumerate([pair.one, pair.two, pair.one, pair.two])
    ] + [threading.Thread(target=sender, args=(node,)) for node in pair.nodes()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    # IMAP APPEND is refused past the limit; SMTP refuses at DATA what the pre-check sees
    # over it, and a message that passed the pre-check while another node's commit took
    # the last place gets its 250 and waits in the queue (retried, bounced in the end):
    # never filed past the limit, which the mailbox's contents below hold
    accepted = outcomes.count("OK") + outcomes.count("SMTP 250")
    assert outcomes.count("OK") <= LIMIT <= accepted, outcomes
    assert all(o in ("OK", "NO", "SMTP 250", "SMTP 452") for o in outcomes), outcomes

    def inbox() -> list[bytes]:
        client = imap_login(pair.two)
        try:
            client.select("INBOX", readonly=True)
            _, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            return [p[1] for p in data if isinstance(p, tuple)]
        finally:
            client.logout()

    # LIMIT messages and the one warning (a server notice, never refused)
    assert eventually(lambda: len(inbox()) == LIMIT + 1, timeout=10)
    assert sum(1 for s in inbox() if b"almost full" in s) == 1
    shown = correo(pair.two.data, "user", "quota", ALICE).stdout
    assert re.search(rf"messages {LIMIT + 1} of {LIMIT}\b", shown), shown
