"""The ``correo`` pytest plugin (entry point ``pytest11``): fixtures with a real server.

* ``correo_server`` — a fresh server for each test, stopped when the test ends;
* ``correo_server_session`` — one server for the whole session (per xdist worker).

Both start on free loopback ports in the test's temporary folder, so parallel workers
share nothing.  The server code is imported only when a test asks for a fixture: the
plugin costs other test suites nothing.  Disable it with ``-p no:correo``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from correo.testing.server import CorreoTestServer, Material

__all__ = ["correo_server", "correo_server_session"]


@pytest.fixture(scope="session")
def _correo_material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    """The certificate and DKIM keys every server of this session shares."""
    from correo.testing.server import Material

    return Material.create(tmp_path_factory.mktemp("correo-material"))


def _serve(
    tmp_path_factory: pytest.TempPathFactory, material: Material
) -> Iterator[CorreoTestServer]:
    from correo.testing.server import CorreoTestServer

    server = CorreoTestServer.start(tmp_path_factory.mktemp("correo"), material)
    try:
        yield server
    finally:  # a failing or interrupted test still stops its server
        server.stop()


@pytest.fixture
def correo_server(
    tmp_path_factory: pytest.TempPathFactory, _correo_material: Material
) -> Iterator[CorreoTestServer]:
    """A real correo for this test: SMTP, submission, IMAP, POP3 on loopback."""
    yield from _serve(tmp_path_factory, _correo_material)


@pytest.fixture(scope="session")
def correo_server_session(
    tmp_path_factory: pytest.TempPathFactory, _correo_material: Material
) -> Iterator[CorreoTestServer]:
    """One real correo shared by every test of the session that asks for it."""
    yield from _serve(tmp_path_factory, _correo_material)
