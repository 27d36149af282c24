"""DMARC (RFC 7489): organizational domains, alignment tables, record discovery, policy."""

from __future__ import annotations

import asyncio

import pytest

from correo.dns import FakeResolver
from correo.mailauth.dmarc import (
    DmarcPolicy,
    DmarcStatus,
    aligned,
    check_dmarc,
    organizational_domain,
    parse_record,
)


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("foo.github.io", "foo.github.io"),  # private section of the PSL
        ("MAIL.Example.COM.", "example.com"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


@pytest.mark.parametrize(
    ("a", "b", "strict", "expected"),
    [
        ("example.com", "example.com", True, True),
        ("example.com", "example.com", False, True),
        ("mail.example.com", "example.com", False, True),
        ("mail.example.com", "example.com", True, False),
        ("a.example.com", "b.example.com", False, True),
        ("example.com", "example.net", False, False),
        ("example.co.uk", "other.co.uk", False, False),  # a public suffix is no organization
        ("x.example.co.uk", "example.co.uk", False, True),
        ("EXAMPLE.com", "example.COM", True, True),
    ],
)
def test_alignment(a: str, b: str, strict: bool, expected: bool) -> None:
    assert aligned(a, b, strict) is expected


@pytest.mark.parametrize(
    ("text", "policy", "sp", "pct", "adkim_strict"),
    [
        (b"v=DMARC1; p=reject", DmarcPolicy.REJECT, None, 100, False),
        (
            b"v=DMARC1; p=quarantine; sp=none; pct=20; adkim=s",
            DmarcPolicy.QUARANTINE,
            DmarcPolicy.NONE,
            20,
            True,
        ),
        (b"v=DMARC1; p=bogus; rua=mailto:d@example.com", DmarcPolicy.NONE, None, 100, False),
        (b"v=DMARC1;p=none;pct=500", DmarcPolicy.NONE, None, 100, False),
    ],
)
def test_parse_record(
    text: bytes, policy: DmarcPolicy, sp: DmarcPolicy | None, pct: int, adkim_strict: bool
) -> None:
    record = parse_record(text)
    assert record is not None
    assert (record.policy, record.subdomain_policy, record.pct, record.adkim_strict) == (
        policy,
        sp,
        pct,
        adkim_strict,
    )


@pytest.mark.parametrize(
    "text",
    [
        b"p=reject; v=DMARC1",
        b"v=DMARC2; p=reject",
        b"v=DMARC1; p=bogus",
        b"v=DMARC1; p=reject; p=none",
        b"\xff",
    ],
)
def test_unusable_records(text: bytes) -> None:
    assert parse_record(text) is None


ZONE = {
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:r@example.com"]},
    "_dmarc.strict.example": {"TXT": ["v=DMARC1; p=reject; adkim=s; aspf=s"]},
    "_dmarc.half.example": {"TXT": ["v=DMARC1; p=reject; pct=50"]},
    "_dmarc.two.example": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]},
    "_dmarc.slow.example": {"TIMEOUT": [True]},
}


def run(
    from_domain: str, spf: tuple[str, ...] = (), dkim: tuple[str, ...] = (), sample: float = 0.0
):
    return asyncio.run(
        check_dmarc(
            FakeResolver(ZONE),
            from_domain,
            spf_pass_domains=spf,
            dkim_pass_domains=dkim,
            sample=sample,
        )
    )


@pytest.mark.parametrize(
    ("from_domain", "spf", "dkim", "status", "disposition"),
    [
        ("example.com", (), (), "fail", "reject"),
        ("example.com", ("example.com",), (), "pass", "none"),
        ("example.com", (), ("example.com",), "pass", "none"),
        ("example.com", ("bounce.example.com",), (), "pass", "none"),  # relaxed SPF alignment
        ("example.com", (), ("evil.example",), "fail", "reject"),
        ("news.example.com", (), (), "fail", "quarantine"),  # sp= from the org record
        ("news.example.com", (), ("example.com",), "pass", "none"),
        ("strict.example", (), ("mail.strict.example",), "fail", "reject"),
        ("strict.example", ("strict.example",), (), "pass", "none"),
        ("nodmarc.example", (), (), "none", "none"),
        ("two.example", (), (), "none", "none"),
        ("slow.example", (), (), "temperror", "none"),
    ],
)
def test_policy_table(
    from_domain: str, spf: tuple[str, ...], dkim: tuple[str, ...], status: str, disposition: str
) -> None:
    outcome = run(from_domain, spf, dkim)
    assert (outcome.status, outcome.disposition) == (DmarcStatus(status), DmarcPolicy(disposition))


def test_pct_sampling_softens_policy() -> None:
    inside = run("half.example", sample=0.10)
    assert inside.disposition is DmarcPolicy.REJECT and not inside.sampled_out
    outside = run("half.example", sample=0.90)
    assert outside.disposition is DmarcPolicy.QUARANTINE and outside.sampled_out


def test_rua_is_reported() -> None:
    assert run("example.com").reporting == ("mailto:r@example.com",)
