"""The HTTPS responder's request parser and what it serves, without sockets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from correo.http import HttpError, Site, autoconfig_xml, mta_sts_id, mta_sts_policy
from correo.http import parse_request as parse
from correo.mtasts import parse_policy
from correo.mtasts.fetch import parse_response

PORTS = {"imaps": 993, "pop3s": 995, "submissions": 465, "submission": 587, "smtp": 25}
SITE = Site("mail.example.test", lambda: ["example.test", "Other.Test"], PORTS)


def test_requests() -> None:
    r = parse(
        b"GET /mail/config-v1.1.xml?emailaddress=a%40example.test HTTP/1.1\r\n"
        b"Host: Autoconfig.Example.Test:443"
    )
    assert (r.method, r.path, r.host) == ("GET", "/mail/config-v1.1.xml", "autoconfig.example.test")
    assert r.query == {"emailaddress": ["a@example.test"]}
    assert parse(b"HEAD / HTTP/1.0").host == ""  # HTTP/1.0 may omit Host


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET / HTTP/1.1", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400),
        (b"GET / HTTP/2.0\r\nHost: a", 505),
        (b"POST / HTTP/1.1\r\nHost: a", 405),
        (b"GET  / HTTP/1.1\r\nHost: a", 400),
        (b"GET x/ HTTP/1.1\r\nHost: a", 400),  # neither origin- nor absolute-form
        (b"GET /\x7f HTTP/1.1\r\nHost: a", 400),
        (b"GET / HTTP/1.1\r\nHost : a", 400),  # RFC 9112 §5.1: no space before the colon
        (b"GET / HTTP/1.1\r\nno colon", 400),
        (b"GET / HTTP/1.1\r\nHost: \xff", 400),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 70 + b"Host: a", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a", 431),
    ],
)
def test_bad_requests(head: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse(head)
    assert info.value.status == status


def test_the_policy_is_served_for_local_domains_only() -> None:
    answer = SITE.answer(
        parse(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.other.test")
    )
    body = parse_response(answer)  # what correo's own MTA-STS client accepts
    policy = parse_policy(body)
    assert policy.mode == "enforce" and policy.mx == ("mail.example.test",)
    assert policy.allows("mail.example.test")
    assert body.decode() == mta_sts_policy("mail.example.test")
    for host in (b"mta-sts.elsewhere.test", b"example.test", b"mta-sts.example.test.evil"):
        miss = SITE.answer(parse(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: " + host))
        assert miss.startswith(b"HTTP/1.1 404 ")
    head = SITE.answer(
        parse(b"HEAD /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test")
    )
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")


def test_the_id_follows_the_policy() -> None:
    a = mta_sts_id(mta_sts_policy("mx.example.test"))
    assert a == mta_sts_id(mta_sts_policy("mx.example.test"))
    assert a != mta_sts_id(mta_sts_policy("mx.example.test", "testing"))
    assert a.isalnum() and len(a) <= 32  # RFC 8461 §3.1


def test_autoconfig() -> None:
    for head in (
        b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.test",
        b"GET /.well-known/autoconfig/mail/config-v1.1.xml HTTP/1.1\r\nHost: example.test",
        b"GET /mail/config-v1.1.xml?emailaddress=bob%40other.test HTTP/1.1\r\nHost: mail.x",
    ):
        answer = SITE.answer(parse(head))
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Content-Type: text/xml" in answer
        tree = ET.fromstring(answer.partition(b"\r\n\r\n")[2])
        provider = tree.find("emailProvider")
        assert provider is not None
        incoming = provider.findall("incomingServer")
        assert [
            (s.get("type"), s.findtext("port"), s.findtext("socketType")) for s in incoming
        ] == [
            ("imap", "993", "SSL"),
            ("pop3", "995", "SSL"),
        ]
        outgoing = provider.findall("outgoingServer")
        assert [s.findtext("port") for s in outgoing] == ["465", "587"]
        assert all(s.findtext("username") == "%EMAILADDRESS%" for s in incoming + outgoing)
    stranger = b"GET /mail/config-v1.1.xml?emailaddress=x%40nowhere.test HTTP/1.1\r\nHost: mail.x"
    assert SITE.answer(parse(stranger)).startswith(b"HTTP/1.1 404 ")


def test_autoconfig_escapes_what_it_prints() -> None:
    xml = autoconfig_xml("a<b>.test", "mx&co.test", {"imaps": 993})
    assert b"a&lt;b&gt;.test" in xml and b"mx&amp;co.test" in xml
    ET.fromstring(xml)
