"""kill -9 under load: every acknowledged message survives, none is stored twice."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

from tests.conftest import Server
from tests.server.helpers import mailbox


def sender(port: int, worker: int, acked: list[str], stop: threading.Event) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO load.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        n = 0
        while not stop.is_set():
            tag = f"w{worker}-{n}"
            n += 1
            sock.sendall(b"MAIL FROM:<l@load.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
            codes = [f.readline()[:3] for _ in range(3)]
            if codes != [b"250", b"250", b"354"]:
                return
            sock.sendall(f"Subject: {tag}\r\n\r\n".encode() + b"x" * 2000 + b"\r\n.\r\n")
            line = f.readline()
            if line[:3] == b"250":
                acked.append(tag)
            else:
                return
    except OSError:
        return


def test_kill_9_under_load_loses_nothing_acknowledged(start_server: object) -> None:
    srv: Server = start_server()  # type: ignore[operator]
    acked: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(srv.ports["smtp"], i, acked, stop)) for i in range(8)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill()  # SIGKILL mid-load
    stop.set()
    for t in threads:
        t.join(10)
    acknowledged = list(acked)
    assert len(acknowledged) >= 50
    srv.start()
    stored = mailbox(srv.ports["pop3s"], "alice@example.test")
    subjects = Counter(m.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in stored)
    missing = [tag for tag in acknowledged if subjects[tag] != 1]
    assert missing == []
    assert all(count == 1 for count in subjects.values())  # nothing stored twice
