"""CATENATE (RFC 4469) over real sockets: messages assembled from TEXT literals and URL
parts, MULTIAPPEND mixes, and every refusal (a URL of another user, a wrong
UIDVALIDITY, a missing mailbox) answered before the next literal is asked for, with
nothing stored."""

from __future__ import annotations

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, imap, message, unique

ALICE = "alice@example.test"
BOB = "bob@example.test"
HELLO = b"From: foo@example.com\r\n\r\nHello world body\r\n"
SECOND = b"From: foo2@example.com\r\n\r\nLookslike: header\r\n\r\nAnother body\r\n"


def _session(server: Server, user: str = ALICE) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login(user)
    return raw


def _append(raw: RawImap, tag: str, pieces: list[str | bytes]) -> list[bytes]:
    """Send ``pieces``: text, then each bytes item as a synchronising literal after a
    ``+`` (a NO instead of the ``+`` ends the command: returned at once)."""
    text = f"{tag} "
    for piece in pieces:
        if isinstance(piece, str):
            text += piece
            continue
        raw.send(text.encode() + b"{%d}\r\n" % len(piece))
        reply = raw.line()
        if not reply.startswith(b"+"):
            return [reply]
        raw.send(piece)
        text = ""
    raw.send(text.encode() + b"\r\n")
    return raw.until(tag.encode())


def _box(server: Server, *bodies: bytes, user: str = ALICE) -> tuple[str, int, list[int]]:
    box = unique("cat")
    client = imap(server, user)
    assert client.create(box)[0] == "OK"
    for body in bodies:
        assert client.append(box, None, None, body)[0] == "OK"
    client.select(box)
    uids = [int(u) for u in client.uid("SEARCH", "ALL")[1][0].split()]
    uidvalidity = int(client.untagged_responses["UIDVALIDITY"][0])
    client.logout()
    return box, uidvalidity, uids


def _bodies(raw: RawImap, box: str) -> list[bytes]:
    out = raw.cmd("s", f"EXAMINE {box}")
    assert out[-1].startswith(b"s OK"), out
    lines = raw.cmd("f", "FETCH 1:* BODY.PEEK[]")
    assert lines[-1].startswith(b"f OK")
    return [line.split(b"}\r\n", 1)[1][:-1] for line in lines[:-1]]


def test_capability(server: Server) -> None:
    raw = _session(server)
    assert b"CATENATE" in raw.cmd("c", "CAPABILITY")[0].split()
    raw.close()


def test_text_and_url_parts(server: Server) -> None:
    src, uidv, (one, two) = _box(server, HELLO, SECOND)
    dst, _, _ = _box(server)
    raw = _session(server)
    out = _append(raw, "a1", [f"APPEND {dst} (\\Seen) CATENATE (TEXT ", b"Hdr: x\r\n\r\n", ")"])
    assert out[-1].startswith(b"a1 OK [APPENDUID "), out
    # RFC 4469 §3: a URL relative to the server, with and without UIDVALIDITY
    out = _append(
        raw,
        "a2",
        [
            f'APPEND {dst} CATENATE (URL "/{src}/;uid={one}/;section=HEADER" TEXT ',
            b"body1\r\n",
            ")",
        ],
    )
    assert out[-1].startswith(b"a2 OK"), out
    url = f"/{src};UIDVALIDITY={uidv}/;UID={two}/;SECTION=TEXT"
    out = raw.cmd("a3", f'APPEND {dst} CATENATE (URL "{url}" URL "/{src}/;uid={one}/;section=1")')
    assert out[-1].startswith(b"a3 OK"), out
    # an absolute URL naming the user, ;PARTIAL, and several TEXT literals in a row
    absolute = f"imap://alice@example.test/{src}/;uid={two}/;partial=0.24"
    out = _append(
        raw,
        "a4",
        [f'APPEND {dst} CATENATE (URL "{absolute}" TEXT ', b"\r\n", " TEXT ", b"tail\r\n", ")"],
    )
    assert out[-1].startswith(b"a4 OK"), out
    assert _bodies(raw, dst) == [
        b"Hdr: x\r\n\r\n",
        b"From: foo@example.com\r\n\r\nbody1\r\n",
        b"Lookslike: header\r\n\r\nAnother body\r\nHello world body\r\n",
        b"From: foo2@example.com\r\n\r\ntail\r\n",
    ]
    raw.close()


def test_multiappend_mixes_catenate_and_literals(server: Server) -> None:
    src, _, (one,) = _box(server, HELLO)
    dst, _, _ = _box(server)
    raw = _session(server)
    out = _append(
        raw,
        "m",
        [
            f"APPEND {dst} CATENATE (TEXT ",
            b"A: 1\r\n\r\none\r\n",
            f') CATENATE (URL "/{src}/;uid={one}") (\\Answered) ',
            b"B: 2\r\n\r\ntwo\r\n",
            f' CATENATE (URL "/{src}/;uid={one}/;section=HEADER" TEXT ',
            b"three\r\n",
            ")",
        ],
    )
    assert out[-1].startswith(b"m OK [APPENDUID ") and out[-1].count(b":") == 1, out
    assert _bodies(raw, dst) == [
        b"A: 1\r\n\r\none\r\n",
        HELLO,
        b"B: 2\r\n\r\ntwo\r\n",
        b"From: foo@example.com\r\n\r\nthree\r\n",
    ]
    raw.close()


