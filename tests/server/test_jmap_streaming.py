"""JMAP blob downloads stream: a big message is sent from the store in chunks, an
upload from its file, and the server never holds either whole in memory (RFC 8620 §6.2).
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from tests.conftest import Server
from tests.server.imap_helpers import imap
from tests.server.jmap_helpers import Jmap
from tests.server.test_imap_streaming import _MB, _big_message, _peak_rss


def _download(jmap: Jmap, blob: str, name: str) -> tuple[int, str, int]:
    """Status, sha256 and length of a download, read as it arrives."""
    url = f"{jmap.base}/jmap/download/{jmap.account}/{blob}/{name}?accept=message/rfc822"
    digest = hashlib.sha256()
    length = 0
    with jmap.http.get(url, stream=True, timeout=60) as got:
        for piece in got.iter_content(1 << 16):
            digest.update(piece)
            length += len(piece)
        return got.status_code, digest.hexdigest(), length


def _appended(
    server: Server, box: str, data: bytes, properties: list[str]
) -> tuple[Jmap, dict[str, Any]]:
    """``data`` appended over IMAP to a new ``box``; JMAP's Email/get of it."""
    client = imap(server)
    client.create(box)
    assert client.append(box, None, None, data)[0] == "OK"
    client.logout()
    jmap = Jmap(server)
    boxes = jmap.call("Mailbox/get", ids=None, properties=["name"])["list"]
    box_id = next(b["id"] for b in boxes if b["name"] == box)
    ids = jmap.call("Email/query", filter={"inMailbox": box_id})["ids"]
    return jmap, jmap.call("Email/get", ids=ids, properties=properties)["list"][0]


def test_a_big_message_downloads_whole_with_flat_memory(server: Server) -> None:
    data = _big_message()
    jmap, email = _appended(server, "BigBlob", data, ["blobId", "size"])
    assert email["size"] == len(data)
    before = _peak_rss(server)
    status, digest, length = _download(jmap, email["blobId"], "big.eml")
    assert status == 200 and length == len(data)
    assert digest == hashlib.sha256(data).hexdigest()
    grown = _peak_rss(server) - before
    assert grown < len(data) // 4, f"peak RSS grew {grown / _MB:.1f} MiB for a 40 MiB download"
    # a blob that names no message of the account is a 404, not a stream cut short
    missing = "B" + "0" * 24
    assert _download(jmap, missing, "x.eml")[0] == 404


def test_an_upload_downloads_back_exact(server: Server) -> None:
    jmap = Jmap(server)
    data = os.urandom(3 * _MB)
    upload = jmap.http.post(f"{jmap.base}/jmap/upload/{jmap.account}/", data=data, timeout=60)
    assert upload.status_code == 201, upload.text
    status, digest, length = _download(jmap, upload.json()["blobId"], "u.bin")
    assert (status, length, digest) == (200, len(data), hashlib.sha256(data).hexdigest())


def test_a_big_attachment_downloads_decoded_with_flat_memory(server: Server) -> None:
    payload = bytes(range(256)) * (24 * _MB // 256)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    data = (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: attached\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=cut\r\n\r\n"
        b"--cut\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n"
        b"--cut\r\nContent-Type: application/octet-stream; name=big.bin\r\n"
        b"Content-Disposition: attachment; filename=big.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--cut--\r\n"
    )
    jmap, email = _appended(server, "BigPart", data, ["attachments"])
    (attachment,) = email["attachments"]
    before = _peak_rss(server)
    status, digest, length = _download(jmap, attachment["blobId"], "big.bin")
    assert (status, length) == (200, len(payload))
    assert digest == hashlib.sha256(payload).hexdigest()
    grown = _peak_rss(server) - before
    assert grown < len(payload) // 4, f"peak RSS grew {grown / _MB:.1f} MiB for 24 MiB"
