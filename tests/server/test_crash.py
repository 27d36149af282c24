"""kill -9 under load: every acknowledged change survives, none is applied twice."""

from __future__ import annotations

import contextlib
import imaplib
import socket
import threading
import time
from collections import Counter

from tests.conftest import Server
from tests.server.helpers import mailbox
from tests.server.imap_helpers import imap, message


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


def _subjects(client: imaplib.IMAP4, box: str) -> dict[str, list[int]]:
    """Subject -> UIDs in ``box``."""
    client.select(box)
    typ, data = client.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    found: dict[str, list[int]] = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(item[0].split(b"UID ")[1].split()[0])
            subject = item[1].split(b"Subject: ")[1].split(b"\r\n")[0].decode()
            found.setdefault(subject, []).append(uid)
    return found


def test_kill_9_during_imap_append_move_and_store(start_server: object) -> None:
    """APPEND OK, MOVE OK and STORE OK survive kill -9; a message is never in two places."""
    srv: Server = start_server()  # type: ignore[operator]
    seed = imap(srv)
    seed.create("Src")
    seed.create("Dst")
    for i in range(120):
        seed.append("Src", None, None, message(f"seed-{i}"))
    seed.logout()
    appended: list[str] = []
    moved: list[str] = []
    flagged: list[str] = []
    stop = threading.Event()

    def appender(worker: int) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            c = imap(srv)
            n = 0
            while not stop.is_set():
                tag = f"a{worker}-{n}"
                n += 1
                if c.append("INBOX", None, None, message(tag))[0] != "OK":
                    return
                appended.append(tag)

    def mover() -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            c = imap(srv)
            for subject, uids in sorted(_subjects(c, "Src").items()):
                if stop.is_set():
                    return
                if c.uid("MOVE", str(uids[0]), "Dst")[0] != "OK":
                    return
                moved.append(subject)

    def flagger() -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            c = imap(srv)
            while not stop.is_set():
                for subject, uids in sorted(_subjects(c, "INBOX").items()):
                    if stop.is_set() or subject in flagged:
                        continue
                    if c.uid("STORE", str(uids[0]), "+FLAGS", "(\\Flagged)")[0] != "OK":
                        return
                    flagged.append(subject)

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=mover), threading.Thread(target=flagger)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while (len(appended) < 150 or len(moved) < 30) and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill()  # SIGKILL mid-load
    stop.set()
    for t in threads:
        t.join(15)
    acked_append, acked_move, acked_flag = list(appended), list(moved), list(flagged)
    assert len(acked_append) >= 50 and len(acked_move) >= 10
    srv.start()
    c = imap(srv)
    inbox = _subjects(c, "INBOX")
    assert [t for t in acked_append if len(inbox.get(t, [])) != 1] == []
    assert all(len(uids) == 1 for uids in inbox.values())  # nothing appended twice
    src, dst = _subjects(c, "Src"), _subjects(c, "Dst")
    for i in range(120):  # each seeded message is in exactly one of the two folders
        subject = f"seed-{i}"
        assert len(src.get(subject, [])) + len(dst.get(subject, [])) == 1, subject
    assert [s for s in acked_move if s not in dst] == []
    c.select("INBOX")
    for subject in acked_flag:
        typ, data = c.uid("FETCH", str(inbox[subject][0]), "(FLAGS)")
        assert typ == "OK" and b"\\Flagged" in data[0], subject
    c.logout()
