"""LIST and LSUB answers from an account's names (RFC 9051 §6.3.9, RFC 5258, RFC 5819).

The work is linear in the number of names times the depth of the hierarchy: children
are found by bisecting the sorted names (never by scanning all names per mailbox),
each name goes through the patterns once (:mod:`correo.imap.wildcard`), and one pass
over a name also answers for its superior names. An account may still hold thousands
of long names, so the answers come from generators that yield :data:`PAUSE` every few
milliseconds of work: the session then lets the other connections run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from correo.imap.commands import List
from correo.imap.responses import Item, Raw, list_response
from correo.imap.wildcard import Wildcard
from correo.server.imap.names import DELIMITER, descendants, has_descendant
from correo.store.api import MailboxInfo

__all__ = ["PAUSE", "Listed", "list_lines", "lsub_lines"]

#: Yielded when the session should let other connections run before going on.
PAUSE = None
#: Work between two pauses: characters through the automaton, plus a few per name.
#: About a millisecond or two of CPU, far below the 100 ms the loop may be held.
_BUDGET = 4000
_PER_NAME = 8


@dataclass(frozen=True, slots=True)
class Listed:
    """One ``* LIST`` line; ``status`` names the mailbox whose STATUS follows it."""

    line: bytes
    status: str | None = None


class _Pacer:
    """Counts work done since the last pause."""

    __slots__ = ("last", "match", "spent")

    def __init__(self, match: Wildcard) -> None:
        self.match, self.spent, self.last = match, 0, 0

    def due(self, names: int = 1) -> bool:
        self.spent += _PER_NAME * names
        work = self.spent + self.match.steps
        if work - self.last < _BUDGET:
            return False
        self.last = work
        return True


def _superiors(name: str) -> Iterator[str]:
    """``a``, ``a/b`` for ``a/b/c``: each superior name, shallowest first."""
    end = name.find(DELIMITER)
    while end >= 0:
        yield name[:end]
        end = name.find(DELIMITER, end + 1)


def list_lines(
    boxes: Sequence[MailboxInfo],
    subscriptions: Sequence[str] | None,
    match: Wildcard,
    cmd: List,
    utf8: bool,
) -> Iterator[Listed | None]:
    """The ``* LIST`` lines of ``cmd``, in name order, with :data:`PAUSE` in between.

    ``subscriptions``: every subscribed name, needed when the selection holds
    SUBSCRIBED (RFC 5258 §3.1); otherwise ``boxes`` say which are subscribed.
    """
    selection, options = cmd.selection, cmd.return_options
    want_subscribed = "SUBSCRIBED" in selection
    want_special = "SPECIAL-USE" in selection
    recursive = want_subscribed and "RECURSIVEMATCH" in selection
    pacer = _Pacer(match)
    by_name = {b.name: b for b in boxes}
    box_names = sorted(by_name)
    matched: dict[str, bool] = {}
    if want_subscribed:
        # RFC 5258 §3.1: subscribed names, whether or not such a mailbox exists
        subscribed = sorted(subscriptions or ())
        for name in subscribed:
            if recursive:  # RFC 5258 §3.5: parents may be listed for their children
                marks = match.match_levels(name)
                for superior, hit in zip(_superiors(name), marks, strict=False):
                    matched[superior] = hit
                matched[name] = marks[-1]
            else:
                matched[name] = match.match(name)
            if pacer.due():
                yield PAUSE
        names = sorted(matched)
    else:
        subscribed = sorted(n for n, b in by_name.items() if b.subscribed)
        names = box_names
    is_subscribed = set(subscribed)
    status_wanted = "STATUS" in options and bool(cmd.status_items)  # RFC 5819
    status_wanted = status_wanted or bool(cmd.metadata)  # RFC 9590: METADATA after LIST
    for name in names:
        if pacer.due():
            yield PAUSE
        known = matched.get(name)
        if not (match.match(name) if known is None else known):
            continue
        box = by_name.get(name)
        extended: dict[str, Item] | None = None
        if recursive and has_descendant(subscribed, name):
            # RFC 5258 §3.5: a match with subscribed descendants carries CHILDINFO
            extended = {"CHILDINFO": [Raw(b'"SUBSCRIBED"')]}
        if want_subscribed and name not in is_subscribed:
            # RFC 5258 §3.5: only for a subscribed descendant the patterns hide;
            # servers SHOULD suppress redundant responses
            if extended is None:
                continue
            seen = 0
            hidden = False
            for n in descendants(subscribed, name):
                seen += 1
                if not matched[n]:
                    hidden = True
                    break
            pacer.due(seen)
            if not hidden:
                continue
        if want_special and (box is None or not box.special_use):
            continue
        flags = []
        if box is None:
            flags.append("\\NonExistent")  # RFC 5258 §3.4: a subscription outlived it
        else:
            has_children = has_descendant(box_names, name)  # RFC 5258 §4
            flags.append("\\HasChildren" if has_children else "\\HasNoChildren")
            if box.special_use and (not cmd.extended or "SPECIAL-USE" in options or want_special):
                flags.append(box.special_use)
        if name in is_subscribed and ("SUBSCRIBED" in options or want_subscribed):
            flags.append("\\Subscribed")  # RFC 5258 §3.4
        line = list_response(flags, DELIMITER, name, utf8, extended)
        yield Listed(line, name if status_wanted and box is not None else None)


def lsub_lines(subscriptions: Sequence[str], match: Wildcard, utf8: bool) -> Iterator[bytes | None]:
    """The ``* LSUB`` lines (RFC 3501 §6.3.9), in name order, with :data:`PAUSE` between."""
    pacer = _Pacer(match)
    listed: set[str] = set()
    unlisted: list[tuple[str, list[bool]]] = []
    for name in subscriptions:
        # RFC 9051 §6.3.7: subscribed names are listed even when the mailbox is gone
        marks = match.match_levels(name)
        if marks[-1]:
            listed.add(name)
        elif len(marks) > 1:
            unlisted.append((name, marks))
        if pacer.due():
            yield PAUSE
    hidden: set[str] = set()
    for name, marks in unlisted:
        # RFC 3501 §6.3.9: "%" hid a subscribed child; its matching parent is \Noselect
        for parent, hit in reversed(list(zip(_superiors(name), marks, strict=False))):
            if hit and parent not in listed:
                hidden.add(parent)
                break
        if pacer.due():
            yield PAUSE
    for name in sorted(listed | hidden):
        flags = ["\\Noselect"] if name in hidden else []
        yield list_response(flags, DELIMITER, name, utf8, kind="LSUB")
        if pacer.due():
            yield PAUSE
