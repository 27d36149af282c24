"""Client grouping for limits: IPv6 peers are counted per network (``[limits]
ipv6_prefix``), so one host rotating through its /64 cannot take every slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.config import ConfigError, load_config, render_default_config
from correo.server.throttle import AuthThrottle, PeerLimit, ThrottlePolicy, ip_key


@pytest.mark.parametrize(
    ("ip", "prefix", "key"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "ip:2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 56, "ip:2001:db8:1::/56"),
        ("2001:db8:1:2ff:3:4:5:6", 56, "ip:2001:db8:1:200::/56"),
        ("2001:db8:1:2:3:4:5:6", 128, "ip:2001:db8:1:2:3:4:5:6/128"),
        ("::1", 64, "ip:::/64"),
        ("::ffff:192.0.2.7", 48, "ip:192.0.2.7"),  # IPv4-mapped: an IPv4 client
        ("192.0.2.7", 32, "ip:192.0.2.7"),
    ],
)
def test_ip_key_prefixes(ip: str, prefix: int, key: str) -> None:
    assert ip_key(ip, prefix) == key


def test_one_64_cannot_fill_the_per_ip_limit() -> None:
    limit = PeerLimit(per_peer=50)
    admitted = [limit.admit(f"2001:db8:0:7::{i + 1:x}") for i in range(250)]
    assert sum(k is not None for k in admitted) == 50
    assert len(limit) == 1
    assert limit.admit("2001:db8:0:8::1") is not None  # the next /64 is another client
    assert limit.admit("192.0.2.1") is not None
    key = admitted[0]
    assert key is not None
    limit.release(key)  # a place freed is a place for any address of that /64
    assert limit.admit("2001:db8:0:7:ffff:ffff:ffff:ffff") == key
    assert limit.admit("2001:db8:0:7::abc") is None


def test_prefix_and_no_limit() -> None:
    per_128 = PeerLimit(per_peer=1, ipv6_prefix=128)
    assert per_128.admit("2001:db8::1") and per_128.admit("2001:db8::2")
    unlimited = PeerLimit(per_peer=0)
    keys = [unlimited.admit("2001:db8::1") for _ in range(1000)]
    assert all(keys)
    for key in keys:
        assert key is not None
        unlimited.release(key)
    assert len(unlimited) == 0  # nothing left behind


def test_login_throttle_uses_the_prefix() -> None:
    throttle = AuthThrottle(ThrottlePolicy(lockout_failures=3, ipv6_prefix=48))
    for i in range(3):
        throttle.failure(f"2001:db8:1:{i}::1", None)
    assert throttle.check("2001:db8:1:ffff::1", None).locked
    assert not throttle.check("2001:db8:2::1", None).locked


def _config(tmp_path: Path, limits: str) -> Path:
    text = render_default_config("mail.example.test").replace("[limits]\n", f"[limits]\n{limits}\n")
    text = text.replace("\nipv6_prefix = 64 ", "\n# ipv6_prefix = 64 ")
    (tmp_path / "correo.toml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("value", [0, 16, 31, 129, 1000])
def test_ipv6_prefix_is_validated(tmp_path: Path, value: int) -> None:
    with pytest.raises(ConfigError, match="ipv6_prefix"):
        load_config(_config(tmp_path, f"ipv6_prefix = {value}"))


def test_ipv6_prefix_default_and_setting(tmp_path: Path) -> None:
    assert "\nipv6_prefix = 64 " in render_default_config("mail.example.test")
    assert load_config(_config(tmp_path, "ipv6_prefix = 56")).limits.ipv6_prefix == 56
