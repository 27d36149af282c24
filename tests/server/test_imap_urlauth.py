"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524) over real sockets: GENURLAUTH,
URLFETCH from the same and from another user's session, RESETKEY, and every way a URL
must fail (another owner, a forged or expired token, a user it was not made for)."""

from __future__ import annotations

import re

from tests.conftest import Server
from tests.server.imap_helpers import RawImap, imap, message, unique

ALICE = "alice@example.test"
BOB = "bob@example.test"

MULTI = (
    b"From: alice@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29y\r\nbGQ=\r\n"
    b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-odd\r\n\r\nodd\r\n"
    b"--b1--\r\n"
)


def _fill(server: Server, user: str, *bodies: bytes) -> tuple[str, list[int]]:
    box = unique("url")
    client = imap(server, user)
    assert client.create(box)[0] == "OK"
    for body in bodies:
        assert client.append(box, None, None, body)[0] == "OK"
    client.select(box)
    uids = [int(u) for u in client.uid("SEARCH", "ALL")[1][0].split()]
    client.logout()
    return box, uids


def _session(server: Server, user: str = ALICE) -> RawImap:
    raw = RawImap(server.ports["imaps"])
    raw.login(user)
    return raw


def _gen(raw: RawImap, rump: str) -> str:
    out = raw.cmd("g", f'GENURLAUTH "{rump}" INTERNAL')
    assert out[-1] == b"g OK GENURLAUTH completed", out
    m = re.fullmatch(rb'\* GENURLAUTH "([^"]+)"', out[0])
    assert m is not None, out
    url = m.group(1).decode()
    assert re.fullmatch(re.escape(rump) + ":internal:[0-9a-f]{64}", url), url
    return url


def test_capabilities(server: Server) -> None:
    raw = _session(server)
    caps = raw.cmd("c", "CAPABILITY")[0].split()
    assert b"URLAUTH" in caps and b"URLAUTH=BINARY" in caps
    raw.close()


def test_genurlauth_urlfetch_resetkey(server: Server) -> None:
    body = message("one")
    box, (uid,) = _fill(server, ALICE, body)
    raw = _session(server)
    url = _gen(raw, f"imap://alice@example.test/{box}/;uid={uid};urlauth=user+{ALICE}")
    out = raw.cmd("f", f'URLFETCH "{url}"')
    assert out == [
        b'* URLFETCH "%s" {%d}\r\n%s' % (url.encode(), len(body), body),
        b"f OK URLFETCH completed",
    ]
    # a section of it, with ;PARTIAL
    part = _gen(
        raw,
        f"imap://alice@example.test/{box}/;uid={uid}/;section=HEADER/;partial=0.4;urlauth=authuser",
    )
    assert raw.cmd("h", f'URLFETCH "{part}"')[0] == b'* URLFETCH "%s" {4}\r\nFrom' % part.encode()
    # RFC 4467 §7: RESETKEY of the mailbox makes every URL signed with its key fail
    assert raw.cmd("r", f"RESETKEY {box}") == [b"r OK [URLMECH INTERNAL] Key removed"]
    assert raw.cmd("f2", f'URLFETCH "{url}"')[0] == b'* URLFETCH "%s" NIL' % url.encode()
    fresh = _gen(raw, f"imap://alice@example.test/{box}/;uid={uid};urlauth=authuser")
    assert raw.cmd("r2", "RESETKEY") == [b"r2 OK All keys removed"]
    assert raw.cmd("f3", f'URLFETCH "{fresh}"')[0].endswith(b" NIL")
    assert raw.cmd("r3", "RESETKEY nosuchbox")[-1].startswith(b"r3 NO [NONEXISTENT]")
    raw.close()


def test_access_identifiers_across_users(server: Server) -> None:
    body = message("shared")
    box, (uid,) = _fill(server, ALICE, body)
    alice = _session(server)
    anyone = _gen(alice, f"imap://alice@example.test/{box}/;uid={uid};urlauth=authuser")
    only_alice = _gen(alice, f"imap://alice@example.test/{box}/;uid={uid};urlauth=user+{ALICE}")
    for_bob = _gen(alice, f"imap://alice@example.test/{box}/;uid={uid};urlauth=user+{BOB}")
    expired = _gen(
        alice,
        f"imap://alice@example.test/{box}/;uid={uid};expire=2001-01-01T00:00:00Z;urlauth=authuser",
    )
    bob = _session(server, BOB)
    out = bob.cmd("a", f'URLFETCH "{anyone}" "{only_alice}" "{for_bob}" "{expired}"')
    assert out == [
        b'* URLFETCH "%s" {%d}\r\n%s' % (anyone.encode(), len(body), body),
        b'* URLFETCH "%s" NIL' % only_alice.encode(),
        b'* URLFETCH "%s" {%d}\r\n%s' % (for_bob.encode(), len(body), body),
        b'* URLFETCH "%s" NIL' % expired.encode(),
        b"a OK URLFETCH completed",
    ]
    # a forged token, a token moved to another message, a URL with no URLAUTH at all
    forged = anyone[:-4] + ("0000" if not anyone.endswith("0000") else "1111")
    moved = anyone.replace(f";uid={uid};", f";uid={uid + 1};")
    plain = f"imap://alice@example.test/{box}/;uid={uid}"
    for bad in (forged, moved, plain):
        assert bob.cmd("b", f'URLFETCH "{bad}"')[0] == b'* URLFETCH "%s" NIL' % bad.encode()
    # bob cannot sign URLs of alice's mailbox, nor anything without an access identifier
    rump = f"imap://alice@example.test/{box}/;uid={uid};urlauth=authuser"
    assert bob.cmd("c", f'GENURLAUTH "{rump}" INTERNAL')[-1].startswith(b"c BAD")
    own = "imap://bob@example.test/INBOX/;uid=1"
    assert bob.cmd("d", f'GENURLAUTH "{own}" INTERNAL')[-1].startswith(b"d BAD")
    assert bob.cmd("e", f'GENURLAUTH "{own};urlauth=authuser" OTHER')[-1].startswith(b"e BAD")
    assert bob.cmd("f", f'GENURLAUTH "{anyone}" INTERNAL')[-1].startswith(b"f BAD")
    # alice's own URL without URLAUTH is hers to fetch, as FETCH could
    assert alice.cmd("g", f'URLFETCH "{plain}"')[0].endswith(b"%s" % body)
    alice.close()
    bob.close()


def test_urlfetch_binary_and_bodypartstructure(server: Server) -> None:
    box, (uid,) = _fill(server, ALICE, MULTI)
    raw = _session(server)
    one = _gen(raw, f"imap://alice@example.test/{box}/;uid={uid}/;section=1;urlauth=authuser")
    out = raw.cmd("a", f'URLFETCH ("{one}" BINARY)')
    assert out[0] == b'* URLFETCH "%s" (BINARY {11}\r\nhello world)' % one.encode()
    out = raw.cmd("b", f'URLFETCH ("{one}" BODYPARTSTRUCTURE)')
    assert out[0] == (
        b'* URLFETCH "%s" (BODYPARTSTRUCTURE ("text" "plain" ("charset" "us-ascii")'
        b' NIL NIL "base64" 18 1 NIL NIL NIL NIL))' % one.encode()
    )
    # RFC 5524: with BINARY the structure describes the decoded data
    out = raw.cmd("c", f'URLFETCH ("{one}" BINARY BODYPARTSTRUCTURE)')
    assert out[0] == (
        b'* URLFETCH "%s" (BODYPARTSTRUCTURE ("text" "plain" ("charset" "us-ascii")'
        b' NIL NIL "7bit" 11 0 NIL NIL NIL NIL)) (BINARY {11}\r\nhello world)' % one.encode()
    )
    out = raw.cmd("d", f'URLFETCH ("{one}")')  # parentheses alone: BODY
    assert out[0] == b'* URLFETCH "%s" (BODY {18}\r\naGVsbG8gd29y\r\nbGQ=)' % one.encode()
    odd = _gen(raw, f"imap://alice@example.test/{box}/;uid={uid}/;section=2;urlauth=authuser")
    assert raw.cmd("e", f'URLFETCH ("{odd}" BINARY)')[0] == (
        b'* URLFETCH "%s" (BINARY NIL)' % odd.encode()  # an encoding BINARY cannot undo
    )
    for bad in (f'("{one}" BODY BINARY)', f'("{one}" BOGUS)', "", f'"{one}" ('):
        assert raw.cmd("x", f"URLFETCH {bad}".rstrip())[-1].startswith(b"x BAD"), bad
    raw.close()
