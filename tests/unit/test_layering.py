"""Imports point inward (docs/architecture.md): every module of src/correo belongs to a
band, and a module imports only from its own band or a band further in.

    wire      sans-I/O protocol cores and formats: no effects, no correo beyond wire
    policy    pure decisions (mail authentication, MTA-STS, junk scoring), awaiting only
              the ports handed to them (the DNS Resolver protocol)
    core      services that own effects: store, directory, delivery, queue, DNS, config
    edge      what runs the services: listeners and sessions, HTTP, certificates, the
              command line, the test server

Relative imports count like absolute ones. Known violations are listed in ``EXCEPTIONS``
with the reason; an exception that no longer occurs fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "correo"

WIRE, POLICY, CORE, EDGE = 0, 1, 2, 3
BAND_NAMES = {WIRE: "wire", POLICY: "policy", CORE: "core", EDGE: "edge"}

#: Band of each module; the longest matching dotted prefix wins.
BANDS: dict[str, int] = {
    "correo": CORE,  # correo/__init__.py: the version
    "correo.sansio": WIRE,  # the plumbing every protocol core shares
    "correo.proxyproto": WIRE,  # the PROXY protocol header a load balancer sends
    "correo.smtp": WIRE,
    "correo.pop3": WIRE,
    "correo.imap": WIRE,
    "correo.managesieve": WIRE,
    "correo.sasl": WIRE,
    "correo.message": WIRE,
    "correo.sieve": WIRE,
    "correo.jmap": WIRE,
    "correo.mailauth": POLICY,
    "correo.mtasts": POLICY,
    "correo.dane": POLICY,
    "correo.junk": POLICY,
    "correo.ttlcache": POLICY,
    "correo.dns.api": POLICY,  # the Resolver protocol and its errors
    "correo.dns.fake": POLICY,  # the in-memory Resolver
    "correo.directory.addresses": POLICY,  # address normalisation, pure
    "correo.dns": CORE,  # the package re-exports the dnspython resolver
    "correo.store": CORE,
    "correo.directory": CORE,
    "correo.delivery": CORE,
    "correo.queue": CORE,
    "correo.reports": CORE,
    "correo.mua": CORE,
    "correo.config": CORE,
    "correo.config_rules": CORE,
    "correo.log": CORE,
    "correo.metrics": CORE,
    "correo.httpclient": CORE,  # the bounded HTTP client (MTA-STS, rspamd)
    "correo.webhooks": CORE,  # events into queued calls, the HTTP sender
    "correo.server": EDGE,
    "correo.web": EDGE,
    "correo.certs": EDGE,
    "correo.cli": EDGE,
    "correo.testing": EDGE,
}

#: Modules of the standard library and dependencies that do I/O or own threads.
EFFECTS = {"socket", "ssl", "sqlite3", "threading", "selectors", "subprocess", "aiohttp"}
EFFECTS |= {"psycopg", "dns"}  # "dns" is dnspython (correo's own is correo.dns)
EFFECTS |= {"os", "shutil", "tempfile", "fcntl"}  # files and descriptors: the services'
#: Forbidden per band; policy code may be async (it awaits the ports it is given).
FORBIDDEN = {WIRE: EFFECTS | {"asyncio"}, POLICY: EFFECTS}

#: (importing module prefix, imported module prefix) -> why it is still allowed.
#: Empty: the policy band does no I/O of its own; a new entry needs a reason here.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> tuple[str, str]:
    """(module, package) of a source file: ``correo.a.b`` and the package it sits in."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _imports(source: str, package: str) -> Iterator[str]:
    """Every module ``source`` imports, relative imports resolved against ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                pkg = package.split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([node.module] if node.module else []))
            # ``from pkg import sub`` imports the module pkg.sub when there is one.
            subs = [f"{base}.{a.name}" for a in node.names]
            subs = [s for s in subs if base.startswith("correo") and _is_module(s)]
            yield from subs
            if len(subs) < len(node.names):
                yield base


def _band(name: str) -> int | None:
    best = max((p for p in BANDS if name == p or name.startswith(p + ".")), key=len, default="")
    return BANDS.get(best)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations() -> tuple[list[str], set[tuple[str, str]]]:
    found: list[str] = []
    used: set[tuple[str, str]] = set()
    for path in sorted(SRC.rglob("*.py")):
        module, _ = _module_name(path)
        band = _band(module)
        assert band is not None, f"{module} has no band: add it to BANDS"
        for name in _imports(path.read_text(), _module_name(path)[1]):
            if name.startswith("correo"):
                target = _band(name)
                assert target is not None, f"{module}: imports unknown {name}"
                bad = target > band
                what = f"{BAND_NAMES[band]} {module} imports {BAND_NAMES[target]} {name}"
            else:
                bad = name.split(".")[0] in FORBIDDEN.get(band, set())
                what = f"{BAND_NAMES[band]} {module} imports {name}"
            if not bad:
                continue
            waived = [k for k in EXCEPTIONS if _matches(module, k[0]) and _matches(name, k[1])]
            if waived:
                used.update(waived)
            else:
                found.append(what)
    return found, used


def test_every_module_imports_only_inward() -> None:
    found, _ = _violations()
    assert not found, "\n".join(found)


def test_no_stale_exceptions() -> None:
    _, used = _violations()
    assert set(EXCEPTIONS) <= used, f"no longer needed: {sorted(set(EXCEPTIONS) - used)}"


def test_relative_imports_are_resolved() -> None:
    """``from . import x`` and ``from ..x import y`` land on the right absolute names."""
    source = (
        "from . import fetch, not_a_module\n"
        "from .. import context\n"
        "from ..context import ServerContext\n"
        "from ...store import api\n"
        "from correo.log import Logger\n"
        "import ssl\n"
    )
    assert list(_imports(source, "correo.server.imap")) == [
        "correo.server.imap.fetch",
        "correo.server.imap",
        "correo.server.context",
        "correo.server.context",
        "correo.store.api",
        "correo.log",
        "ssl",
    ]


def test_a_relative_import_outward_is_caught() -> None:
    """The band check sees through relative imports (a wire module reaching the store)."""
    names = list(_imports("from ..store import api\n", "correo.smtp"))
    assert names == ["correo.store.api"]
    assert _band(names[0]) == CORE > (_band("correo.smtp.server") or 0)
