"""RFC 5256 base subject: the linear scanner agrees with the grammar read as regexes."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.message.subject import base_subject, is_reply_or_forward

# The RFC 5256 §5 grammar as backtracking regular expressions: a reference for short
# inputs only (its cost explodes on long ones, which is why the scanner exists).
_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:|[ \t]+", re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)
_TRAILERS = re.compile(r"(?:\(fwd\)|[ \t])+$", re.IGNORECASE)
# the blob of a subj-refwd holds no "[" or "]" (RFC 5256 §5 BLOBCHAR): "Re[[]:" is no reply
_PREFIX = re.compile(r"^(?:\s*(?:re|fwd?)\s*(?:\[[^\[\]]*\])?\s*:|\s*\[[^\]]*\])", re.IGNORECASE)
_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)


def reference(subject: str) -> str:
    text = " ".join(subject.split())
    while True:
        text = _TRAILERS.sub("", text)
        while True:
            m = _LEADER.match(text)
            if m is not None and m.end():
                text = text[m.end() :]
                continue
            m = _BLOB_RE.match(text)
            if m is not None and m.end() < len(text):
                text = text[m.end() :]
                continue
            break
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            continue
        return text.upper()


def reference_is_reply(subject: str) -> bool:
    text = " ".join(subject.split())
    return bool(_PREFIX.match(text) or _TRAILER.search(text))


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="[]rRefFwWdD :()x\t", max_size=30))
def test_scanner_matches_the_grammar(subject: str) -> None:
    assert base_subject(subject) == reference(subject)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="[]rRefwd :()x", max_size=20))
def test_reply_detection_matches_the_grammar(subject: str) -> None:
    assert is_reply_or_forward(subject) == reference_is_reply(subject)


def test_examples() -> None:
    assert base_subject("Re: [list] Fwd: hi (fwd)") == "HI"
    assert base_subject("[fwd: Re: x]") == "X"
    assert base_subject("[a] [b]") == "[B]"
    assert base_subject("=?utf-8?q?Re=3A_caf=C3=A9?=", casemap=False) == "café"
    assert is_reply_or_forward("Re: x") and not is_reply_or_forward("x")
    assert is_reply_or_forward("Re[a]: x") and not is_reply_or_forward("Re[[]: x")


def test_adversarial_subjects_are_linear() -> None:
    """Each of these took from seconds to minutes with backtracking regexes."""
    n = 100_000
    assert base_subject("[x] " * n + "re") == "RE"
    assert base_subject("[fwd:" * n + "a" + "]" * n) == "A"
    assert base_subject("re" + "[x]" * n + "x").startswith("RE[X]")
    assert not is_reply_or_forward("x" + " " * n + "y")
