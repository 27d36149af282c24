"""COPY and MOVE between two accounts (shared mailboxes, RFC 4314), run against every
store: new UIDs in the target, flags filtered, the target account's quota charged all
or nothing (RFC 9208 §4.4), the bodies readable from both sides and each side's
change feed told."""

from __future__ import annotations

from pathlib import Path

import pytest

from correo.store.api import (
    INBOX,
    DeliveryTarget,
    MailboxError,
    QuotaExceededError,
)
from tests.store.test_contract import Factory, factory, opened, put, read_all, run

__all__ = ["factory"]

A = "alice@x.test"
B = "bob@x.test"


def _no_keywords(flags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f for f in flags if f.startswith("\\") and f != "\\Deleted")


def test_copy_and_move_between_accounts(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            for account in (A, B):
                await store.create_account(account)
            await store.create_mailbox(A, "Team")
            for n in range(3):
                await put(store, b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n), [DeliveryTarget(B)])
            msgs = await store.list_messages(B)
            uids = [m.uid for m in msgs]
            await store.store_flags(B, INBOX, uids, "add", ["\\Seen", "\\Deleted", "$Work"])
            before = await store.mailbox_state(A, "Team")
            pairs = await store.copy_across(B, INBOX, uids[:2], A, "Team", keep_flags=_no_keywords)
            assert [p[0] for p in pairs] == uids[:2]
            assert [p[1] for p in pairs] == [before.uidnext, before.uidnext + 1]
            team = await store.list_messages(A, "Team")
            assert [m.flags for m in team] == [("\\Seen",), ("\\Seen",)]
            assert len(await store.list_messages(B)) == 3  # a copy leaves the source
            body = await read_all(store.read_message(A, "Team", pairs[0][1]))
            assert body.endswith(b"body 0\r\n"), body
            changes = await store.changes_since(A, "Team", before.highestmodseq)
            assert [m.uid for m in changes.messages] == [p[1] for p in pairs]
            assert (await store.get_quota(A)).used_messages == 2
            assert (await store.get_quota(B)).used_messages == 3
            # a MOVE takes them out of the source; the owner changes, so does the charge
            src_state = await store.mailbox_state(B, INBOX)
            moved = await store.copy_across(B, INBOX, [uids[2]], A, "Team", move=True)
            assert len(moved) == 1
            assert [m.uid for m in await store.list_messages(B)] == uids[:2]
            gone = await store.changes_since(B, INBOX, src_state.highestmodseq)
            assert gone.expunged == (uids[2],)
            team = await store.list_messages(A, "Team")
            assert team[-1].flags == ("$Work", "\\Deleted", "\\Seen")  # none filtered
            assert (await store.get_quota(A)).used_messages == 3
            assert (await store.get_quota(B)).used_messages == 2
            # the copies outlive the source's expunge (shared bodies are counted)
            await store.expunge(B, INBOX, uids[:2])
            body = await read_all(store.read_message(A, "Team", pairs[1][1]))
            assert body.endswith(b"body 1\r\n"), body
            # and go back the other way
            back = await store.copy_across(A, "Team", [pairs[0][1]], B, INBOX)
            assert len(back) == 1 and len(await store.list_messages(B)) == 1
            # missing mailboxes on either side; unknown UIDs copy nothing
            for src, dst in (((A, "Nope"), (B, INBOX)), ((A, "Team"), (B, "Nope"))):
                with pytest.raises(MailboxError) as exc:
                    await store.copy_across(src[0], src[1], [1], dst[0], dst[1])
                assert exc.value.code == "NONEXISTENT"
            assert await store.copy_across(A, "Team", [9999], B, INBOX) == []
        finally:
            await store.close()

    run(go())


def test_quota_of_the_target_account_is_charged_whole(factory: Factory, tmp_path: Path) -> None:
    async def go() -> None:
        store = await opened(factory, tmp_path)
        try:
            for account in (A, B):
                await store.create_account(account)
            await store.create_mailbox(A, "Team")
            for n in range(3):
                await put(store, b"Subject: q%d\r\n\r\n" % n + b"x" * 500, [DeliveryTarget(B)])
            uids = [m.uid for m in await store.list_messages(B)]
            await store.set_quota(A, None, 2)
            with pytest.raises(QuotaExceededError):
                await store.copy_across(B, INBOX, uids, A, "Team")
            with pytest.raises(QuotaExceededError):  # a MOVE to another owner adds too
                await store.copy_across(B, INBOX, uids, A, "Team", move=True)
            assert await store.list_messages(A, "Team") == []  # nothing of either
            assert len(await store.list_messages(B)) == 3
            assert (await store.get_quota(A)).used_messages == 0
            assert len(await store.copy_across(B, INBOX, uids[:2], A, "Team", move=True)) == 2
            assert (await store.get_quota(A)).used_messages == 2
            with pytest.raises(QuotaExceededError):
                await store.copy_across(B, INBOX, uids[2:], A, "Team")
            # within one account a MOVE adds nothing, even at the limit
            await store.create_mailbox(A, "Other")
            team = [m.uid for m in await store.list_messages(A, "Team")]
            assert len(await store.copy_across(A, "Team", team, A, "Other", move=True)) == 2
        finally:
            await store.close()

    run(go())
