"""Pure queue logic: retry schedule, routing over a fake resolver, DSN composition."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random

import pytest

from correo.dns import FakeResolver
from correo.queue.attempt import downgrade_8bit
from correo.queue.dsn import RecipientReport, compose_dsn, xtext_decode
from correo.queue.routing import NextHop, RoutingTable, parse_next_hop, resolve_route
from correo.queue.schedule import RetryPolicy, decide, next_attempt, should_warn

P = RetryPolicy()


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 3600), (50, 3600), (10**6, 3600)],
)
def test_backoff_doubles_to_the_cap(attempts: int, delay: float) -> None:
    assert next_attempt(P, attempts, 1000.0) == 1000.0 + delay


def test_give_up_after_lifetime_and_last_try_at_deadline() -> None:
    assert decide(P, 0.0, 3, 5 * 86400.0).action == "give_up"
    d = decide(P, 0.0, 20, 5 * 86400.0 - 10)
    assert d.action == "retry" and d.at == 5 * 86400.0


def test_delay_warning_once() -> None:
    assert not should_warn(P, 0.0, 3 * 3600.0, False)
    assert should_warn(P, 0.0, 4 * 3600.0, False)
    assert not should_warn(P, 0.0, 5 * 3600.0, True)
    assert not should_warn(RetryPolicy(delay_warning=0), 0.0, 9e9, False)


ZONE = {
    "multi.test": {"MX": [(10, "a.multi.test"), (10, "b.multi.test"), (20, "c.multi.test")]},
    "a.multi.test": {"A": ["192.0.2.1"]},
    "b.multi.test": {"A": ["192.0.2.2"], "AAAA": ["2001:db8::2"]},
    "c.multi.test": {"A": ["192.0.2.3"]},
    "implicit.test": {"A": ["192.0.2.9"]},
    "null.test": {"MX": [(0, ".")]},
    "temp.test": {"TIMEOUT": []},
    "xn--bcher-kva.test": {"MX": [(5, "mx.xn--bcher-kva.test")]},
    "mx.xn--bcher-kva.test": {"A": ["192.0.2.7"]},
    "relay.example": {"A": ["192.0.2.50"]},
}


def route(domain: str, hop: NextHop | None = None, seed: int = 0) -> object:
    return asyncio.run(
        resolve_route(hop or NextHop(), domain, FakeResolver(ZONE), random.Random(seed))
    )


def test_mx_preference_order_random_among_equals_ipv6_first() -> None:
    orders = set()
    for seed in range(20):
        r = route("multi.test", seed=seed)
        names = [t.hostname for t in r.targets]  # type: ignore[attr-defined]
        assert names[-1] == "c.multi.test"
        orders.add(tuple(dict.fromkeys(names)))
        b = [t.address for t in r.targets if t.hostname == "b.multi.test"]  # type: ignore[attr-defined]
        assert b == ["2001:db8::2", "192.0.2.2"]
    assert len(orders) == 2  # both orders of the preference-10 pair occur


@pytest.mark.parametrize(
    ("domain", "permanent", "status"),
    [
        ("null.test", True, "5.1.10"),
        ("nowhere.test", True, "5.1.2"),
        ("temp.test", False, "4.4.3"),
    ],
)
def test_route_errors(domain: str, permanent: bool, status: str) -> None:
    err = route(domain).error  # type: ignore[attr-defined]
    assert err is not None and (err.permanent, err.status) == (permanent, status)


def test_implicit_mx_and_idna() -> None:
    assert [t.address for t in route("implicit.test").targets] == ["192.0.2.9"]  # type: ignore[attr-defined]
    assert [t.address for t in route("bücher.test").targets] == ["192.0.2.7"]  # type: ignore[attr-defined]


def test_ip_next_hop_needs_no_dns() -> None:
    (t,) = route("x.test", parse_next_hop("smtp:[127.0.0.1]:2525")).targets  # type: ignore[attr-defined]
    assert (t.address, t.port) == ("127.0.0.1", 2525)


def test_transport_map_and_smart_host() -> None:
    relay = NextHop("smtp", "relay.example", 587, False, "required", True, "u", "p")
    table = RoutingTable({".sub.test": parse_next_hop("lmtp:[127.0.0.1]:24")}, relay)
    assert table.next_hop("x.sub.test").protocol == "lmtp"
    assert table.next_hop("other.test") is relay
    assert table.destination("a.test") == table.destination("b.test")  # one smart-host queue
    (t,) = route("anything.test", relay).targets  # type: ignore[attr-defined]
    assert (t.address, t.port, t.tls, t.username) == ("192.0.2.50", 587, "required", "u")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtp:[mx.example]:2525", NextHop("smtp", "mx.example", 2525, False)),
        ("mx.example", NextHop("smtp", "mx.example", 25, True)),
        ("lmtp:127.0.0.1:24", NextHop("lmtp", "127.0.0.1", 24, False)),
        ("[10.0.0.1]", NextHop("smtp", "10.0.0.1", 25, False)),
    ],
)
def test_parse_next_hop(text: str, expected: NextHop) -> None:
    assert parse_next_hop(text) == expected


@pytest.mark.parametrize("bad", ["", "smtp:[x", "host:port", "[h]x", "h:0"])
def test_parse_next_hop_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_next_hop(bad)


ORIGINAL = b"From: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n"


def test_dsn_structure() -> None:
    raw = compose_dsn(
        reporting_mta="mx.x.test",
        recipient="a@x.test",
        reports=[
            RecipientReport(
                "b@y.test",
                "failed",
                "5.1.1",
                "550 5.1.1 no such user",
                "mx.y.test",
                "rfc822;B+2Bt@y.test",
                1.0,
            ),
            RecipientReport(
                "c@z.test", "failed", "4.4.1", "connect: refused", diagnostic_type="X-correo"
            ),
        ],
        original=ORIGINAL,
        headers_only=True,
        arrival=0.0,
        now=2.0,
        envid="ENV+2B1",
    )
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    human, status, returned = msg.get_payload()  # type: ignore[misc]
    assert "b@y.test" in human.get_payload()
    groups = status.get_payload()
    assert groups[0]["Reporting-MTA"] == "dns; mx.x.test"
    assert groups[0]["Original-Envelope-Id"] == "ENV+1"
    assert groups[1]["Original-Recipient"] == "rfc822;B+t@y.test"
    assert groups[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert groups[1]["Remote-MTA"] == "dns; mx.y.test"
    assert groups[2]["Diagnostic-Code"] == "X-correo; connect: refused"
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"body\r\n" not in raw.split(b"text/rfc822-headers")[1]


def test_dsn_never_to_null_sender() -> None:
    with pytest.raises(ValueError):
        compose_dsn(
            reporting_mta="m",
            recipient="",
            reports=[RecipientReport("b@y", "failed", "5.0.0")],
            original=b"",
            headers_only=True,
            arrival=0,
            now=0,
        )


def test_xtext() -> None:
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"


def test_8bit_downgrade() -> None:
    msg = (
        "From: a@x\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
    ).encode()
    out = downgrade_8bit(msg)
    assert out is not None and out.isascii()
    assert b"quoted-printable" in out and b"Gr=C3=BC=C3=9Fe" in out
    parsed = email.message_from_bytes(out)
    assert parsed.get_payload(decode=True).rstrip() == "Grüße".encode()  # type: ignore[union-attr]
    assert downgrade_8bit("Subject: Grüße\r\n\r\nx\r\n".encode()) is None
