"""The wire-format band imports no I/O, store, server or config (architecture rule)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "correo"
PURE = ["smtp", "pop3", "sasl", "message", "sieve", "imap", "jmap"]
FORBIDDEN = {"asyncio", "socket", "ssl", "sqlite3", "threading", "selectors", "subprocess"}
FORBIDDEN_CORREO = {
    "correo.store",
    "correo.server",
    "correo.config",
    "correo.directory",
    "correo.delivery",
    "correo.cli",
}


@pytest.mark.parametrize("package", PURE)
def test_pure_packages_import_no_effects(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path}: imports {name}"
                assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN_CORREO), (
                    f"{path}: imports {name}"
                )
