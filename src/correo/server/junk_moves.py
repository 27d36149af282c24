"""IMAP moves into and out of the junk folder train the filter (docs/mda.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from correo.delivery.junk import train_on_move

if TYPE_CHECKING:
    from correo.server.context import ServerContext

__all__ = ["on_imap_move"]


async def on_imap_move(
    ctx: ServerContext, account: str, source_mailbox: str, target_mailbox: str, uids: Sequence[int]
) -> None:
    """Train ``account``'s classifier from a move; ``uids`` are in ``target_mailbox``."""
    junk = ctx.mda.junk if ctx.mda is not None else None
    await train_on_move(junk, ctx.store, ctx.log, account, source_mailbox, target_mailbox, uids)
