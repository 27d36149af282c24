"""JMAP Threads (RFC 8621 §3) over real TLS: conversations by References/In-Reply-To and
Message-ID, the same ids after a restart, collapseThreads, Thread/changes, and
Email/changes over an expunge made before the restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, make_data_dir
from tests.server.helpers import RawSmtp
from tests.server.imap_helpers import imap
from tests.server.jmap_helpers import Jmap

ALICE = "alice@example.test"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    make_data_dir(data)
    server = Server(data)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


def _deliver(server: Server, subject: str, headers: str = "") -> None:
    smtp = RawSmtp(server.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd("MAIL FROM:<bob@elsewhere.test>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(
        f"From: bob@elsewhere.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n{headers}"
        f"\r\nhello\r\n.\r\n".encode()
    )
    assert smtp.reply()[0] == 250
    smtp.close()


def _by_subject(jmap: Jmap) -> dict[str, dict[str, Any]]:
    ids = jmap.email_ids()
    got = jmap.call("Email/get", ids=ids, properties=["subject", "threadId"])["list"]
    return {e["subject"]: e for e in got}


def test_threads_by_references_stable_across_restart(srv: Server) -> None:
    _deliver(srv, "plans", "Message-ID: <root@t>\r\n")
    _deliver(srv, "Re: plans", "Message-ID: <r1@t>\r\nIn-Reply-To: <root@t>\r\n")
    _deliver(srv, "Re: Re: plans", "Message-ID: <r2@t>\r\nReferences: <root@t> <r1@t>\r\n")
    _deliver(srv, "other", "Message-ID: <other@t>\r\n")
    _deliver(srv, "Re: nothing", "")  # no ids: by base subject
    _deliver(srv, "nothing", "")
    jmap = Jmap(srv)
    emails = _by_subject(jmap)
    plans = emails["plans"]["threadId"]
    assert emails["Re: plans"]["threadId"] == plans == emails["Re: Re: plans"]["threadId"]
    assert emails["other"]["threadId"] != plans
    assert emails["Re: nothing"]["threadId"] == emails["nothing"]["threadId"]
    (thread,) = jmap.call("Thread/get", ids=[plans])["list"]
    ordered = [emails[s]["id"] for s in ("plans", "Re: plans", "Re: Re: plans")]
    assert thread["emailIds"] == ordered  # oldest first
    missing = jmap.call("Thread/get", ids=["Tnope"])
    assert missing["notFound"] == ["Tnope"]
    collapsed = jmap.call("Email/query", collapseThreads=True, calculateTotal=True)
    assert collapsed["total"] == 3
    inbox = jmap.call("Mailbox/get", ids=[jmap.mailbox_id("INBOX")])["list"][0]
    assert inbox["totalEmails"] == 6 and inbox["totalThreads"] == 3
    assert inbox["unreadThreads"] == 3
    # a reply arriving later updates the thread
    state = jmap.call("Thread/get", ids=[])["state"]
    _deliver(srv, "Re: other", "References: <other@t>\r\n")
    changes = jmap.call("Thread/changes", sinceState=state)
    assert changes["updated"] == [emails["other"]["threadId"]] and changes["created"] == []
    # an expunge over IMAP before a restart is named by Email/changes after it
    before = jmap.call("Email/get", ids=[])["state"]
    client = imap(srv, ALICE)
    client.select("INBOX")
    _, hits = client.search(None, "SUBJECT", '"Re: Re: plans"')
    client.store(hits[0].split()[0], "+FLAGS", "\\Deleted")
    client.expunge()
    client.logout()
    srv.stop()
    srv.start()
    jmap = Jmap(srv)
    again = _by_subject(jmap)
    assert again["plans"]["threadId"] == plans and again["other"]["threadId"] != plans
    gone = jmap.call("Email/changes", sinceState=before)
    assert gone["destroyed"] == [emails["Re: Re: plans"]["id"]]
    assert gone["created"] == [] and gone["updated"] == []
