"""TLS certificates of the PostgreSQL store: the counterpart of ``sqlite_tls.py``.

Shared by every node, so a certificate one node obtains is served by all of them.
"""

from __future__ import annotations

from correo.store.api import TlsCertificate
from correo.store.postgres_base import Conn, PgBase
from correo.store.postgres_commit import PgAfterCommit
from correo.store.sqlite_tls import cert_to_row, row_to_cert

__all__ = ["PgTlsOps"]

_COLUMNS = "name, names, chain, key, updated, renew_at, failures, last_error"


class PgTlsOps(PgBase):
    async def tls_cert_get(self, name: str) -> TlsCertificate | None:
        row = await self._fetchone(
            f"SELECT {_COLUMNS} FROM tls_certificates WHERE name = %s", (name,)
        )
        return None if row is None else row_to_cert(row)

    async def tls_cert_put(self, cert: TlsCertificate) -> None:
        async def op(conn: Conn) -> tuple[None, list[PgAfterCommit]]:
            await conn.execute(
                f"INSERT INTO tls_certificates ({_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
                " names = EXCLUDED.names, chain = EXCLUDED.chain, key = EXCLUDED.key,"
                " updated = EXCLUDED.updated, renew_at = EXCLUDED.renew_at,"
                " failures = EXCLUDED.failures, last_error = EXCLUDED.last_error",
                cert_to_row(cert),
            )
            return None, []

        await self._write(op)

    async def tls_cert_list(self) -> list[TlsCertificate]:
        rows = await self._fetchall(f"SELECT {_COLUMNS} FROM tls_certificates ORDER BY name")
        return [row_to_cert(r) for r in rows]
