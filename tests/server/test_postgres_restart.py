"""A node rides out a PostgreSQL restart under SMTP load.

While the database is down, clients get their protocol's temporary error (SMTP 451
4.3.0, IMAP ``NO [UNAVAILABLE]``, POP3 ``-ERR [SYS/TEMP]``); every message acknowledged
with 250 is in the store afterwards; the node reconnects by itself; and an IMAP session
that was idling across the restart sees a delivery made after it by another process,
which reaches the node only through the LISTEN connection (reconnected, then caught up
from the tables).  The cluster is the test's own (tests/pg.py): it is stopped and started
again on the same port, as a restart or fail-over does to clients.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, client_tls, correo
from tests.pg import PgCluster
from tests.server.imap_helpers import RawImap
from tests.server.test_postgres_store import pg_node

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

ALICE, BOB = "alice@example.test", "bob@example.test"
SENDERS = 4


class Load:
    """Threads sending to BOB over SMTP, one message after another, each remembering
    which messages were acknowledged (250) and which were refused, with what reply."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[str] = []
        self.refused: list[tuple[str, int, bytes]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(SENDERS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, k: int) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
                    for _ in range(10):  # a few messages per connection
                        if self.stop.is_set():
                            return
                        i += 1
                        subject = f"load-{k}-{i}"
                        self._send(smtp, subject)
            except (OSError, smtplib.SMTPException) as exc:
                with self.lock:
                    self.errors.append(repr(exc))
                time.sleep(0.1)

    def _send(self, smtp: smtplib.SMTP, subject: str) -> None:
        msg = f"From: dave@remote.test\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nHi.\r\n"
        try:
            smtp.sendmail("dave@remote.test", [BOB], msg.encode())
        except smtplib.SMTPDataError as exc:
            with self.lock:
                self.refused.append((subject, exc.smtp_code, exc.smtp_error))
            return
        with self.lock:
            self.accepted.append(subject)

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def subjects(port: int) -> set[str]:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_tls(), timeout=30)
    client.login(BOB, PASSWORDS[BOB])
    client.select("INBOX", readonly=True)
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    client.logout()
    found = set()
    for part in data:
        if isinstance(part, tuple):
            found.add(part[1].decode().partition(":")[2].strip())
    return found


def test_a_node_rides_out_a_database_restart(own_pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = own_pg_cluster.new_database()
    data = tmp_path / "node"
    server = pg_node(data, url)
    server.start()
    try:
        # An IMAP session idling on ALICE's INBOX across the restart.
        idle = RawImap(server.ports["imaps"], timeout=30)
        idle.login(ALICE)
        assert idle.cmd("S", "SELECT INBOX")[-1].startswith(b"S OK")
        idle.send(b"I IDLE\r\n")
        assert idle.line().startswith(b"+ "), "IDLE"

        with Load(server.ports["smtp"]) as load:
            wait_for(lambda: load.count() >= 20, 30, "mail accepted before the restart")

            own_pg_cluster.stop_server("fast")  # every connection of the node is cut
            wait_for(lambda: len(load.refused) >= 3, 30, "mail refused while down")
            before = load.count()
            # Other protocols meanwhile: their temporary errors, and the server stays up.
            imap = RawImap(server.ports["imaps"])
            answer = imap.cmd("L", f'LOGIN "{ALICE}" "{PASSWORDS[ALICE]}"')[-1]
            assert answer.startswith(b"L NO [UNAVAILABLE]"), answer  # RFC 5530 §3
            imap.close()
            pop = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=client_tls())
            pop.user(ALICE)
            with pytest.raises(poplib.error_proto) as refused:
                pop.pass_(PASSWORDS[ALICE])
            assert refused.value.args[0].startswith(b"-ERR [SYS/TEMP]"), refused.value  # RFC 3206
            pop.quit()

            own_pg_cluster.start_server()  # the same port: the node finds it by itself
            wait_for(lambda: load.count() >= before + 20, 60, "mail accepted after the restart")

        # A delivery by another process after the restart: the idle session hears of it
        # only through the node's LISTEN connection, which had to reconnect.
        note = "Subject: after the restart\n\nHello.\n"
        sent = correo(data, "sendmail", "-f", "dave@example.test", ALICE, stdin=note)
        assert sent.returncode == 0, sent.stderr
        idle.sock.settimeout(15)  # well under the idle session's own 30 s look
        assert idle.line() == b"* 1 EXISTS"
        idle.send(b"DONE\r\n")
        assert idle.until(b"I")[-1].startswith(b"I OK")
        idle.close()

        # Every 250 is in the store; every refusal was a temporary one.
        assert not load.errors, load.errors[:5]
        assert load.refused, "no session saw the outage"
        for subject, code, text in load.refused:
            assert (code, text[:5]) == (451, b"4.3.0"), (subject, code, text)
        stored = subjects(server.ports["imaps"])
        missing = set(load.accepted) - stored
        assert not missing, sorted(missing)[:10]
    finally:
        assert server.stop() == 0, server.log()[-3000:]
