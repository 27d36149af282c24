"""SORT and THREAD (RFC 5256) over the envelopes stored with each message."""

from __future__ import annotations

import re
from collections.abc import Sequence

from correo.delivery.facts import load_tree
from correo.imap.commands import SortCriterion
from correo.message.encoded import decode_header
from correo.message.mime import Address
from correo.message.structure import Envelope
from correo.server.imap.fetch import ensure_facts
from correo.server.imap.view import MailboxView
from correo.store.api import MailStore

__all__ = ["base_subject", "sort_uids", "thread_uids"]

_PREFIX = re.compile(r"^(?:\s*(?:re|fwd?)\s*(?:\[[^\]]*\])?\s*:|\s*\[[^\]]*\])", re.IGNORECASE)
_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1: the subject without Re:/Fwd:/[list] prefixes and (fwd) trailers."""
    text = " ".join(decode_header(subject or "").split())
    while True:
        before = text
        text = _TRAILER.sub("", text)
        stripped = _PREFIX.sub("", text, count=1).strip()
        if stripped or not text:
            text = stripped
        if text.lower().startswith("[fwd:") and text.endswith("]"):
            text = text[5:-1].strip()
        if text == before:
            return text.casefold()


def _first_mailbox(addrs: tuple[Address, ...] | None, display: bool) -> str:
    for a in addrs or ():
        if a.mailbox is None or a.host is None:
            continue  # group markers
        if display and a.name:
            return decode_header(a.name).casefold()
        return (a.mailbox or "").casefold()
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

    children: dict[int, list[int]] = {}
    roots: list[int] = []
    if algorithm.upper() == "ORDEREDSUBJECT":
        groups: dict[str, list[int]] = {}
        for u in sorted(
            uids, key=lambda u: (base_subject(envs.get(u, (Envelope(), None))[0].subject), date(u))
        ):
            groups.setdefault(base_subject(envs.get(u, (Envelope(), None))[0].subject), []).append(
                u
            )
        for members in groups.values():
            roots.append(members[0])
            if len(members) > 1:
                children[members[0]] = members[1:]
        roots.sort(key=date)
    else:
        by_id: dict[str, int] = {}
        for u in uids:
            mid = envs.get(u, (Envelope(), None))[0].message_id
            if mid:
                by_id.setdefault(mid.strip(), u)
        for u in sorted(uids, key=date):
            parent_id = envs.get(u, (Envelope(), None))[0].in_reply_to
            parent = (
                by_id.get(parent_id.strip().split()[-1])
                if parent_id and parent_id.split()
                else None
            )
            if parent is not None and parent != u:
                children.setdefault(parent, []).append(u)
            else:
                roots.append(u)
    return "".join("(" + _render(r, children, number) + ")" for r in roots).encode()
