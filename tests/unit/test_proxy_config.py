"""``[server] proxy_protocol`` and ``proxy_protocol_services``: parsing, one-line errors,
reload, and whom the server trusts to send a PROXY header."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from correo.config import PROXY_SERVICES, ConfigError, load_config, render_default_config
from correo.log import Logger
from correo.server.proxy import ProxyPolicy
from correo.server.reload import applied, restart_keys


def _load(tmp_path: Path, **server: str) -> object:
    text = render_default_config("mail.example.test")
    for key, value in server.items():
        text = text.replace(f"\n{key} = ", f"\n{key} = {value}\n# was: ", 1)
    (tmp_path / "correo.toml").write_text(text)
    return load_config(tmp_path)


def test_off_by_default(tmp_path: Path) -> None:
    config = _load(tmp_path)
    assert config.proxy_protocol == ()  # type: ignore[attr-defined]
    assert "lmtp" not in PROXY_SERVICES and "metrics" not in PROXY_SERVICES
    assert config.proxy_protocol_services == PROXY_SERVICES  # type: ignore[attr-defined]


def test_networks_are_stored_canonically(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        proxy_protocol='["10.0.0.0/8", "127.0.0.1", "2001:DB8::/32", "::1"]',
        proxy_protocol_services='["imaps", "smtp", "imaps"]',
    )
    assert config.proxy_protocol == (  # type: ignore[attr-defined]
        "10.0.0.0/8",
        "127.0.0.1/32",
        "2001:db8::/32",
        "::1/128",
    )
    assert config.proxy_protocol_services == ("imaps", "smtp")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("proxy_protocol", '["10.0.0.1/8"]', "did you mean 10.0.0.0/8"),
        ("proxy_protocol", '["lb.example.test"]', "is not an IP address or network"),
        ("proxy_protocol", '["10.0.0.0/33"]', "is not an IP address or network"),
        ("proxy_protocol", '"10.0.0.0/8"', "must be a list"),
        ("proxy_protocol", "[1]", "must be a list"),
        ("proxy_protocol_services", '["smtp", "ftp"]', "unknown service 'ftp'"),
        ("proxy_protocol_services", '"smtp"', "must be a list"),
    ],
)
def test_bad_value_is_one_line(tmp_path: Path, key: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, **{key: value})
    message = str(info.value)
    assert f"[server] {key}" in message and says in message, message
    assert "\n" not in message


def test_unknown_server_key_is_named(tmp_path: Path) -> None:
    text = render_default_config("mail.example.test").replace(
        "proxy_protocol = []", "proxy_protocl = []"
    )
    (tmp_path / "correo.toml").write_text(text)
    with pytest.raises(ConfigError, match="proxy_protocol"):
        load_config(tmp_path)


def test_a_reload_keeps_the_running_value(tmp_path: Path) -> None:
    """The listeners are made at start: a change waits for a restart, and is named."""
    old = _load(tmp_path)
    new = dataclasses.replace(old, proxy_protocol=("10.0.0.0/8",))  # type: ignore[type-var]
    assert restart_keys(old, new) == ["proxy_protocol"]  # type: ignore[arg-type]
    assert applied(old, new).proxy_protocol == ()  # type: ignore[arg-type]


def test_trust_by_network() -> None:
    policy = ProxyPolicy(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"], timeout=1, log=Logger())
    assert policy.trusts("10.1.2.3") and policy.trusts("127.0.0.1")
    assert policy.trusts("::ffff:10.9.9.9")  # a dual-stack socket's view of an IPv4 peer
    assert policy.trusts("2001:db8:1::5")
    assert not policy.trusts("127.0.0.2") and not policy.trusts("11.0.0.1")
    assert not policy.trusts("2001:db9::1") and not policy.trusts("?")
