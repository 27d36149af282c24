"""A message of tens of thousands of tiny MIME parts, over real SMTP and IMAP: the stored
tree keeps the first 1,000 (``Limits.max_parts``; each further part would cost the loop
in every step that walks the tree, for FETCH, SEARCH and the text index alike), the
message itself is kept whole, and FETCH and SEARCH answer from the bounded tree."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator

import pytest

from correo.message.structure import Limits
from tests.conftest import Server, crash_free_server
from tests.server.imap_helpers import imap

PARTS = 20_000


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from crash_free_server(tmp_path_factory, "hostile-parts")


def _many_parts(subject: str) -> bytes:
    head = (
        f"From: p@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    ).encode()
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nword%d\r\n" % i for i in range(PARTS))
    return head + parts + b"--b--\r\n"


def test_many_parts_are_kept_whole_and_served_from_a_bounded_tree(srv: Server) -> None:
    raw = _many_parts("parts bomb")
    with smtplib.SMTP("127.0.0.1", srv.ports["smtp"], timeout=60) as smtp:
        smtp.sendmail("p@remote.test", ["alice@example.test"], raw)
    client = imap(srv)
    client.select("INBOX")
    typ, found = client.uid("SEARCH", "SUBJECT", '"parts bomb"')
    assert typ == "OK" and found[0], found
    uid = found[0].split()[-1].decode()
    typ, data = client.uid("FETCH", uid, "(RFC822.SIZE BODYSTRUCTURE)")
    assert typ == "OK", data
    text = b"".join(d if isinstance(d, bytes) else b"".join(d) for d in data)
    size = int(re.search(rb"RFC822.SIZE (\d+)", text).group(1))  # type: ignore[union-attr]
    kept = Limits().max_parts - 1  # the message itself is the first part of the tree
    assert text.count(b'("text" "plain"') == kept
    typ, data = client.uid("FETCH", uid, f"(BODY.PEEK[{kept}])")
    assert typ == "OK" and data[0][1] == b"word%d" % (kept - 1), data  # type: ignore[index]
    typ, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    whole = data[0][1]  # type: ignore[index]
    assert typ == "OK" and whole.endswith(raw) and len(whole) == size  # trace fields first
    # the last part of the tree is searched like any other
    typ, found = client.uid("SEARCH", "BODY", f"word{kept - 1}")
    assert typ == "OK" and uid.encode() in found[0].split(), found
    client.logout()
