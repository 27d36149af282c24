"""EXISTS of mailbox_state (SQLite and PostgreSQL): each store remembers a count under
the mailbox's marks (store/exists.py), so every change to which messages a mailbox
holds must move a mark, whichever instance (node, CLI process) made it."""

from __future__ import annotations

from pathlib import Path

from correo.store.api import DeliveryTarget, MailStore
from correo.store.sqlite import SqliteStore
from tests.store.test_contract import Factory, factory, opened, put, run  # noqa: F401

A = "a@x.test"


async def _exists(store: MailStore, box: str = "INBOX") -> int:
    """EXISTS as mailbox_state answers it, checked against a listing."""
    state = await store.mailbox_state(A, box)
    assert state.exists == len(await store.list_messages(A, box))
    return state.exists


def test_exists_follows_every_change_from_either_instance(
    factory: Factory,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def go() -> None:
        reader = await opened(factory, tmp_path / "node1")
        if isinstance(reader, SqliteStore):  # one SQLite file: the second opens it too
            writer: MailStore = SqliteStore(tmp_path / "node1")
            await writer.open()
        else:
            writer = await opened(factory, tmp_path / "node2")
        target = [DeliveryTarget(A)]
        for i in range(3):
            await put(writer, b"Subject: m%d\r\n\r\nbody\r\n" % i, target)
        assert await _exists(reader) == 3
        assert await _exists(reader) == 3  # the remembered count
        await put(writer, b"Subject: m3\r\n\r\nbody\r\n", target)
        assert await _exists(reader) == 4
        assert await writer.expunge(A, "INBOX", [2]) == 1
        assert await _exists(reader) == 3
        await writer.create_mailbox(A, "Box")
        assert await _exists(reader, "Box") == 0
        await writer.copy_messages(A, "INBOX", [1], "Box")
        assert (await _exists(reader), await _exists(reader, "Box")) == (3, 1)
        await writer.copy_messages(A, "INBOX", [3, 4], "Box", move=True)
        assert (await _exists(reader), await _exists(reader, "Box")) == (1, 3)
        await writer.delete_mailbox(A, "Box")  # made again: a new mailbox, empty
        await writer.create_mailbox(A, "Box")
        assert await _exists(reader, "Box") == 0
        await writer.close()
        await reader.close()

    run(go())
