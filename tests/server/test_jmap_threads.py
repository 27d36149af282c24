"""JMAP Threads (RFC 8621 §3) over real TLS: conversations by References/In-Reply-To and
Message-ID, the same ids after a restart, collapseThreads, Thread/changes, and
Email/changes over an expunge made before the restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, make_data_dir
from tests.server.imap_helpers import imap
from tests.server.jmap_helpers import Jmap
from tests.server.push_helpers import ALICE, deliver


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    make_data_dir(data)
    server = Server(data)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


def _by_subject(jmap: Jmap) -> dict[str, dict[str, Any]]:
    ids = jmap.email_ids()
    got = jmap.call("Email/get", ids=ids, properties=["subject", "threadId"])["list"]
    return {e["subject"]: e for e in got}


def test_threads_by_references_stable_across_restart(srv: Server) -> None:
    deliver(srv, "plans", headers="Message-ID: <root@t>\r\n")
    deliver(srv, "Re: plans", headers="Message-ID: <r1@t>\r\nIn-Reply-To: <root@t>\r\n")
    deliver(srv, "Re: Re: plans", headers="Message-ID: <r2@t>\r\nReferences: <root@t> <r1@t>\r\n")
    deliver(srv, "other", headers="Message-ID: <other@t>\r\n")
    deliver(srv, "Re: nothing", headers="")  # no ids: by base subject
    deliver(srv, "nothing", headers="")
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
    deliver(srv, "Re: other", headers="References: <other@t>\r\n")
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
