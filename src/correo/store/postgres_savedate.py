"""Save dates (RFC 8514 SAVEDATE) of the PostgreSQL store: the counterpart of
``sqlite_savedate.py``.  A BEFORE INSERT trigger stamps every new row of ``messages``
with the time of its insert; rows stored before the migration have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from correo.store.postgres_base import PgBase

__all__ = ["SAVEDATE_MIGRATION", "PgSaveDateOps"]

SAVEDATE_MIGRATION: Final = """
ALTER TABLE messages ADD COLUMN saved double precision;
CREATE FUNCTION messages_saved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.saved IS NULL THEN
        NEW.saved := extract(epoch FROM clock_timestamp());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_saved BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_saved();
"""


class PgSaveDateOps(PgBase):
    async def save_dates(self, account: str, mailbox: str, uids: Sequence[int]) -> dict[int, float]:
        rows = await self._fetchall(
            "SELECT x.uid, x.saved FROM messages x JOIN mailboxes m ON m.id = x.mailbox_id"
            " JOIN accounts a ON a.id = m.account_id WHERE a.name = %s AND m.name = %s"
            " AND x.uid = ANY(%s) AND x.saved IS NOT NULL",
            (account, mailbox, list(uids)),
        )
        return {int(uid): float(saved) for uid, saved in rows}
