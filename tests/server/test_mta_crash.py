"""kill -9 of the sending instance mid-queue: after restart every message arrives once.

SMTP itself is at-least-once: if the sender dies after the peer's 250 and before its
own commit is durable, the message is sent again after restart.  correo commits the
"delivered" state right after the 250, before anything else, so that window is one
group-commit flush; a kill landing outside it must cause neither loss nor duplicate.

To land the kill outside that unavoidable window deterministically, the MX record of
b.test points at a relay in the test that can hold the client-to-server direction: the
transaction in flight cannot complete, every 250 already sent still reaches the sender,
and once the sender has logged each of those deliveries (after its commit) it is killed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

from tests.server.conftest_mta import MX_PORT, DnsServer, Instance, message

COUNT = 30


class HoldingRelay:
    """TCP relay 127.0.0.5 -> 127.0.0.3 on ``MX_PORT``; ``hold`` drops client-to-server bytes."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.5", MX_PORT), reuse_port=False)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.3", MX_PORT))
            except OSError:
                client.close()  # b.test is down: the sender sees a dropped connection
                continue
            self.sockets += (client, upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, holdable: bool) -> None:
        dropping = False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Held bytes are dropped for good, not delayed: released after the kill, a
                # held final "." would complete a transaction whose sender is dead.
                dropping = dropping or (holdable and self.hold.is_set())
                if not dropping:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Stop, and end the connections (b's stalled session would delay its shutdown)."""
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv(); FIN to b
            except OSError:
                pass


def test_kill_9_mid_queue_then_every_message_once(instances: object, dns_server: DnsServer) -> None:
    relay = HoldingRelay()
    dns_server.zone["mx.b.test"] = {"A": ["127.0.0.5"]}
    a: Instance = instances("a.test", "127.0.0.2", {"max_per_destination": "1"})  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3", start=False)  # type: ignore[operator]
    a.submit_many(
        "alice@a.test",
        [(["bob@b.test"], message("alice@a.test", "bob@b.test", f"m{i}")) for i in range(COUNT)],
    )
    b.start()
    deadline = time.monotonic() + 20
    while len(b.mailbox("bob")) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    relay.hold.set()  # the transaction in flight stalls before its end
    _wait_recorded(a, b)
    a.kill()  # SIGKILL while the queue is being delivered
    relay.hold.clear()
    got_before = len(b.mailbox("bob"))
    assert 0 < got_before < COUNT, "the kill should land mid-queue"
    a.start()
    b.wait_mail("bob", COUNT, timeout=30)
    # A message leaves a's queue only after b's 250: once the queue is empty, anything
    # sent twice is in bob's box already (no fixed wait for it).
    assert a.queue_empty()
    box = b.mailbox("bob")
    subjects = Counter(m.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in box)
    assert sorted(subjects) == sorted(f"m{i}" for i in range(COUNT))
    assert all(n == 1 for n in subjects.values()), subjects.most_common(3)
    relay.close()


def _wait_recorded(a: Instance, b: Instance, timeout: float = 20.0) -> None:
    """Until a has logged ``queue.delivered`` (written after its commit) for every
    message in bob's box, and bob's box stopped growing: the kill then lands outside
    the duplicate window however slowly a loaded machine runs a's commits."""
    deadline = time.monotonic() + timeout
    while True:
        stored = len(b.mailbox("bob"))
        recorded = a.log().count("event=queue.delivered")
        if recorded >= stored and len(b.mailbox("bob")) == stored:
            return
        assert time.monotonic() < deadline, (stored, recorded)
        time.sleep(0.05)
