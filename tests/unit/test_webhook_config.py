"""``[[webhooks]]`` in correo.toml: what loads, and one clear line for what does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from correo.config import ConfigError, load_config

GOOD = """
[[webhooks]]
url = "https://app.example.test/mail"
events = ["received", "bounced"]
addresses = ["support@example.test"]
secret = "s"

[[webhooks]]
url = "http://127.0.0.1:8080/events"
events = ["delivered", "deferred"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "correo.toml").write_text(text)
    return tmp_path


def test_entries_load_with_their_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    first, second = config.webhooks
    assert first.url == "https://app.example.test/mail"
    assert first.events == ("received", "bounced")
    assert first.addresses == ("support@example.test",) and first.secret == "s"
    assert second.give_up == 86400.0 and second.inline_limit == 64 * 1024
    assert load_config(write(tmp_path, "")).webhooks == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('url = "ftp://x"\nevents = ["received"]', "url: must be an http:// or https://"),
        ('url = "http://x.test/"\nevents = ["opened"]', "'opened': must be delivered"),
        ('url = "http://x.test/"', "needs a url and its events"),
        (
            'url = "http://x.test/"\nevents = ["bounced"]\naddresses = ["a@b.test"]',
            "needs received",
        ),
        ('url = "http://x.test/"\nevents = ["received"]\ncolour = 1', "unknown key 'colour'"),
        ('url = "http://x.test/"\nevents = ["received"]\ntimeout = 0', "timeout: must be more"),
        ('url = "http://x.test/"\nevents = ["received"]\naddresses = ["nobody"]', "addresses"),
    ],
)
def test_bad_entries_are_refused(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        load_config(write(tmp_path, f"[[webhooks]]\n{entry}\n"))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_command_line_says_one_line(tmp_path: Path) -> None:
    write(tmp_path, '[[webhooks]]\nurl = "ftp://x"\nevents = ["received"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "--data", str(tmp_path), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "must be an http:// or https://" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
