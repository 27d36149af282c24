"""[acme] and [outbound] source addresses: what init writes, what loading accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.certs.manager import acme_names, renewal_time
from correo.config import (
    LETSENCRYPT_DIRECTORY,
    ConfigError,
    load_config,
    render_default_config,
)
from correo.config_rules import serve_problems
from correo.server.tls import generate_self_signed


def _load(tmp_path: Path, text: str) -> object:
    (tmp_path / "correo.toml").write_text(text)
    return load_config(tmp_path)


def test_plain_init_writes_acme_off_and_acme_email_turns_it_on(tmp_path: Path) -> None:
    off = _load(tmp_path, render_default_config("mail.example.test"))
    assert off.acme.directory == ""  # type: ignore[attr-defined]
    on = _load(
        tmp_path, render_default_config("mail.example.test", acme_email="admin@example.test")
    )
    acme = on.acme  # type: ignore[attr-defined]
    assert acme.directory == LETSENCRYPT_DIRECTORY
    assert acme.email == "admin@example.test"
    assert acme.challenge == "tls-alpn-01"
    assert acme.names == ()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[acme]\ndirectory = "http://ca.test/dir"\nemail = "a@b.test"', "https:// URL"),
        ('[acme]\ndirectory = "https://ca.test/dir"', "email is needed"),
        ('[acme]\nchallenge = "dns-01"', "tls-alpn-01 or http-01"),
        ('[acme]\nemail = "not an address"', "user@domain"),
        ('[acme]\nnames = ["bad name"]', "host name"),
        ('[acme]\nca_file = "missing.pem"', "is not a file"),
        ('[outbound]\nsource_ipv4 = "2001:db8::1"', "IPv4 address"),
        ('[outbound]\nsource_ipv6 = "192.0.2.1"', "IPv6 address"),
    ],
)
def test_bad_values_are_refused_with_the_reason(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, table + "\n")


def test_the_challenge_needs_its_listener(tmp_path: Path) -> None:
    text = (
        '[listen]\nhttps = ["127.0.0.1:0"]\nhttp = []\n'
        '[acme]\ndirectory = "https://ca.test/dir"\nemail = "a@b.test"\nchallenge = "http-01"\n'
    )
    config = _load(tmp_path, text)
    assert any("needs a [listen] http" in p for p in serve_problems(config))  # type: ignore[arg-type]


def test_default_names_are_the_hostname_and_each_domains_web_names(tmp_path: Path) -> None:
    config = _load(tmp_path, render_default_config("Mail.Example.Test"))
    names = acme_names(config, ["example.test", "other.test"])  # type: ignore[arg-type]
    assert names == (
        "mail.example.test",
        "mta-sts.example.test",
        "autoconfig.example.test",
        "mta-sts.other.test",
        "autoconfig.other.test",
    )
    listed = _load(tmp_path, '[acme]\nnames = ["a.test", "A.test", "b.test"]\n')
    assert acme_names(listed, ["example.test"]) == ("a.test", "b.test")  # type: ignore[arg-type]


def test_renewal_comes_at_two_thirds_of_the_lifetime(tmp_path: Path) -> None:
    generate_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", "a.test", days=30)
    renew, expires = renewal_time((tmp_path / "c.pem").read_bytes())
    lifetime = 30 * 86400 + 300  # not_before is five minutes back
    assert expires - renew == pytest.approx(lifetime / 3, abs=2)
