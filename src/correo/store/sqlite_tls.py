"""TLS certificates of :class:`SqliteStore`: what ACME obtained, and the account keys.

A mixin like ``sqlite_mda.py``.  The table is small (one row per certificate and per
ACME account); it lives in mail.db so a backup of the store carries it along.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from correo.store.api import TlsCertificate

if TYPE_CHECKING:
    from typing import Any

    from correo.store.committer import AfterCommit

__all__ = ["TLS_SCHEMA", "TlsOps"]

TLS_SCHEMA = """
CREATE TABLE IF NOT EXISTS tls_certificates (
    name TEXT PRIMARY KEY, names TEXT NOT NULL, chain BLOB NOT NULL, key BLOB NOT NULL,
    updated REAL NOT NULL, renew_at REAL NOT NULL, failures INTEGER NOT NULL,
    last_error TEXT NOT NULL) WITHOUT ROWID;
"""

_COLUMNS = "name, names, chain, key, updated, renew_at, failures, last_error"


def row_to_cert(row: tuple[Any, ...]) -> TlsCertificate:
    """A table row (in ``_COLUMNS`` order) as the API's record; names are space-separated."""
    name, names, chain, key, updated, renew_at, failures, error = row
    return TlsCertificate(
        str(name),
        tuple(str(names).split()),
        bytes(chain),
        bytes(key),
        float(updated),
        float(renew_at),
        int(failures),
        str(error),
    )


def cert_to_row(cert: TlsCertificate) -> tuple[Any, ...]:
    return (
        cert.name,
        " ".join(cert.names),
        cert.chain,
        cert.key,
        cert.updated,
        cert.renew_at,
        cert.failures,
        cert.last_error,
    )


class TlsOps:
    """Mixed into SqliteStore, which provides the helpers declared here."""

    if TYPE_CHECKING:

        def _reader(self) -> sqlite3.Connection: ...
        async def _read(self, fn: Any, *args: Any) -> Any: ...
        async def _write(self, op: Any) -> Any: ...

    async def tls_cert_get(self, name: str) -> TlsCertificate | None:
        def read() -> TlsCertificate | None:
            row = (
                self._reader()
                .execute(f"SELECT {_COLUMNS} FROM tls_certificates WHERE name=?", (name,))
                .fetchone()
            )
            return None if row is None else row_to_cert(row)

        result: TlsCertificate | None = await self._read(read)
        return result

    async def tls_cert_put(self, cert: TlsCertificate) -> None:
        def op(conn: sqlite3.Connection) -> tuple[None, list[AfterCommit]]:
            conn.execute(
                f"INSERT OR REPLACE INTO tls_certificates ({_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                cert_to_row(cert),
            )
            return None, []

        await self._write(op)

    async def tls_cert_list(self) -> list[TlsCertificate]:
        def read() -> list[TlsCertificate]:
            rows = self._reader().execute(f"SELECT {_COLUMNS} FROM tls_certificates ORDER BY name")
            return [row_to_cert(r) for r in rows]

        result: list[TlsCertificate] = await self._read(read)
        return result
