"""Sessions share one message list per mailbox state and still see exactly what they would alone.

Invariant: for any mailbox and any batch of changes, a view that catches up by adopting
another session's published snapshot sends the same untagged responses and ends with the
same messages as a view that applies the changes to its own copy; a view holding back
an expunge never shares, and a session's own STORE never shows in another's view.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.server.imap.shared import SharedMailboxes, Snapshot
from correo.server.imap.view import MailboxView
from correo.store.api import Changes, MessageInfo


def _view(messages: list[MessageInfo], modseq: int, shared: SharedMailboxes | None) -> MailboxView:
    source: list[MessageInfo] | Snapshot = messages
    if shared is not None:
        snap = shared.snapshot("a", "INBOX", 7, modseq)
        if snap is None:
            snap = shared.publish(
                "a",
                "INBOX",
                7,
                Snapshot([m.uid for m in messages], {m.uid: m for m in messages}, modseq),
            )
        source = snap
    return MailboxView(
        "a",
        "INBOX",
        read_only=False,
        uidvalidity=7,
        uidnext=(messages[-1].uid + 1) if messages else 1,
        highestmodseq=modseq,
        messages=source,
        first_recent=10_000,
        shared=shared,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[MessageInfo], Changes]:
    uids = sorted(draw(st.sets(st.integers(1, 60), max_size=25)))
    flags = st.sampled_from([(), ("\\Seen",), ("\\Seen", "\\Flagged"), ("$Work",)])
    messages = [MessageInfo(u, 100, 0.0, draw(flags), u) for u in uids]
    base = 100
    gone = sorted(draw(st.sets(st.sampled_from(uids), max_size=5))) if uids else []
    changed = [
        MessageInfo(u, 100, 0.0, draw(flags), base + i + 1)
        for i, u in enumerate(draw(st.sets(st.sampled_from(uids), max_size=8)) if uids else [])
        if u not in gone
    ]
    top = (uids[-1] if uids else 0) + 1
    new = [
        MessageInfo(top + i, 100, 0.0, (), base + 50 + i) for i in range(draw(st.integers(0, 3)))
    ]
    highest = base + 60 + len(gone)
    return messages, Changes(
        highest, tuple(sorted(changed + new, key=lambda m: m.uid)), tuple(gone)
    )


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.booleans(), st.booleans())
def test_adopting_a_shared_snapshot_equals_applying_changes(
    scenario: tuple[list[MessageInfo], Changes], qresync: bool, condstore: bool
) -> None:
    messages, changes = scenario
    alone = _view(messages, 99, None)
    shared = SharedMailboxes()
    first, second = _view(messages, 99, shared), _view(messages, 99, shared)
    assert first.uids is second.uids  # one list for both sessions
    kwargs = {"allow_expunge": True, "qresync": qresync, "condstore": condstore}
    expected = alone.catch_up(changes, **kwargs)
    assert first.catch_up(changes, **kwargs) == expected  # builds and publishes
    assert second.catch_up(changes, **kwargs) == expected  # adopts what first published
    assert first.uids is second.uids
    assert second.uids == alone.uids
    assert second.info == alone.info
    assert second.highestmodseq == alone.highestmodseq == changes.highestmodseq


def test_a_held_back_expunge_keeps_a_private_view_until_announced() -> None:
    shared = SharedMailboxes()
    messages = [MessageInfo(u, 10, 0.0, (), u) for u in (1, 2, 3)]
    fetching, idle = _view(messages, 3, shared), _view(messages, 3, shared)
    changes = Changes(4, (), (2,))
    assert idle.catch_up(changes, allow_expunge=True, qresync=False, condstore=False) == [
        b"* 2 EXPUNGE\r\n"
    ]
    # during FETCH no EXPUNGE may be sent (RFC 9051 §7.5.1): numbers stay, nothing shared
    assert fetching.catch_up(changes, allow_expunge=False, qresync=False, condstore=False) == []
    assert fetching.uids == [1, 2, 3] and fetching.uids is not idle.uids
    later = fetching.catch_up(
        Changes(4, (), ()), allow_expunge=True, qresync=False, condstore=False
    )
    assert later == [b"* 2 EXPUNGE\r\n"]
    assert fetching.uids is idle.uids


def test_own_store_does_not_leak_into_another_sessions_view() -> None:
    shared = SharedMailboxes()
    messages = [MessageInfo(u, 10, 0.0, (), u) for u in (1, 2)]
    mine, other = _view(messages, 2, shared), _view(messages, 2, shared)
    stored = MessageInfo(1, 10, 0.0, ("\\Seen",), 3)
    mine.update_flags([stored])
    assert mine.info[1].flags == ("\\Seen",)
    assert other.info[1].flags == ()
    assert mine.highestmodseq == 2  # the feed still tells what others did meanwhile
    # the change feed then brings the STORE: the storing session has nothing to say,
    # the other is told, and both end on one shared list again
    changes = Changes(3, (stored,), ())
    assert mine.catch_up(changes, allow_expunge=True, qresync=False, condstore=False) == []
    assert other.catch_up(changes, allow_expunge=True, qresync=False, condstore=False) == [
        b"* 1 FETCH (FLAGS (\\Seen))\r\n"
    ]
    assert mine.info is other.info
