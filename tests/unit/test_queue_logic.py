"""Pure queue logic: retry schedule, routing over a fake resolver, DSN composition."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from correo.delivery.routing import RecipientRoute, route_recipient
from correo.directory import PasswordScheme, SqliteDirectory
from correo.dns import FakeResolver
from correo.log import Logger
from correo.mailauth import (
    ArcResult,
    ArcStatus,
    AuthVerdict,
    DmarcOutcome,
    DmarcStatus,
    SpfOutcome,
    SpfResult,
    SpfVerdict,
)
from correo.queue.attempt import OutboundSmtpSession, RecipientResult, Timeouts, downgrade_8bit
from correo.queue.dsn import (
    RecipientReport,
    compose_dsn,
    return_path_authenticated,
    without_success,
    xtext_decode,
)
from correo.queue.routing import (
    NextHop,
    RoutingTable,
    Target,
    handoff_domains,
    parse_next_hop,
    resolve_route,
)
from correo.queue.schedule import RetryPolicy, decide, next_attempt, should_warn
from correo.store.api import QueuedMessage, QueueRecipientState
from tests.argon import FAST

P = RetryPolicy()
_LOG = Logger(io.StringIO())


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


def test_downgrade_of_deeply_nested_mime_gives_up_instead_of_raising() -> None:
    """The stdlib parser recurses per MIME level; 3,000 levels are "cannot convert"."""
    depth = 3000
    opens = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    leaf = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9\r\n"
    closes = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    assert downgrade_8bit(b"From: a@x\r\nMIME-Version: 1.0\r\n" + opens + leaf + closes) is None


def _verdict(spf: str, spf_domain: str, dmarc: str, from_domain: str) -> AuthVerdict:
    return AuthVerdict(
        spf=SpfVerdict(
            SpfOutcome(SpfResult.NONE, "helo.test"), SpfOutcome(SpfResult(spf), spf_domain)
        ),
        dkim=(),
        dmarc=DmarcOutcome(DmarcStatus(dmarc)),
        arc=ArcResult(ArcStatus.NONE),
        header=b"",
        from_domain=from_domain,
    )


@pytest.mark.parametrize(
    ("sender", "verdict", "allowed"),
    [
        ("a@good.test", _verdict("pass", "good.test", "none", "other.test"), True),
        ("a@good.test", _verdict("pass", "helo.test", "none", ""), False),  # not its domain
        ("a@good.test", _verdict("softfail", "good.test", "none", ""), False),
        ("a@good.test", _verdict("fail", "good.test", "pass", "good.test"), True),
        ("a@mail.good.test", _verdict("none", "", "pass", "good.test"), True),  # relaxed
        ("a@victim.test", _verdict("none", "", "pass", "evil.test"), False),  # not aligned
        ("a@good.test", None, False),  # no checks ran (no resolver)
        ("", _verdict("pass", "good.test", "pass", "good.test"), False),
    ],
)
def test_success_notices_need_an_authenticated_return_path(
    sender: str, verdict: AuthVerdict | None, allowed: bool
) -> None:
    assert return_path_authenticated(sender, verdict) is allowed


@pytest.mark.parametrize(
    ("notify", "kept"),
    [
        (None, None),
        ("FAILURE", "FAILURE"),
        ("SUCCESS", "NEVER"),
        ("success, delay", "DELAY"),
        ("SUCCESS,FAILURE,DELAY", "FAILURE,DELAY"),
        ("NEVER", "NEVER"),
    ],
)
def test_without_success(notify: str | None, kept: str | None) -> None:
    assert without_success(notify) == kept


# -- success notices, RFC 6533, LMTP hand-off -----------------------------------------


def _parts(raw: bytes) -> list[email.message.Message]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    return parts


@pytest.mark.parametrize(
    ("action", "remote", "words"),
    [
        ("delivered", "", b"delivered: 250 2.0.0 delivered to mailbox"),
        ("relayed", "mx.y.test", b"relayed (host mx.y.test said: 250 2.0.0 ok)"),
        ("expanded", "", b"expanded: 250 2.0.0 alias expanded"),
    ],
)
def test_success_dsn(action: str, remote: str, words: bytes) -> None:
    """RFC 3461 §6.2 / RFC 3464 §2.3.3: a success report, headers returned."""
    diagnostic = "250 2.0.0 ok" if remote else words.split(b": ", 1)[1].decode()
    raw = compose_dsn(
        reporting_mta="mx.x.test",
        recipient="a@x.test",
        reports=[RecipientReport("b@y.test", action, "2.0.0", diagnostic, remote)],  # type: ignore[arg-type]
        original=ORIGINAL,
        headers_only=True,
        arrival=0.0,
        now=1.0,
    )
    _human, status, returned = _parts(raw)
    assert b"Subject: Successful Mail Delivery Report" in raw
    assert words in raw and b"could not" not in raw
    group = status.get_payload()[1]  # type: ignore[index]
    assert group["Action"] == action and group["Status"] == "2.0.0"
    assert (group["Remote-MTA"] is not None) == bool(remote)
    assert returned["Content-Description"] == "Delivered message"
    assert returned.get_content_type() == "text/rfc822-headers"


def test_global_dsn_for_smtputf8_mail() -> None:
    """RFC 6533: message/global-delivery-status, UTF-8 addresses, message/global."""
    original = "From: jörg@x.test\r\nSubject: grüße\r\n\r\nbody\r\n".encode()
    raw = compose_dsn(
        reporting_mta="mx.x.test",
        recipient="jörg@x.test",
        reports=[RecipientReport("müller@y.test", "failed", "5.1.1", "550 5.1.1 unknown")],
        original=original,
        headers_only=False,
        arrival=0.0,
        now=1.0,
        utf8=True,
    )
    _human, status, returned = _parts(raw)
    assert status.get_content_type() == "message/global-delivery-status"
    assert "Final-Recipient: utf-8; müller@y.test".encode() in raw  # RFC 6533 §3
    assert returned.get_content_type() == "message/global"
    assert "To: <jörg@x.test>".encode() in raw
    assert original in raw
    heads = compose_dsn(
        reporting_mta="m",
        recipient="a@x.test",
        reports=[RecipientReport("b@y.test", "failed", "5.0.0")],
        original=original,
        headers_only=True,
        arrival=0.0,
        now=1.0,
        utf8=True,
    )
    assert b"Content-Type: message/global-headers" in heads  # RFC 6533 §6.3
    assert b"Final-Recipient: rfc822; b@y.test" in heads  # ASCII keeps rfc822


def test_handoff_domains() -> None:
    transport = (
        "example.test lmtp:127.0.0.1:24",
        "Other.Test lmtp:[::1]:2424",
        "remote.test smtp:[10.0.0.5]:2525",
        ".sub.test lmtp:127.0.0.1",
        "broken.test lmtp:[oops",
    )
    assert handoff_domains(transport) == frozenset({"example.test", "other.test"})
    assert handoff_domains(()) == frozenset()


def test_route_recipient_handoff_and_success_notice(tmp_path: Path) -> None:
    """Hand-off and NOTIFY=SUCCESS queue a validated local recipient; unknown stays 550."""
    d = SqliteDirectory(tmp_path / "dir.db", passwords=PasswordScheme(FAST))
    try:
        d.add_domain("example.test")
        d.add_user("alice@example.test", "secret-password-1")
        d.add_alias("info@example.test", "alice@example.test")
        d.add_alias("team@example.test", "x@remote.test")
        ho = frozenset({"example.test"})

        def go(local: str, **kw: object) -> RecipientRoute:
            return route_recipient(d, local, "example.test", may_relay=False, **kw)  # type: ignore[arg-type]

        plain = go("alice")
        assert plain.local and not plain.remote
        assert go("alice", handoff=ho).remote == ("alice@example.test",)
        assert go("alice+news", handoff=ho).remote == ("alice+news@example.test",)
        assert go("info", handoff=ho).remote == ("alice@example.test",)
        assert go("team", handoff=ho).remote == ("x@remote.test",)
        assert go("nobody", handoff=ho).code == 550
        notify = go("info", notify_success=True)
        assert notify.remote == ("info@example.test",) and not notify.local
        assert go("nobody", notify_success=True).code == 550
        # Still no open relay: a remote domain from an unauthenticated peer.
        assert route_recipient(d, "x", "remote.test", may_relay=False, handoff=ho).code == 554
    finally:
        d.close()


async def _peer(extensions: bytes, lmtp: bool) -> list[RecipientResult]:
    """A minimal SMTP/LMTP peer (asyncio) answering 250 to everything."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 peer ready\r\n")
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    writer.write(b"250 2.0.0 ok\r\n")
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"LHLO"):
                writer.write(b"250-peer\r\n" + extensions + b"250 8BITMIME\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    protocol: Literal["smtp", "lmtp"] = "lmtp" if lmtp else "smtp"
    target = Target("peer.test", "127.0.0.1", port, protocol, "none")
    session = await OutboundSmtpSession.open(target, helo="me.test", timeouts=Timeouts(), log=_LOG)
    message = QueuedMessage(1, "a@x.test", 20, 0.0, None, None, None, False, None, ())
    rcpt = QueueRecipientState("b@y.test", "SUCCESS", None, "queued", 0, 0.0)

    async def body() -> AsyncIterator[bytes]:
        yield b"Subject: t\r\n\r\nhi\r\n"

    try:
        return await session.deliver(message, [rcpt], body())
    finally:
        await session.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("extensions", "lmtp", "action"),
    [
        (b"", False, "relayed"),  # RFC 3461 §6.2: left the DSN world
        (b"250-DSN\r\n", False, ""),  # NOTIFY passed on: the peer reports
        (b"", True, "delivered"),  # LMTP is final delivery
    ],
)
def test_success_action_depends_on_the_peer(extensions: bytes, lmtp: bool, action: str) -> None:
    (result,) = asyncio.run(_peer(extensions, lmtp))
    assert result.outcome == "delivered"
    assert result.success_action == action
