"""``correo --data DIR store search-index on|off|status``: the PostgreSQL trigram index.

Without it (the default since migration 48) SEARCH TEXT/BODY scans a mailbox's texts
with ``strpos``, about 0.15 s of database CPU per 10,000 messages, and every delivery
saves about 0.5 ms of database CPU. With it a rare word is found in about 25 ms: worth
it where users search often, in large mailboxes (docs/cluster.md). The index is
built and dropped CONCURRENTLY, so a live store keeps taking mail meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from correo.cli.admin import AdminError
from correo.store.api import StoreError
from correo.store.factory import store_url

__all__ = ["cmd_search_index", "register"]

_SAYS = {
    "on": "on: SEARCH TEXT/BODY uses the trigram index; each delivery pays for it",
    "off": "off: SEARCH TEXT/BODY scans the mailbox's texts",
    "invalid": "invalid: a build is under way or failed; run 'search-index on' again",
}


def register(ssub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``search-index`` to the ``store`` command's subcommands."""
    a = ssub.add_parser(
        "search-index",
        help="turn PostgreSQL's trigram index for SEARCH TEXT/BODY on or off",
        description="PostgreSQL only. 'on' builds a trigram GIN index (pg_trgm) on the"
        " search text without locking out deliveries: a rare word is then found in about"
        " 25 ms instead of a scan (about 0.2 s per 10,000 messages), and every delivery"
        " costs about 0.5 ms more database CPU. 'off' drops it. Running nodes notice"
        " within a minute. See docs/cluster.md.",
    )
    a.add_argument("state", choices=("on", "off", "status"), help="on, off, or status")
    a.set_defaults(func=cmd_search_index)


def cmd_search_index(args: argparse.Namespace) -> int:
    try:
        url = store_url(args.data_dir)
    except StoreError as exc:
        raise AdminError(str(exc)) from None
    if not url:
        raise AdminError(
            "the store is the embedded one (no [store] url): its search index is always on"
        )
    try:
        import psycopg  # noqa: F401  (the optional dependency)
    except ImportError as exc:
        raise AdminError(
            f"psycopg is not installed ({exc}): pip install 'correo[postgresql]'"
        ) from None
    started = time.monotonic()
    state = asyncio.run(_apply(url, args.state))
    took = f" ({time.monotonic() - started:.1f} s)" if args.state != "status" else ""
    print(f"search index {_SAYS[state]}{took}")
    return 0


async def _apply(url: str, wanted: str) -> str:
    """Bring the schema up to date (a later migration must not undo the operator's
    choice), then create or drop the index on an autocommit connection."""
    import psycopg

    from correo.store.postgres_schema import (
        SearchIndexError,
        migrate,
        search_index,
        set_search_index,
    )

    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise AdminError(f"cannot connect to the store: {_line(exc)}") from None
    try:
        await migrate(conn)
        if wanted == "status":
            return await search_index(conn)
        return await set_search_index(conn, wanted == "on")
    except SearchIndexError as exc:
        raise AdminError(str(exc)) from None
    except (psycopg.Error, RuntimeError) as exc:
        raise AdminError(f"search-index {wanted}: {_line(exc)}") from None
    finally:
        await conn.close()


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
