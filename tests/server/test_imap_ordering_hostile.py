"""SORT and THREAD over what hostile senders write: long blob runs in a subject, reply
chains deeper than Python's stack.  Both once stalled or broke the server."""

from __future__ import annotations

import time

from tests.conftest import Server
from tests.server.imap_helpers import imap, message, unique


def _fold(text: str, width: int = 70) -> str:
    return "\r\n ".join(text[i : i + width] for i in range(0, len(text), width))


def test_sort_subject_with_thousands_of_blobs_answers_at_once(server: Server) -> None:
    client = imap(server)
    box = unique("sortblob")
    client.create(box)
    hostile = _fold("[x] " * 8000 + "re")
    client.append(box, None, None, message(hostile))
    client.append(box, None, None, message("Re: plain"))
    client.select(box, readonly=True)
    other = imap(server)  # another user's session must keep being served
    started = time.monotonic()
    typ, data = client.sort("(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"2 1"]  # "PLAIN" < "RE"
    assert other.noop()[0] == "OK"
    assert time.monotonic() - started < 5  # was minutes of a frozen event loop
    client.logout()
    other.logout()


def test_thread_references_on_a_chain_deeper_than_the_stack(server: Server) -> None:
    client = imap(server)
    box = unique("deepchain")
    client.create(box)
    depth = 1500
    for i in range(1, depth + 1):
        extra = f"References: <deep{i - 1}@example.test>\r\n" if i > 1 else ""
        raw = message(f"Re: deep {i}", extra=extra).replace(
            b"Message-ID: <", f"Message-ID: <deep{i}@example.test>\r\nX-Old-Id: <".encode(), 1
        )
        assert client.append(box, None, None, raw)[0] == "OK"
    client.select(box, readonly=True)
    typ, data = client.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK", data
    assert data[0] == ("(" + " ".join(str(i) for i in range(1, depth + 1)) + ")").encode()
    client.logout()
