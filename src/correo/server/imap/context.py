"""ESEARCH results of SEARCH and SORT, and updating contexts (RFC 4731, RFC 5267).

``SEARCH``/``SORT RETURN (...)`` answer with one ESEARCH response: MIN, MAX, COUNT,
ALL (in the requested order for SORT, §3.1), PARTIAL windows (§4.4).  ``UPDATE``
(§4.3) keeps the search as a context of the selected mailbox: whenever the view
changes, the search is run again and the difference goes out as ADDTO and REMOVEFROM
(REMOVEFROM of expunged messages before their EXPUNGE, §4.3.4; ADDTO after EXISTS,
§4.3.3).  A session holds at most :data:`MAX_CONTEXTS` of them (``NO [NOUPDATE]``
beyond, §4.3.1); they end with the selection or CANCELUPDATE (§4.3.5).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from correo.imap import commands as c
from correo.imap.extended import CancelUpdate
from correo.imap.responses import quote_string, tagged, untagged
from correo.imap.returnopts import format_ordered
from correo.imap.search import SearchKey
from correo.imap.sequence import format_sequence
from correo.server.imap.fetch import FetchPlan, ensure_facts, render_message
from correo.server.imap.ordering import sort_uids
from correo.server.imap.searching import run_search
from correo.server.imap.streams import send_streams
from correo.server.imap.view import MailboxView

if TYPE_CHECKING:
    from correo.server.imap.session import ImapSession

__all__ = [
    "MAX_CONTEXTS",
    "Contexts",
    "SearchContext",
    "cmd_cancelupdate",
    "contexts_changed",
    "esearch_reply",
    "refused_update",
]

#: Updating contexts per session: each one runs its search again on every change of
#: the mailbox, so their number bounds that work (RFC 5267 §4.3.1 asks for at least 1).
MAX_CONTEXTS = 8


@dataclass
class SearchContext:
    """One UPDATE search: its program, order and last results (UIDs, in order)."""

    tag: str
    uid: bool
    program: SearchKey
    criteria: tuple[c.SortCriterion, ...] | None  # None: SEARCH, in mailbox order
    results: list[int]
    fetch: tuple[c.FetchAtt, ...] = ()


@dataclass
class Contexts:
    """The updating contexts of one selected mailbox (they end with the selection)."""

    items: dict[str, SearchContext] = field(default_factory=dict)

    def before_expunge(self, view: MailboxView, gone: Sequence[int]) -> list[bytes]:
        """REMOVEFROM for expunged messages, numbered before the EXPUNGEs that follow
        (RFC 5267 §4.3.4)."""
        dropped = set(gone)
        out: list[bytes] = []
        for ctx in self.items.values():
            if dropped.isdisjoint(ctx.results):
                continue
            new = [u for u in ctx.results if u not in dropped]
            line = _update_line(ctx, view, ctx.results, new)
            ctx.results = new
            if line:
                out.append(line)
        return out


def _number(ctx: SearchContext, view: MailboxView, uids: Sequence[int]) -> list[int]:
    return list(uids) if ctx.uid else [view.seq(u) or 0 for u in uids]


def _update_line(
    ctx: SearchContext, view: MailboxView, old: Sequence[int], new: Sequence[int]
) -> bytes:
    """``* ESEARCH (TAG "t") [UID] REMOVEFROM (...) ADDTO (...)``, or b"" if equal."""
    kept = set(new)
    removed = [u for u in old if u not in kept]
    before = set(old)
    added = [u for u in new if u not in before]
    if not removed and not added:
        return b""
    items: list[bytes] = []
    if ctx.criteria is None:
        # RFC 5267 §4.3.3/§4.3.4: position 0 for SEARCH results, kept in mailbox order
        if removed:
            items.append(b"REMOVEFROM (0 %s)" % _set(ctx, view, removed, ordered=False))
        if added:
            items.append(b"ADDTO (0 %s)" % _set(ctx, view, added, ordered=False))
    else:
        if removed:
            items.append(b"REMOVEFROM (%s)" % b" ".join(_removals(ctx, view, old, set(removed))))
        if added:
            items.append(b"ADDTO (%s)" % b" ".join(_additions(ctx, view, new, before)))
    return _head(ctx.tag, ctx.uid) + b" " + b" ".join(items) + b"\r\n"


def _set(ctx: SearchContext, view: MailboxView, uids: Sequence[int], *, ordered: bool) -> bytes:
    numbers = _number(ctx, view, uids)
    text = format_ordered(numbers) if ordered else format_sequence(numbers)
    return text.encode()


def _removals(
    ctx: SearchContext, view: MailboxView, old: Sequence[int], removed: set[int]
) -> list[bytes]:
    """Runs of removed results as (position, set) pairs, each position counted after
    the pairs before it were applied (RFC 5267 §4.3.4: processed in order)."""
    pairs: list[bytes] = []
    kept = 0
    run: list[int] = []
    for uid in [*old, 0]:
        if uid in removed:
            run.append(uid)
            continue
        if run:
            pairs.append(b"%d %s" % (kept + 1, _set(ctx, view, run, ordered=True)))
            run = []
        kept += 1
    return pairs


def _additions(
    ctx: SearchContext, view: MailboxView, new: Sequence[int], before: set[int]
) -> list[bytes]:
    """Runs of new results at their final positions, left to right (RFC 5267 §4.3.3):
    the results kept are in the same relative order in ``new``."""
    pairs: list[bytes] = []
    start = 0
    run: list[int] = []
    for index, uid in enumerate([*new, 0]):
        if uid != 0 and uid not in before:
            if not run:
                start = index + 1
            run.append(uid)
            continue
        if run:
            pairs.append(b"%d %s" % (start, _set(ctx, view, run, ordered=True)))
            run = []
    return pairs


def _head(tag: str, uid: bool) -> bytes:
    return b"* ESEARCH (TAG " + quote_string(tag) + b")" + (b" UID" if uid else b"")


async def _results(
    session: ImapSession, program: SearchKey, criteria: tuple[c.SortCriterion, ...] | None
) -> list[int]:
    view = session.view
    assert view is not None
    store = session.ctx.store
    matched = await run_search(store, view, program)
    if criteria is None:
        return matched
    return await sort_uids(store, view, matched, criteria)


async def esearch_reply(
    session: ImapSession,
    tag: str,
    cmd: c.Search | c.Sort,
    ordered: list[int],
    modseq: int | None,
) -> None:
    """The ESEARCH response of a SEARCH or SORT with RETURN options, and the context
    UPDATE asks for. ``ordered``: the matching UIDs in the requested order."""
    view = session.view
    assert view is not None and cmd.return_options is not None
    sort = isinstance(cmd, c.Sort)
    opts = set(cmd.return_options) - {"CONTEXT"}  # RFC 5267 §4.2: only a hint
    if not opts:
        opts = {"ALL"}  # RFC 4731 §3.1: RETURN () means ALL
    numbers = ordered if cmd.uid else [view.seq(u) or 0 for u in ordered]
    if modseq is not None and ordered and opts - {"SAVE", "UPDATE"} <= {"MIN", "MAX"}:
        # RFC 7162 §3.1.5: the MODSEQ of just the messages returned
        first, last = (ordered[0], ordered[-1]) if sort else (min(ordered), max(ordered))
        ends = [u for u, o in ((first, "MIN"), (last, "MAX")) if o in opts]
        modseq = max(view.info[u].modseq for u in ends) if ends else modseq
    if "SAVE" in opts:
        view.saved = sorted(ordered)  # RFC 5182
    if opts == {"SAVE"}:
        return  # RFC 5182 §2.1: SAVE alone returns no ESEARCH
    items: list[bytes] = []
    if numbers and "MIN" in opts:  # RFC 5267 §3.1: for SORT, the first in sort order
        items.append(b"MIN %d" % (numbers[0] if sort else min(numbers)))
    if numbers and "MAX" in opts:
        items.append(b"MAX %d" % (numbers[-1] if sort else max(numbers)))
    if "COUNT" in opts:
        items.append(b"COUNT %d" % len(numbers))
    if "ALL" in opts and numbers:  # RFC 4731 §3.1: omitted when nothing matched
        text = format_ordered(numbers) if sort else format_sequence(numbers)
        items.append(b"ALL " + text.encode())
    if cmd.partial is not None:  # RFC 5267 §4.4: positions in the (ordered) results
        low, high = cmd.partial
        window = numbers[low - 1 : high]
        text = (format_ordered(window) if sort else format_sequence(window)) or "NIL"
        items.append(b"PARTIAL (%d:%d %s)" % (low, high, text.encode()))
    if modseq is not None:
        items.append(b"MODSEQ %d" % modseq)
    session.write(_head(tag, cmd.uid) + b"".join(b" " + i for i in items) + b"\r\n")
    if "UPDATE" in opts:
        _open_context(session, tag, cmd, ordered)


def refused_update(session: ImapSession, tag: str, cmd: c.Search | c.Sort) -> bool:
    """RFC 5267 §4.3: UPDATE with the tag of a live context is BAD (written here)."""
    view = session.view
    if not cmd.return_options or "UPDATE" not in cmd.return_options:
        return False
    if view is None or view.contexts is None or tag not in view.contexts.items:
        return False
    session.write(tagged(tag, "BAD", "Tag already names an updating context", "CLIENTBUG"))
    return True


def _open_context(
    session: ImapSession, tag: str, cmd: c.Search | c.Sort, ordered: list[int]
) -> None:
    view = session.view
    assert view is not None
    if view.contexts is None:
        view.contexts = Contexts()
    if len(view.contexts.items) >= MAX_CONTEXTS:
        # RFC 5267 §4.3.1: the other return options were honoured; no updates
        session.write(untagged("NO", "Too many updating contexts", f'NOUPDATE "{tag}"'))
        return
    program = cmd.criteria if isinstance(cmd, c.Search) else cmd.search
    criteria = cmd.criteria if isinstance(cmd, c.Sort) else None
    view.contexts.items[tag] = SearchContext(
        tag, cmd.uid, program, criteria, list(ordered), cmd.update_fetch
    )


async def contexts_changed(session: ImapSession) -> None:
    """The selected mailbox changed (messages, flags): run every context's search again
    and send what entered or left its results (RFC 5267 §4.3)."""
    view = session.view
    if view is None or view.contexts is None or not view.contexts.items:
        return
    for ctx in list(view.contexts.items.values()):
        new = await _results(session, ctx.program, ctx.criteria)
        if session.view is not view or ctx.tag not in view.contexts.items:
            return  # the selection or the context went away meanwhile
        old, ctx.results = ctx.results, new
        if ctx.fetch:
            await _fetch_added(session, ctx, [u for u in new if u not in set(old)])
        line = _update_line(ctx, view, old, new)
        if line:
            session.write(line)


async def _fetch_added(session: ImapSession, ctx: SearchContext, added: Collection[int]) -> None:
    """RFC 5465 §7: FETCH the messages an ADDTO is about to add, before it."""
    view = session.view
    assert view is not None
    uids = [u for u in added if u in view.info]
    if not uids:
        return
    plan = FetchPlan.of(ctx.fetch, uid_command=ctx.uid, condstore=session.core.condstore)
    facts = await ensure_facts(session.ctx.store, view, uids) if plan.needs_facts else {}
    for uid in uids:
        out = await render_message(session.ctx.store, view, uid, plan, facts.get(uid))
        await send_streams(session, out, 0)


async def cmd_cancelupdate(session: ImapSession, tag: str, cmd: CancelUpdate) -> None:
    """RFC 5267 §4.3.5: stop the named contexts; an unknown tag is NO, as Dovecot does."""
    view = session.view
    assert view is not None
    contexts = view.contexts.items if view.contexts is not None else {}
    unknown = [t for t in cmd.tags if t not in contexts]
    if unknown:
        session.write(tagged(tag, "NO", "No updating context with that tag"))
        return
    for t in cmd.tags:
        contexts.pop(t, None)
    session.write(tagged(tag, "OK", "CANCELUPDATE completed"))
