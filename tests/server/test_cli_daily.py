"""The CLI in daily use: where ``--data`` may go, ``CORREO_DATA``, password length,
and admin commands that say what they did.  Each runs the installed entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import make_data_dir

ROOT = Path(__file__).resolve().parents[2]
SIEVE = 'require "fileinto";\nif header :contains "subject" "x" { fileinto "INBOX"; }\n'


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``correo ARGS`` with nothing added (no ``--data`` in front)."""
    environ = {k: v for k, v in os.environ.items() if k != "CORREO_DATA"}
    return subprocess.run(
        [sys.executable, "-m", "correo.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "data"
    make_data_dir(folder)
    return folder


def users(data: Path) -> list[str]:
    listed = run("--data", str(data), "user", "list")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def test_version_is_the_package_version() -> None:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    r = run("--version")
    assert r.returncode == 0 and r.stdout == f"correo {version}\n"


def test_data_after_the_command_and_in_the_environment(data: Path) -> None:
    r = run("user", "add", "after@example.test", "--data", str(data), stdin="after-password\n")
    assert r.returncode == 0, r.stderr
    r = run("user", "add", "--data", str(data), "between@example.test", stdin="between-pass\n")
    assert r.returncode == 0, r.stderr
    r = run("domain", "list", env={"CORREO_DATA": str(data)})
    assert r.returncode == 0 and r.stdout.split() == ["example.test"], r.stderr
    # the option wins over the environment, wherever it is written
    r = run("domain", "list", "--data", str(data), env={"CORREO_DATA": "/nonexistent"})
    assert r.returncode == 0 and r.stdout.split() == ["example.test"], r.stderr
    assert {"after@example.test", "between@example.test"} <= set(users(data))


def test_short_passwords_are_refused(data: Path) -> None:
    r = run("--data", str(data), "user", "add", "short@example.test", stdin="nine-char\n")
    assert r.returncode == 2
    assert r.stderr == (
        "correo: password refused: 9 characters, fewer than [auth] min_password_length = 10\n"
    )
    assert "short@example.test" not in users(data)
    r = run("--data", str(data), "user", "passwd", "alice@example.test", stdin="tiny\n")
    assert r.returncode == 2 and "min_password_length = 10" in r.stderr
    r = run("--data", str(data), "user", "add", "ten@example.test", stdin="ten-chars!\n")
    assert r.returncode == 0, r.stderr


def test_min_password_length_is_configurable(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    make_data_dir(folder)
    config = (folder / "correo.toml").read_text()
    (folder / "correo.toml").write_text(
        config.replace("min_password_length = 10", "min_password_length = 16", 1)
    )
    r = run("--data", str(folder), "user", "add", "x@example.test", stdin="fifteen-chars-x\n")
    assert r.returncode == 2 and "min_password_length = 16" in r.stderr
    r = run(
        "--data", str(folder), "user", "passwd", "alice@example.test", stdin="sixteen-chars-xy\n"
    )
    assert r.returncode == 0, r.stderr


def test_admin_commands_say_what_they_did(data: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.sieve"
    script.write_text(SIEVE)
    cases = [
        (["domain", "add", "other.test"], "added domain other.test"),
        (["alias", "add", "info@example.test", "alice@example.test"], "added alias info@"),
        (["alias", "del", "info@example.test"], "removed alias info@example.test"),
        (
            ["sieve", "put", "alice@example.test", "main", str(script)],
            "stored script 'main' for alice@example.test",
        ),
        (["sieve", "activate", "alice@example.test", "main"], "'main' is now the active script"),
        (["sieve", "deactivate", "alice@example.test"], "filtering is off"),
        (["sieve", "delete", "alice@example.test", "main"], "deleted script 'main'"),
    ]
    for args, said in cases:
        r = run("--data", str(data), *args)
        assert r.returncode == 0, (args, r.stderr)
        assert said in r.stdout, (args, r.stdout)
