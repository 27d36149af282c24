"""Every bad configuration value stops ``correo serve`` with one line naming its key.

The table runs the real command in a subprocess for each value: exit status 2, a
single line on standard error that names ``[section] key``, never a traceback, and
no server started.  The rule table itself is checked for every key of every section.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from correo.config import Config, ConfigError, load_config, render_default_config
from correo.config_rules import check_value

# The module fixture runs ``correo serve`` once per BAD case (about a second of CPU each),
# and its time counts against the first test's timeout: allow for a loaded machine.
pytestmark = pytest.mark.timeout(600)

_LONG = "s" * 110 + ".sock"

# (section, key, TOML value); keys not in the rendered config are appended to it.
BAD: list[tuple[str, str, str]] = [
    ("auth", "lockout_seconds", "nan"),
    ("auth", "lockout_seconds", "0.0"),
    ("auth", "lockout_failures", "0"),
    ("auth", "remember_logins", "nan"),
    ("limits", "command_timeout", "nan"),
    ("limits", "data_timeout", "inf"),
    ("limits", "connections", "0"),
    ("limits", "connections", '"many"'),
    ("limits", "message_size", "0"),
    ("limits", "command_line", "100"),
    ("limits", "data_line", "10"),
    ("server", "hostname", '"mail.example.test\\r\\n250 injected"'),
    ("server", "hostname", '"mail_x.example.test"'),
    ("smtp", "recipient_delimiter", '"@"'),
    ("smtp", "recipient_delimiter", '"\\u0001"'),
    ("dns", "nameservers", '["dns.example.test"]'),
    ("dns", "nameservers", '["127.0.0.1:53", "127.0.0.2:5353"]'),
    ("listen", "smtp", '["127.0.0.1:65536"]'),
    ("listen", "smtp", '["bad host:25"]'),
    ("lmtp", "socket", '"no-such-folder/lmtp.sock"'),
    ("lmtp", "socket", f'"{_LONG}"'),
    ("tls", "certificate", '"missing-cert.pem"'),
    ("tls", "key", '"missing-key.pem"'),
    ("tls", "certificate", '"correo.toml"'),  # exists, but holds no certificate
    ("log", "level", '"loud"'),
    ("log", "file", '"no-such-folder/correo.log"'),
    ("mta_sts", "mode", '"strict"'),
    ("junk", "threshold", "nan"),
    ("junk", "dnsbl", '["bad zone"]'),
    ("junk", "dnsbl_timeout", "0.0"),
    ("junk", "rspamd_url", '"ftp://127.0.0.1"'),
    ("delivery", "postmaster", '"nobody"'),
    ("delivery", "quota", '"lots"'),
    ("delivery", "quota", '"1.5G"'),
    ("delivery", "quota_messages", "-1"),
    ("outbound", "port", "0"),
    ("outbound", "tls", '"always"'),
    ("outbound", "relayhost", '"[smtp.example.test"'),
    ("outbound", "transport", '["example.net"]'),
    ("outbound", "retry_initial", "nan"),
    ("outbound", "connect_timeout", "0.0"),
    ("outbound", "helo_name", '"bad name"'),
]


def _run(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=60,  # a value that slipped through starts a server: the test fails
        check=False,
    )


def _set(config: str, section: str, key: str, value: str) -> str:
    pattern = rf"(?m)^{re.escape(key)} = .*$"
    if re.search(pattern, config) and section != "outbound":
        return re.sub(pattern, lambda _m: f"{key} = {value}", config, count=1)
    return config + f"\n[{section}]\n{key} = {value}\n"


# More of the same kinds, checked in-process (each kind above also runs ``serve``).
MORE_BAD: list[tuple[str, str, str]] = [
    ("auth", "scram_sha256_iterations", "100"),  # below RFC 7677 §4's 4096
    ("auth", "scram_sha1_iterations", "100000000"),  # every client would pay for it
    ("reports", "dmarc_address", '"a b"'),
    ("reports", "tls_address", '"x@"'),
    ("reports", "contact", '"nobody"'),
    ("reports", "max_ratio", "1"),
    ("reports", "interval", "-1.0"),
    ("auth", "lockout_seconds", "inf"),
    ("auth", "max_delay", "-inf"),
    ("limits", "data_timeout", "1e300"),
    ("limits", "recipients", "0"),
    ("limits", "bad_commands", "0"),
    ("server", "hostname", '"-mail.example.test"'),
    ("server", "hostname", '"mail..example.test"'),
    ("server", "hostname", '"mail.example.test."'),
    ("smtp", "recipient_delimiter", '" "'),
    ("smtp", "recipient_delimiter", '"\\""'),
    ("smtp", "recipient_delimiter", '"\\\\"'),
    ("smtp", "recipient_delimiter", '"<>"'),
    ("dns", "nameservers", '["1.2.3.4:0"]'),
    ("dns", "nameservers", '["[::1"]'),
    ("listen", "smtp", '["127.0.0.1"]'),
    ("mta_sts", "max_age", "99999999"),
    ("junk", "folder", '""'),
    ("junk", "bayes_min_messages", "0"),
    ("delivery", "max_scripts", "0"),
    ("outbound", "max_connections", "0"),
    ("outbound", "mta_sts_port", "70000"),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str | BaseException]:
    """``correo serve`` once per case, a few at a time: its stderr, or why it failed.

    ``correo init`` runs once; every case copies that folder and changes one value.
    """
    root = tmp_path_factory.mktemp("cfg")
    template = root / "t"
    init = _run(template, "init", "--domain", "example.test", "--hostname", "localhost")
    assert init.returncode == 0, init.stderr
    config = (template / "correo.toml").read_text()
    config = re.sub(r'(?m)^(\w+) = \["127\.0\.0\.1:\d+"\]$', r'\1 = ["127.0.0.1:0"]', config)

    def case(index: int) -> str:
        section, key, value = BAD[index]
        data = root / f"c{index}"
        shutil.copytree(template, data)
        (data / "correo.toml").write_text(_set(config, section, key, value))
        result = _run(data, "serve")
        assert result.returncode == 2, (result.returncode, result.stderr)
        return result.stderr

    out: dict[int, str | BaseException] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {i: pool.submit(case, i) for i in range(len(BAD))}
        for i, future in futures.items():
            try:
                out[i] = future.result()
            except Exception as exc:  # reported by the case's own test
                out[i] = exc
    return out


@pytest.mark.parametrize("index", range(len(BAD)), ids=[f"{s}.{k}={v}" for s, k, v in BAD])
def test_bad_value_is_one_line_naming_the_key(
    outcomes: dict[int, str | BaseException], index: int
) -> None:
    section, key, _value = BAD[index]
    stderr = outcomes[index]
    if isinstance(stderr, BaseException):
        raise stderr
    lines = stderr.splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("correo: ") and f"[{section}] {key}" in lines[0], lines[0]
    assert "\r" not in lines[0]


@pytest.mark.parametrize(("section", "key", "value"), MORE_BAD)
def test_more_bad_values_name_the_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    text = render_default_config("localhost")
    (tmp_path / "correo.toml").write_text(_set(text, section, key, value))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    message = str(info.value)
    assert f"[{section}] {key}" in message and "\n" not in message and "\r" not in message


def test_init_refuses_a_bad_hostname(tmp_path: Path) -> None:
    result = _run(tmp_path / "d", "init", "--domain", "example.test", "--hostname", "a b")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "d" / "correo.toml").exists()


def _sections() -> list[tuple[str, str, object]]:
    """(section, key, default) of every key of every section dataclass of Config."""
    out = []
    for f in fields(Config):
        if f.default_factory is MISSING:  # type: ignore[misc]
            continue
        for key in fields(f.default_factory()):  # type: ignore[misc]
            out.append((f.name, key.name, key.default))
    return out


@pytest.mark.parametrize(("section", "key", "default"), _sections())
def test_every_key_has_a_rule_its_default_passes(section: str, key: str, default: object) -> None:
    assert check_value(section, key, default) is None
    if isinstance(default, float):
        for bad in (math.nan, math.inf, -math.inf, -1.0):
            assert check_value(section, key, bad) is not None, bad
    elif isinstance(default, int) and not isinstance(default, bool):
        assert check_value(section, key, -1) is not None
    elif isinstance(default, str):
        assert check_value(section, key, "x\r\ny") is not None


def test_values_are_stored_in_canonical_form(tmp_path: Path) -> None:
    text = render_default_config("mail.exämple.test")
    text = re.sub(r"(?m)^nameservers = .*$", 'nameservers = ["::1", "127.0.0.1"]', text)
    (tmp_path / "correo.toml").write_text(text)
    config = load_config(tmp_path)
    assert config.hostname == "mail.xn--exmple-cua.test"
    assert config.dns.nameservers == ("[::1]:53", "127.0.0.1:53")
