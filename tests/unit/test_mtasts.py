"""MTA-STS (RFC 8461): records, policies, MX patterns, HTTP answers, discovery and cache.

Discovery runs against a real HTTPS server on loopback with a certificate from a test
CA, and the in-memory resolver for DNS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from correo.dns.fake import FakeResolver
from correo.log import Logger
from correo.mtasts import Policy, PolicyError, mx_matches, parse_policy, parse_record
from correo.queue.mtasts import FetchError, MtaSts, PolicyCache, fetch_policy, tls_context
from correo.queue.routing import Route, RouteError, Target, apply_sts
from tests.pki import PolicyServer, TestCA

GOOD = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\n"
    b"mx: *.mail.example.test\r\nmax_age: 86400\r\n"
)


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([b"v=STSv1; id=20261126T1;"], "20261126T1"),
        ([b"v=STSv1;id=abc"], "abc"),
        ([b"v=spf1 -all", b"v=STSv1; id=x1"], "x1"),  # other TXT records are ignored
        ([b"v=STSv1; id=a", b"v=STSv1; id=b"], None),  # §3.1: not exactly one
        ([b"v=STSv1; id="], None),
        ([b"v=STSv1; id=" + b"a" * 33], None),  # at most 32
        ([b"v=STSv1; id=no-dashes"], None),
        ([b"v=STSv2; id=a"], None),
        ([b"v=STSv1 id=a"], None),
        ([], None),
        ([b"v=STSv1; id=\xff"], None),
    ],
)
def test_txt_record(records: list[bytes], expected: str | None) -> None:
    assert parse_record(records) == expected


def test_policy_fields() -> None:
    p = parse_policy(GOOD)
    assert p == Policy("enforce", ("mx1.example.test", "*.mail.example.test"), 86400)
    # LF endings, unknown keys ignored, first of a repeated key kept, cap on max_age
    p = parse_policy(
        b"version: STSv1\nmode: testing\nfoo: bar\nmode: enforce\nmx: a.test\nmax_age: 9999999999"
    )
    assert p.mode == "testing" and p.max_age == 31_557_600
    assert parse_policy(b"version: STSv1\nmode: none\nmax_age: 1\n").mx == ()


@pytest.mark.parametrize(
    "body",
    [
        b"mode: enforce\nmx: a.test\nmax_age: 1\n",  # no version
        b"version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        b"version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        b"version: STSv1\nmode: enforce\nmax_age: 1\n",  # no mx
        b"version: STSv1\nmode: enforce\nmx: a.test\n",  # no max_age
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
        b"version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
        b"version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 1\n",
        b"<html>not a policy</html>\n",
        b"version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 1\n\xff\n",
    ],
)
def test_bad_policies(body: bytes) -> None:
    with pytest.raises(PolicyError):
        parse_policy(body)


@pytest.mark.parametrize(
    ("pattern", "host", "ok"),
    [
        ("mx1.example.test", "MX1.example.test.", True),
        ("mx1.example.test", "mx2.example.test", False),
        ("*.mail.example.test", "a.mail.example.test", True),
        ("*.mail.example.test", "mail.example.test", False),  # §4.1: one label, not zero
        ("*.mail.example.test", "a.b.mail.example.test", False),  # nor two
        ("*.mail.example.test", "amail.example.test", False),
    ],
)
def test_mx_patterns(pattern: str, host: str, ok: bool) -> None:
    assert mx_matches(pattern, host) is ok


def _targets(*hosts: str) -> tuple[Target, ...]:
    return tuple(Target(h, "127.0.0.9", 25) for h in hosts)


def test_enforce_keeps_named_mx_hosts_and_requires_verified_tls() -> None:
    policy = parse_policy(GOOD)
    route = apply_sts(
        Route(_targets("mx1.example.test", "rogue.test", "x.mail.example.test")), policy, "/ca.pem"
    )
    assert [t.hostname for t in route.targets] == ["mx1.example.test", "x.mail.example.test"]
    assert all(t.tls == "required" and t.verify and t.ca_file == "/ca.pem" for t in route.targets)
    none_left = apply_sts(Route(_targets("rogue.test")), policy)
    assert none_left.error is not None and not none_left.error.permanent
    assert none_left.error.status == "4.7.5" and "rogue.test" in none_left.error.text
    testing = Policy("testing", ("mx1.example.test",), 60)
    untouched = Route(_targets("rogue.test"))
    assert apply_sts(untouched, testing) is untouched
    failed = Route(error=RouteError(True, "5.1.2", "no such domain"))
    assert apply_sts(failed, policy) is failed


# -- discovery against a real HTTPS server ---------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestCA, PolicyServer]]:
    root = tmp_path_factory.mktemp("mtasts")
    ca = TestCA(root / "ca")
    hosts = ["mta-sts.example.test", "mta-sts.other.test", "mta-sts.xn--exmple-cua.test"]
    server = PolicyServer(ca, root, hosts)
    yield ca, server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _sts(
    pki: tuple[TestCA, PolicyServer], resolver: FakeResolver, cache: Path, clock: Clock
) -> MtaSts:
    ca, server = pki
    return MtaSts(
        resolver,
        PolicyCache(cache),
        Logger(level="error"),
        port=server.port,
        ca_file=str(ca.cert_path),
        timeout=5.0,
        clock=clock,
    )


def _resolver(ident: str | None) -> FakeResolver:
    zone: dict[str, dict[str, list[object]]] = {
        "mta-sts.example.test": {"A": ["127.0.0.1"]},
        "mta-sts.other.test": {"A": ["127.0.0.1"]},
    }
    if ident is not None:
        zone["_mta-sts.example.test"] = {"TXT": [f"v=STSv1; id={ident}"]}
    return FakeResolver(zone)  # type: ignore[arg-type]


def _publishing(server: PolicyServer, domain: str) -> FakeResolver:
    """A resolver where ``domain`` publishes GOOD (id 1) from the test policy server."""
    server.responses[f"mta-sts.{domain}"] = (200, "text/plain", GOOD)
    resolver = _resolver(None)
    resolver.add(f"_mta-sts.{domain}", "TXT", "v=STSv1; id=1")
    resolver.add(f"mta-sts.{domain}", "A", "127.0.0.1")
    return resolver


def test_discovery_fetches_caches_and_follows_the_id(
    pki: tuple[TestCA, PolicyServer], tmp_path: Path
) -> None:
    _ca, server = pki
    server.responses["mta-sts.example.test"] = (200, "text/plain", GOOD)
    clock, cache = Clock(), tmp_path / "mta-sts.json"
    sts = _sts(pki, _resolver("v1"), cache, clock)
    before = len(server.requests)
    policy = asyncio.run(sts.policy_for("Example.test"))
    assert policy is not None and policy.mode == "enforce" and "mx1.example.test" in policy.mx
    assert server.requests[before:] == ["mta-sts.example.test/.well-known/mta-sts.txt"]
    assert asyncio.run(sts.policy_for("example.test")) == policy
    assert len(server.requests) == before + 1  # same id: no new fetch

    # a restart keeps it (the file), and neither a vanished record nor a dead policy
    # host switches it off before max_age (§5.1)
    server.responses["mta-sts.example.test"] = (500, "text/plain", b"")
    again = _sts(pki, _resolver(None), cache, clock)
    assert asyncio.run(again.policy_for("example.test")) == policy
    changed = _sts(pki, _resolver("v2"), cache, clock)
    assert asyncio.run(changed.policy_for("example.test")) == policy  # fetch failed: cached
    clock.now += 86_401
    assert asyncio.run(changed.policy_for("example.test")) is None  # expired, none to fetch

    # a new id with a new policy replaces the cached one
    server.responses["mta-sts.example.test"] = (
        200,
        "text/plain",
        b"version: STSv1\nmode: testing\nmx: mx9.example.test\nmax_age: 600\n",
    )
    asked = len(server.requests)
    assert asyncio.run(changed.policy_for("example.test")) is None  # failed just now:
    assert len(server.requests) == asked  # not asked again for five minutes
    clock.now += 301
    newer = asyncio.run(changed.policy_for("example.test"))
    assert newer is not None and newer.mode == "testing" and newer.mx == ("mx9.example.test",)
    assert '"v2"' in cache.read_text()


def test_no_policy_without_a_record_or_with_a_bad_answer(
    pki: tuple[TestCA, PolicyServer], tmp_path: Path
) -> None:
    _ca, server = pki
    clock = Clock()
    assert (
        asyncio.run(_sts(pki, _resolver(None), tmp_path / "c", clock).policy_for("example.test"))
        is None
    )
    for status, ctype, body in (
        (301, "text/plain", b""),
        (200, "text/html", GOOD),
        (200, "text/plain", b"junk"),
    ):
        server.responses["mta-sts.example.test"] = (status, ctype, body)
        sts = _sts(pki, _resolver("v1"), tmp_path / f"c{status}{ctype[5:]}", clock)
        assert asyncio.run(sts.policy_for("example.test")) is None


def test_unverifiable_policy_hosts_are_refused(
    pki: tuple[TestCA, PolicyServer], tmp_path: Path
) -> None:
    """A certificate naming another host, or from a CA nobody trusts: no policy."""
    ca, server = pki
    resolver = _publishing(server, "third.test")  # served with example.test's cert
    sts = _sts(pki, resolver, tmp_path / "c1", Clock())
    assert asyncio.run(sts.policy_for("third.test")) is None
    server.responses["mta-sts.example.test"] = (200, "text/plain", GOOD)
    untrusting = MtaSts(
        _resolver("v1"),
        PolicyCache(tmp_path / "c2"),
        Logger(level="error"),
        port=server.port,
        ca_file="",  # the system's CAs only: the test CA is unknown
        timeout=5.0,
        clock=Clock(),
    )
    assert asyncio.run(untrusting.policy_for("example.test")) is None
    assert (
        asyncio.run(_sts(pki, _resolver("v1"), tmp_path / "c3", Clock()).policy_for("example.test"))
        is not None
    )  # the same server, trusted and named right
    assert ca.cert_path.exists()


def test_cache_file_survives_garbage(tmp_path: Path) -> None:
    path = tmp_path / "mta-sts.json"
    path.write_text("{not json")
    cache = PolicyCache(path)
    assert cache.get("example.test", 0.0) is None


def test_concurrent_callers_share_one_fetch(
    pki: tuple[TestCA, PolicyServer], tmp_path: Path
) -> None:
    _ca, server = pki
    server.responses["mta-sts.example.test"] = (200, "text/plain", GOOD)
    sts = _sts(pki, _resolver("c1"), tmp_path / "c", Clock())
    before = len(server.requests)

    async def many() -> list[Policy | None]:
        return list(await asyncio.gather(*(sts.policy_for("example.test") for _ in range(6))))

    results = asyncio.run(many())
    assert all(r is not None and r.mode == "enforce" for r in results)
    assert len(server.requests) == before + 1


def test_idna_domains_are_looked_up_by_their_a_labels(
    pki: tuple[TestCA, PolicyServer], tmp_path: Path
) -> None:
    _ca, server = pki
    resolver = _publishing(server, "xn--exmple-cua.test")
    policy = asyncio.run(_sts(pki, resolver, tmp_path / "c", Clock()).policy_for("exämple.test"))
    assert policy is not None and policy.mode == "enforce"


def test_a_policy_is_refetched_daily_and_survives_an_unwritable_cache(
    pki: tuple[TestCA, PolicyServer], tmp_path: Path
) -> None:
    _ca, server = pki
    server.responses["mta-sts.example.test"] = (
        200,
        "text/plain",
        b"version: STSv1\nmode: enforce\nmx: mx1.example.test\nmax_age: 31557600\n",
    )
    clock = Clock()
    sts = _sts(pki, _resolver("d1"), tmp_path / "no-such-dir" / "mta-sts.json", clock)
    before = len(server.requests)
    assert asyncio.run(sts.policy_for("example.test")) is not None  # saved in memory only
    assert asyncio.run(sts.policy_for("example.test")) is not None
    assert len(server.requests) == before + 1
    clock.now += 86_401  # same id, a day later: fetched again to renew it (RFC 8461 §10.2)
    server.responses["mta-sts.example.test"] = (500, "text/plain", b"")
    assert asyncio.run(sts.policy_for("example.test")) is not None  # failed: cached kept
    assert len(server.requests) == before + 2


def test_the_policy_filters_mx_hosts_before_the_caps() -> None:
    """Twelve injected MX hosts at a better preference do not crowd out the allowed one."""
    from correo.queue.routing import NextHop, resolve_route

    resolver = FakeResolver()
    rogue = [(5, f"rogue{i}.test") for i in range(12)]
    resolver.add("example.test", "MX", *rogue, (50, "mx1.example.test"))
    for i in range(12):
        resolver.add(f"rogue{i}.test", "A", "127.0.0.66")
    resolver.add("mx1.example.test", "A", "127.0.0.9")
    policy = parse_policy(GOOD)
    route = asyncio.run(resolve_route(NextHop(), "example.test", resolver, allow=policy.allows))
    assert [t.hostname for t in route.targets] == ["mx1.example.test"]
    only_rogues = FakeResolver()
    only_rogues.add("example.test", "MX", *rogue)
    refused = asyncio.run(
        resolve_route(NextHop(), "example.test", only_rogues, allow=policy.allows)
    )
    assert refused.error is not None and refused.error.status == "4.7.5"
    assert not refused.error.permanent


@pytest.mark.parametrize(
    ("status", "ctype", "body", "error"),
    [
        (301, "text/plain", b"", "HTTP status 301"),  # RFC 8461 §3.3: not followed
        (404, "text/plain", b"no", "HTTP status 404"),
        (200, "text/html", GOOD, "policy served as text/html"),  # §3.2: text/plain only
        (200, "text/plain", b"x" * 70_000, "larger than 65536 bytes"),  # §3.3: size bound
    ],
)
def test_fetch_refuses_what_is_not_a_policy(
    pki: tuple[TestCA, PolicyServer], status: int, ctype: str, body: bytes, error: str
) -> None:
    ca, server = pki
    server.responses["mta-sts.other.test"] = (status, ctype, body)

    async def fetch() -> bytes:
        return await fetch_policy(
            "other.test",
            _resolver(None),
            port=server.port,
            context=tls_context(str(ca.cert_path)),
            timeout=5.0,
        )

    with pytest.raises(FetchError, match=error):
        asyncio.run(fetch())
    server.responses["mta-sts.other.test"] = (200, "text/plain; charset=utf-8", GOOD)
    assert asyncio.run(fetch()) == GOOD


def test_fetch_needs_a_certificate_for_the_policy_host(
    pki: tuple[TestCA, PolicyServer],
) -> None:
    """A certificate that does not name mta-sts.<domain>, or an unverified one, fails."""
    ca, server = pki
    server.responses["mta-sts.nowhere.test"] = (200, "text/plain", GOOD)
    resolver = _resolver(None)
    resolver.add("mta-sts.nowhere.test", "A", "127.0.0.1")  # served with another's certificate
    ctx = tls_context(str(ca.cert_path))
    with pytest.raises(FetchError):
        asyncio.run(fetch_policy("nowhere.test", resolver, port=server.port, context=ctx))
    unverified = tls_context(str(ca.cert_path))
    unverified.check_hostname = False
    with pytest.raises(FetchError, match="must be verified"):
        asyncio.run(
            fetch_policy("other.test", _resolver(None), port=server.port, context=unverified)
        )


# -- the pure caching rules ------------------------------------------------------------


def test_cache_rules_decide_when_to_fetch() -> None:
    from correo.mtasts.cache import FETCH, REFRESH, CachedPolicy, without_fetch

    policy = parse_policy(GOOD)
    cached = CachedPolicy("id1", policy, expires=1000.0 + 86400, fetched=1000.0)
    assert without_fetch(cached, None, 2000.0, 0.0) is policy  # record gone: cache holds
    assert without_fetch(None, None, 2000.0, 0.0) is None
    assert without_fetch(cached, "id1", 2000.0, 0.0) is policy  # same id, fresh
    assert without_fetch(cached, "id2", 2000.0, 0.0) is FETCH  # new id
    assert without_fetch(cached, "id1", 1000.0 + REFRESH, 0.0) is FETCH  # daily refetch
    assert without_fetch(cached, "id2", 2000.0, 2300.0) is policy  # failed a moment ago


def test_cache_rules_prune_and_round_trip() -> None:
    from correo.mtasts.cache import CachedPolicy, decode_cache, encode_cache, prune

    enforce = parse_policy(GOOD)
    testing = Policy("testing", ("mx.example.test",), 86400)
    entries = {
        "a.test": CachedPolicy("1", enforce, 500.0),
        "b.test": CachedPolicy("1", testing, 900.0),
        "c.test": CachedPolicy("1", enforce, 800.0),
        "old.test": CachedPolicy("1", enforce, 50.0),
    }
    assert sorted(prune(entries, 100.0, cap=2)) == ["a.test", "c.test"]  # testing goes first
    decoded, problems = decode_cache({**encode_cache(entries), "bad.test": {"mode": "x"}})
    assert decoded == entries
    assert problems == ["skipped a malformed entry for 'bad.test'"]
    assert decode_cache([1, 2])[0] == {}