def test_bad_urls_refuse_everything_before_the_next_literal(server: Server) -> None:
    src, uidv, (one,) = _box(server, message("alice's"))
    theirs, _, (bobs,) = _box(server, message("bob's secret"), user=BOB)
    dst, _, _ = _box(server)
    raw = _session(server)
    bad_urls = [
        f"/{src};UIDVALIDITY={uidv + 1}/;UID={one}",  # RFC 5092 §6: another mailbox now
        f"/{src}/;UID={one + 7}",  # no such message
        f"/{theirs}/;UID={bobs}",  # bob's mailbox name, but alice's account: none
        f"imap://bob@example.test/{theirs}/;UID={bobs}",  # another user: FETCH could not
        f"imap://alice@example.test/{src}/;UID={one}/;SECTION=9",  # no such part
        "http://example.test/",
    ]
    for bad in bad_urls:
        # the NO comes instead of the "+" for the TEXT literal after the URL
        out = _append(
            raw,
            "b",
            [
                f"APPEND {dst} CATENATE (TEXT ",
                b"X: 1\r\n\r\n",
                f' URL "{bad}" TEXT ',
                b"body\r\n",
                ")",
            ],
        )
        assert out == [b"b NO [BADURL %s] CATENATE failed: invalid URL" % bad.encode()], (bad, out)
        assert raw.cmd("n", "NOOP") == [b"n OK NOOP completed"]  # the session goes on
    # a MULTIAPPEND whose second message fails stores nothing of the first (RFC 3502 §6)
    out = raw.cmd(
        "c", f'APPEND {dst} CATENATE (URL "/{src}/;uid={one}") CATENATE (URL "{bad_urls[0]}")'
    )
    assert out[-1].startswith(b"c NO [BADURL"), out
    # LITERAL+ octets after a bad URL are read and dropped, not run as commands
    raw.send(
        f'd APPEND {dst} CATENATE (URL "{bad_urls[0]}" TEXT {{12+}}\r\nn2 NOOP\r\nxx)\r\n'.encode()
    )
    assert raw.until(b"d")[-1].startswith(b"d NO [BADURL")
    assert raw.cmd("e", f"STATUS {dst} (MESSAGES)")[0].endswith(b"(MESSAGES 0)")
    raw.close()


def test_urlauth_url_lets_another_user_catenate(server: Server) -> None:
    src, _, (one,) = _box(server, HELLO)
    alice = _session(server)
    rump = f"imap://alice@example.test/{src}/;uid={one}/;section=1;urlauth=user+{BOB}"
    signed = alice.cmd("g", f'GENURLAUTH "{rump}" INTERNAL')[0].split(b'"')[1].decode()
    alice.close()
    bob = _session(server, BOB)
    box = unique("fwd")
    assert bob.cmd("c", f"CREATE {box}")[-1].startswith(b"c OK")
    out = _append(
        bob, "a", [f"APPEND {box} CATENATE (TEXT ", b"Subject: fwd\r\n\r\n", f' URL "{signed}")']
    )
    assert out[-1].startswith(b"a OK"), out
    assert _bodies(bob, box) == [b"Subject: fwd\r\n\r\nHello world body\r\n"]
    # the same URL without its token is alice's mailbox, not bob's: refused
    plain = f"imap://alice@example.test/{src}/;uid={one}/;section=1"
    assert bob.cmd("b", f'APPEND {box} CATENATE (URL "{plain}")')[-1].startswith(b"b NO [BADURL")
    bob.close()


def test_missing_mailbox_and_syntax(server: Server) -> None:
    src, _, (one,) = _box(server, HELLO)
    raw = _session(server)
    out = raw.cmd("a", f'APPEND nosuch{src} CATENATE (URL "/{src}/;uid={one}")')
    assert out == [b"a NO [TRYCREATE] No such mailbox"]
    out = _append(raw, "b", [f"APPEND nosuch{src} CATENATE (TEXT ", b"x\r\n", ")"])
    assert out == [b"b NO [TRYCREATE] No such mailbox"]  # before the literal is sent
    for bad in (
        "CATENATE ()",
        'CATENATE (FOO "x")',
        'CATENATE (TEXT "x")',
        "CATENATE (URL)",
        "CATENATE URL",
    ):
        out = raw.cmd("c", f"APPEND {src} {bad}")
        assert out[-1].startswith(b"c BAD"), (bad, out)
    assert raw.cmd("d", f"STATUS {src} (MESSAGES)")[0].endswith(b"(MESSAGES 1)")
    raw.close()
