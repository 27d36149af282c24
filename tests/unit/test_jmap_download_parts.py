"""A part's blob found in the stored part tree is the part ``find_part`` names.

The streamed download of a big message's part (web/jmap_download.py) numbers leaves
from the tree stored with the message; the small-message path parses the message and
numbers them from that. Every partId of these messages must name the same octets both
ways, and a tree that might number otherwise must say so (None) rather than guess.
"""

from __future__ import annotations

import base64
import quopri
import random

import pytest

from correo.delivery.facts import facts_from_bytes, load_tree
from correo.jmap.mail import find_part
from correo.message.imapfmt import TransferDecoder
from correo.web.jmap_download import part_leaf


def _streamed(raw: bytes, part_id: str) -> bytes | None:
    leaf = part_leaf(load_tree(facts_from_bytes(raw)), part_id)
    if leaf is None:
        return None
    decoder = TransferDecoder(leaf.encoding)
    body = raw[leaf.header_end : leaf.body_end]
    out = b"".join(decoder.feed(body[i : i + 7]) for i in range(0, len(body), 7))
    return out + decoder.finish()


def _b64(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


PDF = bytes(range(256)) * 40
INNER = (
    b"From: c@x.test\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n"
    b"--in\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
    b"--in\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + _b64(b"\x89PNG" + PDF[:500])
    + b"\r\n--in--\r\n"
)
NESTED = (
    b"From: a@x.test\r\nTo: b@x.test\r\nSubject: all kinds\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=out\r\n\r\npreamble\r\n"
    b"--out\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
    b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nJ=C3=B6rg says hi=\r\n there=3D\r\n"
    b"--alt\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--alt--\r\n"
    b"--out\r\nContent-Type: application/pdf; name=a.pdf\r\n"
    b"Content-Disposition: attachment; filename=a.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(PDF) + b"\r\n"
    b"--out\r\nContent-Type: message/rfc822\r\n\r\n" + INNER + b"\r\n"
    b"--out\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"last \xc3\xa9\r\n--out--\r\nepilogue\r\n"
)
SINGLE = b"From: a@x.test\r\nSubject: one\r\nContent-Transfer-Encoding: base64\r\n\r\n" + _b64(PDF)


@pytest.mark.parametrize("raw", [NESTED, SINGLE, INNER], ids=["nested", "single", "inner"])
def test_every_part_is_the_same_octets_both_ways(raw: bytes) -> None:
    ids = 0
    for n in range(1, 20):
        found = find_part(raw, str(n))
        streamed = _streamed(raw, str(n))
        if found is None:
            assert streamed is None
            break
        assert streamed == found[0], n
        ids += 1
    assert ids >= 1
    if raw is NESTED:
        assert ids == 6  # plain, html, pdf, inner text, inner png, last
        assert _streamed(raw, "3") == PDF


@pytest.mark.parametrize(
    "raw",
    [
        # no boundary: the parser sees one text leaf, the tree a multipart with a defect
        b"Subject: x\r\nContent-Type: multipart/mixed\r\n\r\n--a\r\n\r\nx\r\n--a--\r\n",
        # a delivery report's status: header blocks the parser counts as leaves
        b"Subject: x\r\nContent-Type: multipart/report; boundary=r\r\n\r\n--r\r\n\r\nbody\r\n"
        b"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
        b"Final-Recipient: rfc822; a@x\r\nAction: failed\r\n\r\n--r--\r\n",
        # deeper than the parser's bound
        b"Subject: x\r\n"
        + b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(25)
        )
        + b"\r\nx\r\n",
    ],
    ids=["no-boundary", "delivery-status", "deep"],
)
def test_a_tree_that_may_number_otherwise_says_so(raw: bytes) -> None:
    assert _streamed(raw, "2") is None
    first = find_part(raw, "1")
    # a leaf before the one in doubt is numbered alike both ways
    assert _streamed(raw, "1") in (None, first[0] if first else None)


def test_bad_part_ids_name_nothing() -> None:
    tree = load_tree(facts_from_bytes(NESTED))
    for bad in ("0", "-1", "1a", "", "7", "1001", "99999999999999999999"):
        assert part_leaf(tree, bad) is None, bad


def _random_entity(rng: random.Random, depth: int, names: list[int]) -> bytes:
    """A random MIME entity (header and body) of multiparts, messages and leaves."""
    roll = rng.random()
    if depth < 4 and roll < 0.35:
        names[0] += 1
        boundary = b"b%d_%d" % (names[0], rng.randrange(1000))
        kind = rng.choice([b"mixed", b"alternative", b"related"])
        children = [_random_entity(rng, depth + 1, names) for _ in range(rng.randint(1, 4))]
        body = b"".join(b"--" + boundary + b"\r\n" + c + b"\r\n" for c in children)
        head = b'Content-Type: multipart/%s; boundary="%s"\r\n\r\n' % (kind, boundary)
        return head + rng.choice([b"", b"preamble\r\n"]) + body + b"--" + boundary + b"--\r\n"
    if depth < 4 and roll < 0.45:
        inner = b"Subject: inner\r\n" + _random_entity(rng, depth + 1, names)
        return b"Content-Type: message/rfc822\r\n\r\n" + inner
    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    cte = rng.choice(["base64", "quoted-printable", "7bit", ""])
    if cte == "base64":
        body = _b64(data)
    elif cte == "quoted-printable":
        body = quopri.encodestring(data.replace(b"\r", b"").replace(b"\n", b"")[:200])
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    else:
        body = base64.b16encode(data[:60])
    field = b"Content-Transfer-Encoding: %s\r\n" % cte.encode() if cte else b""
    kind = rng.choice([b"text/plain", b"application/octet-stream", b"image/gif"])
    return b"Content-Type: %s\r\n%s\r\n%s" % (kind, field, body)


def test_random_structures_name_the_same_octets_both_ways() -> None:
    rng = random.Random(20261207)
    compared = 0
    for _ in range(300):
        raw = b"From: a@x.test\r\nSubject: r\r\nMIME-Version: 1.0\r\n" + _random_entity(rng, 0, [0])
        for n in range(1, 40):
            found = find_part(raw, str(n))
            streamed = _streamed(raw, str(n))
            if found is None:
                assert streamed is None, (raw, n)
                break
            if streamed is not None:
                assert streamed == found[0], (raw, n)
                compared += 1
    assert compared > 800, compared
