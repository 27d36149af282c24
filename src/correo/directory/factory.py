"""The one place that chooses a directory: SQLite in the data folder, or PostgreSQL.

With ``[store] url`` the directory lives in the same database as the mail, shared by
every node, so ``correo user add`` on any node acts on the whole cluster; without it,
in DATA/directory.db as always.  The server and every CLI command go through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from correo.config import Config
from correo.directory.api import Directory, DirectoryError
from correo.directory.passwords import PasswordScheme
from correo.directory.sqlite import SqliteDirectory

__all__ = ["directory_for_data", "open_directory"]


def open_directory(
    config: Config, *, watch: bool = False, passwords: PasswordScheme | None = None
) -> Directory:
    """The configured directory, open.  ``watch``: the serving process (it keeps the
    shared directory's snapshot current with a listener thread)."""
    return _make(
        config.data_dir,
        config.store.url,
        recipient_delimiter=config.smtp.recipient_delimiter,
        remember_logins=config.auth.remember_logins,
        scram_iterations={
            "SCRAM-SHA-1": config.auth.scram_sha1_iterations,
            "SCRAM-SHA-256": config.auth.scram_sha256_iterations,
        },
        watch=watch,
        passwords=passwords,
    )


def directory_for_data(data_dir: Path) -> Directory:
    """The directory of a data folder, for commands that do not load the whole config."""
    from correo.store.api import StoreError
    from correo.store.factory import store_url

    try:
        url = store_url(data_dir)
    except StoreError as exc:
        raise DirectoryError(str(exc)) from None
    return _make(data_dir, url)


def _make(
    data_dir: Path,
    url: str,
    *,
    recipient_delimiter: str = "+",
    remember_logins: float = 0.0,
    scram_iterations: Mapping[str, int] | None = None,
    watch: bool = False,
    passwords: PasswordScheme | None = None,
) -> Directory:
    if not url:
        return SqliteDirectory(
            data_dir / "directory.db",
            recipient_delimiter=recipient_delimiter,
            remember_logins=remember_logins,
            scram_iterations=scram_iterations,
            passwords=passwords,
        )
    try:
        from correo.directory.postgres import PostgresDirectory
    except ImportError as exc:  # the optional dependency is missing
        raise DirectoryError(
            f"[store] url names PostgreSQL but psycopg is not installed ({exc}):"
            " pip install 'correo[postgresql]'"
        ) from None
    return PostgresDirectory(
        url,
        recipient_delimiter=recipient_delimiter,
        remember_logins=remember_logins,
        scram_iterations=scram_iterations,
        watch=watch,
        passwords=passwords,
    )
