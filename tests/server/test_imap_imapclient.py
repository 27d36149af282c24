"""imapclient (a high-level client many tools use) end to end against a real server."""

from __future__ import annotations

import ssl

import pytest

from tests.conftest import PASSWORDS, Server, client_tls
from tests.server.imap_helpers import message, unique

imapclient = pytest.importorskip("imapclient")

ALICE = "alice@example.test"


def _client(server: Server) -> object:
    ctx: ssl.SSLContext = client_tls()
    client = imapclient.IMAPClient(
        "127.0.0.1", port=server.ports["imaps"], ssl_context=ctx, timeout=10
    )
    client.login(ALICE, PASSWORDS[ALICE])
    return client


def test_imapclient_roundtrip(server: Server) -> None:
    client = _client(server)
    assert b"CONDSTORE" in client.capabilities()
    box = unique("ic")
    client.create_folder(box)
    assert client.folder_exists(box)
    client.append(box, message("via imapclient"), flags=(imapclient.SEEN,))
    client.append(box, message("second", "needle inside\r\n"))
    info = client.select_folder(box)
    assert info[b"EXISTS"] == 2 and info[b"UIDVALIDITY"] > 0
    uids = client.search(["ALL"])
    assert uids == [1, 2]
    assert client.search(["BODY", "needle"]) == [2]
    data = client.fetch(uids, ["ENVELOPE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[]"])
    assert data[1][b"ENVELOPE"].subject == b"via imapclient"
    assert imapclient.SEEN in data[1][b"FLAGS"]
    assert data[2][b"BODY[]"].endswith(b"needle inside\r\n")
    client.add_flags([2], [imapclient.FLAGGED])
    assert imapclient.FLAGGED in client.get_flags([2])[2]
    folders = {f[2] for f in client.list_folders()}
    assert {"INBOX", "Sent", "Trash", box} <= folders
    assert client.find_special_folder(b"\\Trash") == "Trash"
    client.move([1], "Trash")
    assert client.search(["ALL"]) == [2]
    status = client.folder_status(box, ["MESSAGES", "UIDNEXT"])
    assert status[b"MESSAGES"] == 1 and status[b"UIDNEXT"] == 3
    client.idle()
    client.idle_done()
    assert client.namespace().personal[0][0] == ""
    server_id = client.id_({"name": "pytest"})
    assert server_id[0][:2] == (b"name", b"correo")
    client.logout()
