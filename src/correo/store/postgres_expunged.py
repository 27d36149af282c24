"""What an expunged message was: the counterpart of ``sqlite_expunged.py``.

A row trigger on ``messages`` keeps the digest of each deleted message (the body's own
SHA-256 key, or the digest an importer recorded), so ``Email/changes`` names the Email
an expunge removed on any node and after any restart.
"""

from __future__ import annotations

from typing import Final

from correo.store.postgres_base import PgBase

__all__ = ["EXPUNGED_MIGRATION", "PgExpungedOps"]

#: Migration 8 (``postgres_schema.py``).
EXPUNGED_MIGRATION: Final = """
CREATE TABLE expunged_digests (
    mailbox_id bigint NOT NULL, uid bigint NOT NULL, digest text NOT NULL,
    PRIMARY KEY (mailbox_id, uid));
CREATE FUNCTION expunged_digest_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO expunged_digests (mailbox_id, uid, digest)
        SELECT OLD.mailbox_id, OLD.uid, coalesce(d.digest, encode(b.digest, 'hex'))
        FROM blobs b LEFT JOIN blob_digests d ON d.blob_id = b.id WHERE b.id = OLD.blob_id
        ON CONFLICT (mailbox_id, uid) DO UPDATE SET digest = EXCLUDED.digest;
    RETURN NULL;
END $$;
CREATE TRIGGER expunged_digest_keep AFTER DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION expunged_digest_keep();
CREATE FUNCTION expunged_digest_gc() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM expunged_digests WHERE mailbox_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER expunged_digest_gc AFTER DELETE ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION expunged_digest_gc();
"""


class PgExpungedOps(PgBase):
    async def expunged_digests(self, account: str, mailbox: str, modseq: int) -> dict[int, str]:
        rows = await self._fetchall(
            "SELECT e.uid, d.digest FROM expunged e JOIN expunged_digests d"
            " ON d.mailbox_id = e.mailbox_id AND d.uid = e.uid"
            " JOIN mailboxes x ON x.id = e.mailbox_id JOIN accounts a ON a.id = x.account_id"
            " WHERE a.name = %s AND x.name = %s AND e.modseq > %s",
            (account, mailbox, modseq),
        )
        return {int(uid): str(digest) for uid, digest in rows}
