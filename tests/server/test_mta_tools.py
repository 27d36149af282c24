"""sendmail and the queue commands, against the store with and without the server."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.server.conftest_mta import Instance, correo


def sendmail(data: object, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "--data", str(data), "sendmail", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={"USER": "alice", "PATH": "/usr/bin:/bin"},
    )


def test_sendmail_offline_then_flush_and_delete(instances: object) -> None:
    a: Instance = instances("a.test", "127.0.0.2", {"retry_initial": "3600.0"}, start=False)  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3", start=False)  # type: ignore[operator]
    msg = b"To: bob@b.test\nBcc: alice@b.test\nSubject: cron job\n\nline one\n.\nnot read\n"
    r = sendmail(a.data, "-t", stdin=msg)
    assert r.returncode == 0, r.stderr
    listing = correo(a.data, "queue", "list").stdout
    assert "<alice@a.test>" in listing and "bob@b.test" in listing and "alice@b.test" in listing
    qid = re.search(r"^(\d+)\s", listing, re.M)
    assert qid is not None
    shown = correo(a.data, "queue", "show", qid.group(1)).stdout
    assert "Subject: cron job" in shown and "Bcc" not in shown and "Message-ID:" in shown
    a.start()  # b.test is down: deferred, next try in an hour
    deadline = time.monotonic() + 10
    while "event=queue.deferred" not in a.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "connect to mx.b.test" in correo(a.data, "queue", "show", qid.group(1)).stdout
    # A second message, deleted while queued: it must never arrive.
    r = sendmail(a.data, "-f", "alice@a.test", "bob@b.test", stdin=b"Subject: deleted\n\nx\n")
    assert r.returncode == 0, r.stderr
    ids = re.findall(r"^(\d+)\s", correo(a.data, "queue", "list").stdout, re.M)
    assert len(ids) == 2
    assert correo(a.data, "queue", "delete", ids[1]).returncode == 0
    b.start()
    assert correo(a.data, "queue", "flush").returncode == 0  # the running runner polls
    bob = b.wait_mail("bob", 1)
    alice = b.wait_mail("alice", 1)
    assert len(bob) == 1 and len(alice) == 1, a.log()[-2000:]
    assert b"Subject: cron job" in bob[0] and b"not read" not in bob[0]
    assert b"Bcc" not in bob[0] and b"From: <alice@a.test>" in bob[0]
    # A queued message leaves the queue only after the next hop's 250: once the queue
    # is empty, a deleted message that was sent anyway would be in bob's box already.
    assert a.queue_empty()
    assert len(b.mailbox("bob")) == 1


def test_sendmail_to_local_user_goes_to_the_store(instances: object) -> None:
    a: Instance = instances("a.test", "127.0.0.2", start=False)  # type: ignore[operator]
    r = sendmail(a.data, "-i", "bob", stdin=b"Subject: local\r\n\r\n.\r\nkept\r\n")
    assert r.returncode == 0, r.stderr
    assert "empty" in correo(a.data, "queue", "list").stdout
    a.start()
    (got,) = a.mailbox("bob")
    assert b"Return-Path: <alice@a.test>" in got and b"\r\n.\r\nkept" in got
    r = sendmail(a.data, "nobody", stdin=b"Subject: x\n\nx\n")
    assert r.returncode == 67
