"""Delivery on PostgreSQL takes every path it takes on the embedded store.

The paths that read a spooled message back or splice fields into it — trace fields and
Authentication-Results on inbound mail, the Sieve redirect copy, a submission queued with
its DKIM signature, an APPEND whose text is indexed at once and one with a NUL byte — run
here over real sockets against a node on the private PostgreSQL cluster, with small and
spilled (past the spool's memory) messages alike.
"""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, client_tls, correo
from tests.server.imap_helpers import RawImap
from tests.server.test_postgres_store import pg_node

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

ALICE, BOB = "alice@example.test", "bob@example.test"
LINE = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n"


def _message(subject: str, lines: int) -> bytes:
    return (
        f"From: dave@remote.test\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@remote.test>\r\n\r\n"
    ).encode() + LINE * lines


def _queued(url: str, root: Path) -> list[bytes]:
    """The bytes of every queued message, read through the store API."""
    from correo.store.postgres import PostgresStore

    async def read() -> list[bytes]:
        store = PostgresStore(url, root, listen=False)
        await store.open()
        try:
            out = []
            for entry in await store.queue_list():
                out.append(b"".join([c async for c in store.queue_read(entry.id)]))
            return out
        finally:
            await store.close()

    return asyncio.run(read())


def _imap(port: int, user: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_tls(), timeout=15)
    client.login(user, PASSWORDS[user])
    return client


def _bodies(client: imaplib.IMAP4_SSL, mailbox: str = "INBOX") -> list[bytes]:
    client.select(mailbox)
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    return [part[1] for part in data if isinstance(part, tuple)]


def test_trace_redirect_dkim_and_append_paths_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    data = tmp_path / "node1"
    server = pg_node(data, pg_url)
    # Remote mail waits in the queue: its next hop refuses connections.
    with open(data / "correo.toml", "a") as fh:
        fh.write('\n[outbound]\nrelayhost = "[127.0.0.1]:1"\nrelayhost_tls = "none"\n')
    script = data / "fwd.sieve"
    script.write_text('require "copy";\nredirect :copy "carol@elsewhere.test";\nkeep;\n')
    put = correo(data, "sieve", "put", BOB, "fwd", str(script), "--activate")
    assert put.returncode == 0, put.stderr
    server.start()
    try:
        small, large = _message("small", 3), _message("large", 6_000)  # 6,000 lines: spilled
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=30) as smtp:
            for msg in (small, large):
                smtp.sendmail("dave@remote.test", [BOB], msg)
        with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30) as sub:
            sub.starttls(context=client_tls())
            sub.login(ALICE, PASSWORDS[ALICE])
            for msg in (small, large):
                sub.sendmail(
                    ALICE, ["erin@faraway.test"], msg.replace(b"dave@remote", b"alice@example")
                )

        client = _imap(server.ports["imaps"], BOB)
        inbox = _bodies(client)
        assert len(inbox) == 2
        for stored, sent in zip(inbox, (small, large), strict=True):
            head = stored[: stored.index(b"\r\n\r\n")]
            assert head.startswith(b"Return-Path: <dave@remote.test>\r\n")  # RFC 5321 §4.4
            assert b"\r\nReceived: from " in head  # RFC 5321 §4.4 trace field
            assert b"\r\nAuthentication-Results: localhost;" in head  # RFC 8601 §2.2
            assert b"\r\nX-Correo-Redirected: 1 bob@example.test\r\n" in head  # Sieve redirect
            assert stored.endswith(sent[sent.index(b"\r\n\r\n") :])  # the body, whole

        client.logout()

        # APPEND: a small message's text is indexed at once; a NUL byte is stored base64
        # (RFC 3516 literal8; RFC 9051 §4.3: NUL only ever in BINARY[]).
        raw = RawImap(server.ports["imaps"])
        raw.login(BOB)
        text = b"Subject: a\r\n\r\nxylophonist quartet\r\n"
        raw.send(b"A APPEND INBOX {%d+}\r\n" % len(text) + text + b"\r\n")
        assert raw.until(b"A")[-1].startswith(b"A OK"), "APPEND"
        nul = (
            b"Subject: b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\nbin\x00ary\r\n"
        )
        raw.send(b"B APPEND INBOX ~{%d+}\r\n" % len(nul) + nul + b"\r\n")
        assert raw.until(b"B")[-1].startswith(b"B OK"), "APPEND literal8"
        assert raw.cmd("S", "SELECT INBOX")[-1].startswith(b"S OK")
        found = raw.cmd("F", "UID SEARCH BODY xylophonist")
        assert found[0] == b"* SEARCH 3", found
        fetched = raw.cmd("G", "UID FETCH 4 (BODY.PEEK[1] BINARY.PEEK[1])")
        assert b"BODY[1] {14}\r\nYmluAGFyeQ0K\r\n" in fetched[0], fetched  # stored base64
        assert b"BINARY[1] ~{9}\r\nbin\x00ary\r\n" in fetched[0], fetched  # decoded again
        raw.close()
    finally:
        assert server.stop() == 0, server.log()[-3000:]

    queued = _queued(pg_url, tmp_path / "reader")
    redirected = [q for q in queued if b"X-Correo-Redirected" in q]
    submitted = [q for q in queued if b"X-Correo-Redirected" not in q]
    assert len(redirected) == 2 and len(submitted) == 2, [q[:300] for q in queued]
    for q, sent in zip(sorted(redirected, key=len), (small, large), strict=True):
        assert not q.startswith(b"Return-Path:")  # queue_skip: final delivery adds it
        assert q.endswith(sent[sent.index(b"\r\n\r\n") :])
    for q in submitted:
        head = q[: q.index(b"\r\n\r\n")]
        assert head.startswith(b"DKIM-Signature: ")  # RFC 6376 §5.6: before the fields
        assert b" d=example.test;" in head
