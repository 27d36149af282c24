"""A text-index worker process: the index form of delivered messages, off the server's GIL.

Started by :mod:`correo.server.index_pool` as ``python -I -m correo.server.index_worker``.
It reads frames on stdin and answers on stdout (:mod:`correo.server.worker_pipes`); the
parent's end of stdin closing (shutdown, or the server dying) ends it.

A request is req:u32 tree_len:u32, the facts tree (``MessageFacts.tree``, JSON) and the
message's bytes.  The answer is req:u32 status:u8 and, for :data:`OK`, the index form as
UTF-8; :data:`NONE` means "too long to index" and :data:`FAILED` "could not read it"
(a malformed tree or frame, or one over :data:`MAX_REQUEST`: the parent extracts in its
own process).  The first frame the worker writes is req 0 status ``READY``.
"""

from __future__ import annotations

import json
import os
import struct

from correo.delivery.textindex import INDEX_IN_HAND, indexable
from correo.message.structure import Part
from correo.server.worker_main import run, write_all
from correo.server.worker_pipes import ANSWER, FAILED, HEAD, OK, READY

__all__ = ["MAX_REQUEST", "MAX_TREE", "NONE", "REQUEST", "answer", "main", "serve"]

REQUEST = struct.Struct(">II")  # req, tree_len
MAX_TREE = 1 << 20  # bytes of a facts tree: thousands of parts
MAX_REQUEST = REQUEST.size + MAX_TREE + INDEX_IN_HAND  # the parent sends no more
NONE = 3


def answer(body: bytes) -> bytes:
    """The answer frame's body to one request."""
    if len(body) < REQUEST.size:
        return ANSWER.pack(0, FAILED)
    req, tree_len = REQUEST.unpack_from(body)
    try:
        if tree_len > MAX_TREE or REQUEST.size + tree_len > len(body):
            raise ValueError("a tree past the frame")
        tree = Part.from_json(json.loads(body[REQUEST.size : REQUEST.size + tree_len]))
        text = indexable(body[REQUEST.size + tree_len :], tree)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return ANSWER.pack(req, FAILED)
    if text is None:
        return ANSWER.pack(req, NONE)
    return ANSWER.pack(req, OK) + text.encode("utf-8", "surrogatepass")


def serve(rfd: int, wfd: int) -> None:
    """Answer frames from ``rfd`` on ``wfd`` until end of file.  A frame over
    :data:`MAX_REQUEST` is skipped unread and answered FAILED (its req is known from its
    first bytes), so no peer makes this process hold more than one bounded request."""
    buf = bytearray()
    skip = 0  # bytes of a refused frame still to come
    os.write(wfd, HEAD.pack(ANSWER.size) + ANSWER.pack(0, READY))
    while True:
        chunk = os.read(rfd, 1 << 18)
        if not chunk:
            return
        buf += chunk
        out = []
        while True:
            if skip:
                n = min(skip, len(buf))
                del buf[:n]
                skip -= n
                if skip:
                    break
            if len(buf) < HEAD.size + 4:
                break
            (size,) = HEAD.unpack_from(buf)
            if size > MAX_REQUEST or size < 4:
                (req,) = HEAD.unpack_from(buf, HEAD.size)
                reply = ANSWER.pack(req if size >= 4 else 0, FAILED)
                out.append(HEAD.pack(len(reply)) + reply)
                skip = size + HEAD.size
                continue
            if len(buf) < HEAD.size + size:
                break
            body = bytes(buf[HEAD.size : HEAD.size + size])
            del buf[: HEAD.size + size]
            reply = answer(body)
            out.append(HEAD.pack(len(reply)) + reply)
        if out:
            write_all(wfd, out)


def main() -> None:
    run(serve)


if __name__ == "__main__":
    main()
