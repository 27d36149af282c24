"""The base subject of RFC 5256 §2.1, computed in one left-to-right scan.

SORT (SUBJECT), THREAD and conversation grouping apply this to subjects written by
whoever sent the mail.  The grammar reads naturally as regular expressions, but
``(blob)*(re|fwd):`` tried again after each removed blob backtracks over every blob
still ahead: a subject of a few thousand ``[x]`` took minutes.  This scanner keeps
two indexes into the normalised text and never looks at a character twice, except
where noted, so its cost is linear in the length of the subject.
"""

from __future__ import annotations

from correo.message.encoded import decode_header

__all__ = ["base_subject", "is_reply_or_forward", "normalise_subject"]

# i;ascii-casemap (RFC 4790 §9.2), the collation of RFC 5256 §2.1: a-z as A-Z, nothing else
_CASEMAP = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalise_subject(subject: str | None) -> str:
    """RFC 5256 §2.1 step 1: decoded words, every run of white space one SP, trimmed."""
    return " ".join(decode_header(subject or "").split())


def _blob_end(text: str, pos: int, end: int) -> int:
    """End of a subj-blob (``"[" *BLOBCHAR "]" *WSP``) at ``pos``, or -1 (RFC 5256 §5)."""
    if pos >= end or text[pos] != "[":
        return -1
    i = pos + 1
    while i < end and text[i] not in "[]":
        i += 1
    if i >= end or text[i] != "]":
        return -1
    i += 1
    while i < end and text[i] == " ":
        i += 1
    return i


def _refwd_end(text: str, pos: int, end: int) -> int:
    """End of a subj-refwd (``("re" / "fw" ["d"]) *WSP [subj-blob] ":"``) at ``pos``, or -1."""
    head = text[pos : pos + 3].lower()
    if head.startswith("re"):
        i = pos + 2
    elif head == "fwd":
        i = pos + 3
    elif head.startswith("fw"):
        i = pos + 2
    else:
        return -1
    while i < end and text[i] == " ":
        i += 1
    if i < end and text[i] == "[":
        i = _blob_end(text, i, end)
        if i < 0:
            return -1
    return i + 1 if i < end and text[i] == ":" else -1


def _leader_end(text: str, pos: int, end: int) -> tuple[int, int]:
    """(end of a subj-leader at ``pos`` or -1, end of the blob run scanned on the way)."""
    if pos < end and text[pos] == " ":
        return pos + 1, pos
    i = pos
    while True:  # *subj-blob: a blob starts with "[", subj-refwd with a letter: no choice
        nxt = _blob_end(text, i, end)
        if nxt < 0:
            break
        i = nxt
    return _refwd_end(text, i, end), i


def base_subject(subject: str | None, *, casemap: bool = True) -> str:
    """RFC 5256 §2.1 base subject (in i;ascii-casemap form unless ``casemap`` is false)."""
    text = normalise_subject(subject)
    start, end = 0, len(text)
    while True:
        while end > start:  # step 2: subj-trailer = "(fwd)" / WSP, all of them
            if text[end - 1] == " ":
                end -= 1
            elif end - start >= 5 and text[end - 5 : end].lower() == "(fwd)":
                end -= 5
            else:
                break
        failed_run = -1  # a leader failed after blobs up to here: it fails inside them too
        while start < end:  # steps 3-5
            if start >= failed_run:
                leader, run = _leader_end(text, start, end)
                if leader >= 0:
                    start = leader
                    continue
                failed_run = run
            blob = _blob_end(text, start, end)
            if 0 <= blob < end:  # step 4: only if a non-empty base remains
                start = blob
                continue
            break
        if text[start : start + 5].lower() == "[fwd:" and end > start + 5 and text[end - 1] == "]":
            start, end = start + 5, end - 1  # step 6: subj-fwd-hdr … subj-fwd-trl
            continue
        base = text[start:end]
        return base.translate(_CASEMAP) if casemap else base


def is_reply_or_forward(subject: str | None) -> bool:
    """RFC 5256 §4 step 5: does the subject carry a reply/forward leader or trailer?"""
    text = normalise_subject(subject)
    if text.startswith("[") and "]" in text:  # a leading blob
        return True
    return _refwd_end(text, 0, len(text)) >= 0 or text.lower().endswith("(fwd)")
