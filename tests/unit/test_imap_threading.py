"""THREAD=REFERENCES and ORDEREDSUBJECT: the iterative code agrees with the recursive
reference on small mailboxes and handles reply chains deeper than Python's stack."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.message.structure import Envelope
from correo.server.imap.ordering import _ordered_subject, _references_thread
from tests.unit.reference_thread import _references_thread as reference_thread

_SUBJECTS = ["a", "Re: a", "b", "Fwd: b", "[x] a", "a (fwd)", "", "re: re: b"]


@st.composite
def mailboxes(draw: st.DrawFn) -> tuple[list[int], dict, dict, dict]:
    n = draw(st.integers(1, 12))
    uids = list(range(1, n + 1))
    ids = [f"<m{i}@x>" for i in range(n + 3)]  # a few ids that no message has
    envs = {}
    refs = {}
    for u in uids:
        mid = draw(st.sampled_from([*ids[:n], None]))
        envs[u] = (
            Envelope(
                subject=draw(st.sampled_from(_SUBJECTS)),
                message_id=mid,
                in_reply_to=draw(st.sampled_from([None, *ids])),
            ),
            float(draw(st.integers(0, 3))),
        )
        refs[u] = " ".join(draw(st.lists(st.sampled_from(ids), max_size=4)))
    dates = {u: envs[u][1] for u in uids}
    return uids, envs, refs, dates


@settings(max_examples=600, deadline=None)
@given(mailboxes())
def test_references_agrees_with_the_recursive_reference(box: tuple) -> None:
    uids, envs, refs, dates = box
    number = {u: u for u in uids}
    expected = reference_thread(uids, envs, refs, dates.__getitem__, number)
    assert _references_thread(uids, envs, refs, dates.__getitem__, number) == expected


def test_a_reply_chain_deeper_than_the_stack() -> None:
    n = 5000
    uids = list(range(1, n + 1))
    envs = {
        u: (Envelope(subject="Re: deep", message_id=f"<m{u}@x>", in_reply_to=None), float(u))
        for u in uids
    }
    refs = {u: f"<m{u - 1}@x>" if u > 1 else "" for u in uids}
    number = {u: u for u in uids}
    out = _references_thread(uids, envs, refs, lambda u: float(u), number)
    assert out == ("(" + " ".join(str(u) for u in uids) + ")").encode()
    ordered = _ordered_subject(uids, envs, lambda u: float(u), number)
    assert ordered == ("(1 " + "".join(f"({u})" for u in uids[1:]) + ")").encode()
