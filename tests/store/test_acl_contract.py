"""Access control lists in the store (SQLite and PostgreSQL, RFC 4314): entries per
mailbox, the rights an identifier holds, what is shared with an account, and that
entries follow RENAME and end with DELETE or with either account."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.store.api import MailboxError
from tests.store.test_contract import Factory, factory, opened, run  # noqa: F401

A = "alice@x.test"
B = "bob@x.test"
C = "carol@x.test"


def test_acl_entries_rights_shared(factory: Factory, tmp_path: Path) -> None:  # noqa: F811
    async def go() -> None:
        store = await opened(factory, tmp_path)
        for account in (A, B, C):
            await store.create_account(account)
        await store.create_mailbox(A, "Team")
        await store.create_mailbox(A, "Private")
        assert await store.acl_get(A, "Team") == {}
        assert await store.acl_shared(B) == []
        await store.acl_set(A, "Team", B, "lrs")
        await store.acl_set(A, "Team", "anyone", "lw")
        assert await store.acl_get(A, "Team") == {B: "lrs", "anyone": "lw"}
        assert await store.acl_rights(A, "Team", B) == "lrsw"  # its own and anyone's
        assert await store.acl_rights(A, "Team", C) == "lw"
        assert await store.acl_rights(A, "Private", B) == ""
        assert await store.acl_rights(A, "Nope", B) == ""  # like a mailbox not shared
        assert await store.acl_shared(B) == [(A, "Team", "lrsw")]
        assert await store.acl_shared(A) == []  # never the owner's own mailboxes
        await store.acl_set(A, "Team", B, "lrswi")  # replaced
        assert (await store.acl_get(A, "Team"))[B] == "lrswi"
        with pytest.raises(MailboxError) as missing:
            await store.acl_set(A, "Nope", B, "l")
        assert missing.value.code == "NONEXISTENT"
        with pytest.raises(MailboxError):
            await store.acl_get(A, "Nope")
        await store.acl_set(A, "Team", "anyone", "")  # removed
        assert await store.acl_get(A, "Team") == {B: "lrswi"}
        await store.rename_mailbox(A, "Team", "Crew")  # the rights follow the mailbox
        assert await store.acl_shared(B) == [(A, "Crew", "ilrsw")]
        await store.close()
        store = await opened(factory, tmp_path)  # kept across a restart
        assert await store.acl_rights(A, "Crew", B) == "ilrsw"
        await store.delete_mailbox(A, "Crew")
        await store.create_mailbox(A, "Crew")  # a new mailbox of the old name is not shared
        assert await store.acl_rights(A, "Crew", B) == ""
        assert await store.acl_get(A, "Crew") == {}
        assert await store.acl_shared(B) == []
        # an account made again under a name holds none of the old grants
        await store.acl_set(A, "Crew", B, "lr")
        await store.acl_set(A, "Crew", C, "lr")
        await store.delete_account(B)
        await store.create_account(B)
        assert await store.acl_shared(B) == []
        assert await store.acl_shared(C) == [(A, "Crew", "lr")]
        await store.delete_account(A)  # nor does a new owner's mailbox of the name
        await store.create_account(A)
        await store.create_mailbox(A, "Crew")
        assert await store.acl_shared(C) == []
        await store.close()

    run(go())
