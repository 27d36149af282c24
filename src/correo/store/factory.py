"""The one place that chooses a store: SQLite in the data folder, or PostgreSQL.

``[store] url`` in correo.toml names a PostgreSQL database; absent or empty, mail stays
in the embedded SQLite store under DATA/store.  The server and every CLI command go
through here, so a node set up with ``correo init --store`` acts on the shared database
whichever command runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from correo.config import Config
from correo.store.api import MailStore, StoreError

__all__ = ["open_store", "store_for_data", "store_url"]


def open_store(config: Config, *, recover: bool = False) -> MailStore:
    """The configured store, not yet opened (``recover``: the serving process)."""
    settings = config.store
    folder = config.path(settings.body_cache_dir) if settings.body_cache_dir else None
    return _make(
        config.data_dir, settings.url, recover=recover, cache=(settings.body_cache_mb, folder)
    )


def store_url(data_dir: Path) -> str:
    """``[store] url`` of DATA/correo.toml ("" when absent, or when there is no config).

    Read on its own, so admin commands keep working on a config another key of which a
    newer correo added; ``correo serve`` validates the whole file.
    """
    try:
        with open(data_dir / "correo.toml", "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        return ""
    except tomllib.TOMLDecodeError as exc:
        raise StoreError(f"{data_dir / 'correo.toml'}: {exc}") from None
    section = raw.get("store", {})
    url = section.get("url", "") if isinstance(section, dict) else ""
    if not isinstance(url, str):
        raise StoreError(f"{data_dir / 'correo.toml'}: [store] url must be a string")
    return url


def store_for_data(data_dir: Path, *, recover: bool = False) -> MailStore:
    """The store of a data folder, for commands that do not load the whole config."""
    return _make(data_dir, store_url(data_dir), recover=recover)


def _make(
    data_dir: Path, url: str, *, recover: bool, cache: tuple[int, Path | None] = (0, None)
) -> MailStore:
    """``cache``: the node's body cache on disk, MiB and folder (PostgreSQL only)."""
    root = data_dir / "store"
    if not url:
        from correo.store.sqlite import SqliteStore

        return SqliteStore(root, recover=recover)
    try:
        from correo.store.postgres import PostgresStore
    except ImportError as exc:  # the optional dependency is missing
        raise StoreError(
            f"[store] url names PostgreSQL but psycopg is not installed ({exc}):"
            " pip install 'correo[postgresql]'"
        ) from None
    return PostgresStore(
        url, root, recover=recover, body_cache_mb=cache[0], body_cache_dir=cache[1]
    )
