"""SORT and THREAD (RFC 5256) over the envelopes stored with each message.

The envelopes are read on the event loop; ordering and threading them costs time that
grows with the mailbox and with what senders wrote (References chains, subjects), so it
runs in a worker thread and never recurses along a chain a sender could make deep.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence

from correo.delivery.facts import tree_of
from correo.imap.commands import SortCriterion
from correo.message.encoded import decode_header
from correo.message.headers import parse_fields
from correo.message.mime import Address
from correo.message.structure import Envelope
from correo.message.subject import base_subject, is_reply_or_forward
from correo.server.imap.fetch import ensure_facts, read_range
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore, MessageInfo

__all__ = ["base_subject", "sort_uids", "thread_uids"]

# i;ascii-casemap (RFC 4790 §9.2), the collation of RFC 5256 §2.1: a-z as A-Z, nothing else
_CASEMAP = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


# octets of stored trees loaded in one turn of the loop: about 4 ms (facts.tree_of)
_TURN = 64 * 1024


def _first_mailbox(addrs: tuple[Address, ...] | None, display: bool) -> str:
    """RFC 5256 §3: the addr-mailbox of the first address (a group's name when the list
    starts with a group); RFC 5957 §3: DISPLAY* use its display name, else mailbox@host."""
    for a in addrs or ():
        if display and a.name:
            return decode_header(a.name).translate(_CASEMAP)
        text = a.mailbox or ""
        if display and a.host:
            text += "@" + a.host
        return text.translate(_CASEMAP)
    return ""


async def _envelopes(
    store: MailStore, view: MailboxView, uids: Sequence[int]
) -> dict[int, tuple[Envelope, float | None]]:
    facts = await ensure_facts(store, view, uids)
    out: dict[int, tuple[Envelope, float | None]] = {}
    loaded = 0  # octets of tree JSON loaded in this turn of the event loop
    for uid, f in facts.items():
        loaded += len(f.tree)
        if loaded > _TURN:
            loaded = 0
            await asyncio.sleep(0)  # let other sessions run
        tree = await tree_of(f)
        out[uid] = (tree.envelope or Envelope(), f.sent_date)
    return out


async def sort_uids(
    store: MailStore, view: MailboxView, uids: Sequence[int], criteria: Sequence[SortCriterion]
) -> list[int]:
    envs = await _envelopes(store, view, uids)
    seqs = {u: view.seq(u) or 0 for u in uids}
    infos = {u: view.info[u] for u in uids}
    return await asyncio.to_thread(_sort, uids, criteria, envs, seqs, infos)


def _sort(
    uids: Sequence[int],
    criteria: Sequence[SortCriterion],
    envs: dict[int, tuple[Envelope, float | None]],
    seqs: dict[int, int],
    infos: dict[int, MessageInfo],
) -> list[int]:
    ordered = sorted(uids, key=lambda u: seqs[u])  # final tie-break: sequence number
    for crit in reversed(criteria):  # stable sorts, last criterion first

        def key(uid: int, crit: SortCriterion = crit) -> tuple[float, str]:
            env, sent = envs.get(uid, (Envelope(), None))
            info = infos[uid]
            match crit.key:
                case "ARRIVAL":
                    return info.internal_date, ""
                case "DATE":
                    return (sent if sent is not None else info.internal_date), ""
                case "SIZE":
                    return info.size, ""
                case "SUBJECT":
                    return 0, base_subject(env.subject)
                case "FROM" | "DISPLAYFROM":
                    return 0, _first_mailbox(env.from_, crit.key == "DISPLAYFROM")
                case "TO" | "DISPLAYTO":
                    return 0, _first_mailbox(env.to, crit.key == "DISPLAYTO")
                case "CC":
                    return 0, _first_mailbox(env.cc, False)
            return 0, ""

        ordered.sort(key=key, reverse=crit.reverse)
    return ordered


async def thread_uids(
    store: MailStore, view: MailboxView, uids: Sequence[int], algorithm: str, *, uid: bool
) -> bytes:
    """``(1 2)(3 (4)(5))`` for ORDEREDSUBJECT or REFERENCES (parent links by In-Reply-To)."""
    envs = await _envelopes(store, view, uids)
    number = {u: (u if uid else view.seq(u) or 0) for u in uids}
    dates: dict[int, float] = {}
    for u in uids:  # RFC 5256 §4: the sent date, else the internal date
        sent = envs.get(u, (Envelope(), None))[1]
        dates[u] = sent if sent is not None else view.info[u].internal_date
    date = dates.__getitem__

    if algorithm.upper() != "ORDEREDSUBJECT":
        refs = await _references(store, view, uids)
        return await asyncio.to_thread(_references_thread, uids, envs, refs, date, number)
    return await asyncio.to_thread(_ordered_subject, uids, envs, date, number)


def _ordered_subject(
    uids: Sequence[int],
    envs: dict[int, tuple[Envelope, float | None]],
    date: Callable[[int], float],
    number: dict[int, int],
) -> bytes:
    """RFC 5256 §4 ORDEREDSUBJECT: by base subject, then sent date, then sequence number."""
    bases = {u: base_subject(envs.get(u, (Envelope(), None))[0].subject) for u in uids}
    groups: dict[str, list[int]] = {}
    for u in sorted(uids, key=lambda u: (bases[u], date(u), number[u])):
        groups.setdefault(bases[u], []).append(u)
    roots: list[_Node] = []
    for first, *rest in groups.values():  # the first message is the parent of the others
        root = _Node(first)
        for u in rest:
            root.adopt(_Node(u))
        roots.append(root)
    return _render_nodes(roots, date, number).encode()


_MSGID = re.compile(r"<[^<>\s]+>")


async def _references(store: MailStore, view: MailboxView, uids: Sequence[int]) -> dict[int, str]:
    """The References field of each message (only the header section is read)."""
    facts = await ensure_facts(store, view, uids)
    out: dict[int, str] = {}
    for i, (uid, f) in enumerate(facts.items()):
        if i % 64 == 63:
            await asyncio.sleep(0)  # each read completes at once: let other sessions run
        tree = await tree_of(f)
        header = await read_range(store, view, uid, tree.header_start, tree.header_end)
        out[uid] = " ".join(v for name, v in parse_fields(header) if name == "references")
    return out


class _Node:
    """A container of RFC 5256 §4 REFERENCES: a message, or a dummy for a missing one."""

    __slots__ = ("children", "parent", "uid")

    def __init__(self, uid: int | None = None) -> None:
        self.uid = uid
        self.parent: _Node | None = None
        self.children: list[_Node] = []

    def reaches(self, other: _Node) -> bool:
        """Is ``other`` this node or one of its descendants? (a walk up from ``other``)"""
        if not self.children:  # the common case: a leaf reaches only itself
            return other is self
        node: _Node | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def adopt(self, child: _Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)


def _references_thread(
    uids: Sequence[int],
    envs: dict[int, tuple[Envelope, float | None]],
    refs: dict[int, str],
    date: Callable[[int], float],
    number: dict[int, int],
) -> bytes:
    """RFC 5256 §4: link by References/In-Reply-To, prune dummies, group roots by subject."""
    by_id: dict[str, _Node] = {}
    order = sorted(uids, key=lambda u: number[u])
    for uid in order:  # RFC 5256 §4 step 1
        env = envs.get(uid, (Envelope(), None))[0]
        found = _MSGID.findall(env.message_id or "")
        mid = found[0] if found else None
        if mid is not None and mid in by_id and by_id[mid].uid is None:
            node = by_id[mid]
            node.uid = uid
        else:
            node = _Node(uid)
            by_id[mid if mid is not None and mid not in by_id else f"\0{uid}"] = node
        chain = _MSGID.findall(refs.get(uid, ""))
        if not chain:
            chain = _MSGID.findall(env.in_reply_to or "")[:1]  # step 1A: In-Reply-To
        prev: _Node | None = None
        for ref in chain:
            cont = by_id.get(ref)
            if cont is None:
                cont = by_id[ref] = _Node()
            if prev is not None and cont.parent is None and not cont.reaches(prev):
                prev.adopt(cont)  # step 1B: link in References order, never a loop
            prev = cont
        if node.parent is not None:  # step 1C: the last reference is the parent
            node.parent.children.remove(node)
            node.parent = None
        if prev is not None and not node.reaches(prev):
            prev.adopt(node)
    roots = [n for n in by_id.values() if n.parent is None]  # step 2

    roots = _prune(roots)
    for n in roots:
        n.parent = None

    def subject_of(n: _Node) -> str | None:
        m = n if n.uid is not None else (n.children[0] if n.children else None)
        if m is None or m.uid is None:
            return None
        return envs.get(m.uid, (Envelope(), None))[0].subject

    def is_reply(n: _Node) -> bool:
        return is_reply_or_forward(subject_of(n))

    table: dict[str, _Node] = {}  # step 5: group the root set by base subject
    for n in roots:
        base = base_subject(subject_of(n))
        if not base:
            continue
        old = table.get(base)
        if (
            old is None
            or (n.uid is None and old.uid is not None)
            or (old.uid is not None and is_reply(old) and not is_reply(n))
        ):
            table[base] = n
    merged: list[_Node] = []
    for n in roots:
        base = base_subject(subject_of(n))
        target = table.get(base) if base else None
        if target is None or target is n:
            merged.append(n)
            continue
        if target.uid is None and n.uid is None:
            for k in list(n.children):
                target.adopt(k)
        elif target.uid is None:
            target.adopt(n)
        elif n.uid is None:
            merged.append(n)
            n.adopt(target)
            table[base] = n
            if target in merged:
                merged.remove(target)
        elif is_reply(n) and not is_reply(target):
            target.adopt(n)
        else:
            dummy = _Node()
            idx = merged.index(target) if target in merged else len(merged)
            merged.insert(idx, dummy)
            if target in merged:
                merged.remove(target)
            dummy.adopt(target)
            dummy.adopt(n)
            table[base] = dummy
    for n in merged:
        n.parent = None

    return _render_nodes(merged, date, number).encode()


def _prune(roots: list[_Node]) -> list[_Node]:
    """RFC 5256 §4 step 4, bottom-up without recursion: drop childless dummies, promote
    the children of dummies (at the root only when there is at most one)."""
    order: list[_Node] = []
    stack = list(roots)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    for n in reversed(order):  # every node after all of its descendants
        kids: list[_Node] = []
        for k in n.children:
            if k.uid is None:
                kids.extend(k.children)  # already pruned: promote them
            else:
                kids.append(k)
        n.children = kids
        for k in kids:
            k.parent = n
    out: list[_Node] = []
    for n in roots:
        if n.uid is None and len(n.children) <= 1:
            out.extend(n.children)
        else:
            out.append(n)
    return out


def _render_nodes(roots: list[_Node], date: Callable[[int], float], number: dict[int, int]) -> str:
    """RFC 5256 §4 step 6 and the THREAD response, without recursion."""
    keys: dict[int, tuple[float, int]] = {}  # by id(): a dummy sorts as its first child
    order: list[_Node] = []
    stack = list(roots)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    for n in reversed(order):
        if n.uid is not None:
            keys[id(n)] = (date(n.uid), number[n.uid])
        elif n.children:
            keys[id(n)] = min(keys[id(k)] for k in n.children)
        else:
            keys[id(n)] = (0.0, 0)

    def key(n: _Node) -> tuple[float, int]:
        return keys[id(n)]

    out: list[str] = []
    todo: list[tuple[_Node, bool] | str] = [(n, True) for n in sorted(roots, key=key, reverse=True)]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        n, own_parens = item
        kids = sorted(n.children, key=key)
        if own_parens:
            out.append("(")
            todo.append(")")
        if n.uid is None:  # a dummy: its children, each in parentheses
            todo.extend((k, True) for k in reversed(kids))
            continue
        out.append(str(number[n.uid]))
        if len(kids) == 1:
            out.append(" ")
            todo.append((kids[0], False))
        elif kids:
            out.append(" ")
            todo.extend((k, True) for k in reversed(kids))
    return "".join(out)
