"""The recursive RFC 5256 §4 REFERENCES threading correo shipped before: a reference
for the iterative one on small mailboxes (deep chains overflow its recursion)."""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from correo.message.encoded import decode_header
from correo.message.structure import Envelope
from correo.message.subject import base_subject

_MSGID = re.compile(r"<[^<>\s]+>")
_PREFIX = re.compile(r"^(?:\s*(?:re|fwd?)\s*(?:\[[^\]]*\])?\s*:|\s*\[[^\]]*\])", re.IGNORECASE)
_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)


class _Node:
    """A container of RFC 5256 §4 REFERENCES: a message, or a dummy for a missing one."""

    __slots__ = ("children", "parent", "uid")

    def __init__(self, uid: int | None = None) -> None:
        self.uid = uid
        self.parent: _Node | None = None
        self.children: list[_Node] = []

    def reaches(self, other: _Node) -> bool:
        """Is ``other`` this node or one of its descendants?"""
        stack = [self]
        while stack:
            node = stack.pop()
            if node is other:
                return True
            stack.extend(node.children)
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

    def prune(nodes: list[_Node], at_root: bool) -> list[_Node]:  # step 4
        out: list[_Node] = []
        for n in nodes:
            n.children = prune(n.children, False)
            for k in n.children:
                k.parent = n
            if n.uid is None and (not at_root or len(n.children) <= 1):
                out.extend(n.children)  # promote (or drop a childless dummy)
            else:
                out.append(n)
        return out

    roots = prune(roots, True)
    for n in roots:
        n.parent = None

    def subject_of(n: _Node) -> str | None:
        m = n if n.uid is not None else (n.children[0] if n.children else None)
        if m is None or m.uid is None:
            return None
        return envs.get(m.uid, (Envelope(), None))[0].subject

    def is_reply(n: _Node) -> bool:
        subj = " ".join(decode_header(subject_of(n) or "").split())
        return bool(_PREFIX.match(subj) or _TRAILER.search(subj))

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

    def key(n: _Node) -> tuple[float, int]:  # step 6: sent date, then sequence number
        while n.uid is None and n.children:
            n = min(n.children, key=key)
        return (date(n.uid), number[n.uid]) if n.uid is not None else (0.0, 0)

    def render(n: _Node) -> str:
        kids = sorted(n.children, key=key)
        if n.uid is None:
            return "".join("(" + render(k) + ")" for k in kids)
        head = str(number[n.uid])
        if not kids:
            return head
        if len(kids) == 1:
            return head + " " + render(kids[0])
        return head + " " + "".join("(" + render(k) + ")" for k in kids)

    return "".join("(" + render(n) + ")" for n in sorted(merged, key=key)).encode()
