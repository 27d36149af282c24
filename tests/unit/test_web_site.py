"""What the web listener publishes per domain (correo.web.site), without sockets."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from correo.mtasts import parse_policy
from correo.web.site import Site, autoconfig_xml, mta_sts_id, mta_sts_policy

PORTS = {"imaps": 993, "pop3s": 995, "submissions": 465, "submission": 587, "smtp": 25}
SITE = Site("mail.example.test", lambda: ["example.test", "Other.Test"], PORTS)


def test_the_policy_is_served_for_local_domains_only() -> None:
    page = SITE.policy("mta-sts.other.test")
    assert page is not None and page.content_type.startswith("text/plain")
    policy = parse_policy(page.body)
    assert policy.mode == "enforce" and policy.mx == ("mail.example.test",)
    assert policy.allows("mail.example.test")
    assert page.body.decode() == mta_sts_policy("mail.example.test")
    for host in ("mta-sts.elsewhere.test", "example.test", "mta-sts.example.test.evil"):
        assert SITE.policy(host) is None


def test_the_id_follows_the_policy() -> None:
    a = mta_sts_id(mta_sts_policy("mx.example.test"))
    assert a == mta_sts_id(mta_sts_policy("mx.example.test"))
    assert a != mta_sts_id(mta_sts_policy("mx.example.test", "testing"))
    assert a.isalnum() and len(a) <= 32  # RFC 8461 §3.1


def test_autoconfig() -> None:
    for host, address in (
        ("autoconfig.example.test", ""),
        ("example.test", ""),
        ("mail.x", "bob@other.test"),
    ):
        page = SITE.autoconfig(host, address)
        assert page is not None and page.content_type.startswith("text/xml")
        tree = ET.fromstring(page.body)
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
    assert SITE.autoconfig("mail.x", "x@nowhere.test") is None


def test_autoconfig_escapes_what_it_prints() -> None:
    xml = autoconfig_xml("a<b>.test", "mx&co.test", {"imaps": 993})
    assert b"a&lt;b&gt;.test" in xml and b"mx&amp;co.test" in xml
    ET.fromstring(xml)
