"""SORT and THREAD (RFC 5256) over the envelopes stored with each message."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from correo.delivery.facts import load_tree
from correo.imap.commands import SortCriterion
from correo.message.encoded import decode_header
from correo.message.headers import parse_fields
from correo.message.mime import Address
from correo.message.structure import Envelope
from correo.server.imap.fetch import ensure_facts, read_range
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore

__all__ = ["base_subject", "sort_uids", "thread_uids"]

# RFC 5256 §5 ABNF: subj-blob, subj-refwd, subj-leader, subj-trailer
_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:|[ \t]+", re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)
_TRAILERS = re.compile(r"(?:\(fwd\)|[ \t])+$", re.IGNORECASE)
# kept for THREAD=REFERENCES: is a subject a reply or a forward (RFC 5256 §4 step 5)?
_PREFIX = re.compile(r"^(?:\s*(?:re|fwd?)\s*(?:\[[^\]]*\])?\s*:|\s*\[[^\]]*\])", re.IGNORECASE)
_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)
# i;ascii-casemap (RFC 4790 §9.2), the collation of RFC 5256 §2.1: a-z as A-Z, nothing else
_CASEMAP = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1 base subject, in i;ascii-casemap form for comparing."""
    text = " ".join(decode_header(subject or "").split())  # step 1
    while True:
        text = _TRAILERS.sub("", text)  # step 2
        while True:  # steps 3-5
            m = _LEADER.match(text)
            if m is not None and m.end():
                text = text[m.end() :]
                continue
            m = _BLOB_RE.match(text)
            if m is not None and m.end() < len(text):  # step 4: a non-empty base remains
                text = text[m.end() :]
                continue
            break
        if text[:5].lower() == "[fwd:" and text.endswith("]"):  # step 6
            text = text[5:-1]
            continue
        return text.translate(_CASEMAP)


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
    for uid, f in facts.items():
        tree = load_tree(f)
        out[uid] = (tree.envelope or Envelope(), f.sent_date)
    return out


async def sort_uids(
    store: MailStore, view: MailboxView, uids: Sequence[int], criteria: Sequence[SortCriterion]
) -> list[int]:
    envs = await _envelopes(store, view, uids)
    ordered = sorted(uids, key=lambda u: view.seq(u) or 0)  # final tie-break: sequence number
    for crit in reversed(criteria):  # stable sorts, last criterion first

        def key(uid: int, crit: SortCriterion = crit) -> tuple[float, str]:
            env, sent = envs.get(uid, (Envelope(), None))
            info = view.info[uid]
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


def _render(node: int, children: dict[int, list[int]], number: dict[int, int]) -> str:
    kids = children.get(node, [])
    head = str(number[node])
    if not kids:
        return head
    if len(kids) == 1:
        return head + " " + _render(kids[0], children, number)
    return head + " " + "".join("(" + _render(k, children, number) + ")" for k in kids)


async def thread_uids(
    store: MailStore, view: MailboxView, uids: Sequence[int], algorithm: str, *, uid: bool
) -> bytes:
    """``(1 2)(3 (4)(5))`` for ORDEREDSUBJECT or REFERENCES (parent links by In-Reply-To)."""
    envs = await _envelopes(store, view, uids)
    number = {u: (u if uid else view.seq(u) or 0) for u in uids}

    def date(u: int) -> float:
        sent = envs.get(u, (Envelope(), None))[1]
        return sent if sent is not None else view.info[u].internal_date

    if algorithm.upper() != "ORDEREDSUBJECT":
        refs = await _references(store, view, uids)
        return _references_thread(uids, envs, refs, date, number)
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    groups: dict[str, list[int]] = {}
    for u in sorted(  # RFC 5256 §4: by base subject, then sent date, then sequence number
        uids,
        key=lambda u: (
            base_subject(envs.get(u, (Envelope(), None))[0].subject),
            date(u),
            number[u],
        ),
    ):
        groups.setdefault(base_subject(envs.get(u, (Envelope(), None))[0].subject), []).append(u)
    for members in groups.values():
        roots.append(members[0])
        if len(members) > 1:
            children[members[0]] = members[1:]
    roots.sort(key=lambda u: (date(u), number[u]))
    return "".join("(" + _render(r, children, number) + ")" for r in roots).encode()


_MSGID = re.compile(r"<[^<>\s]+>")


async def _references(store: MailStore, view: MailboxView, uids: Sequence[int]) -> dict[int, str]:
    """The References field of each message (only the header section is read)."""
    facts = await ensure_facts(store, view, uids)
    out: dict[int, str] = {}
    for uid, f in facts.items():
        tree = load_tree(f)
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
