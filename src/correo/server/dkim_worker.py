"""A DKIM signing worker process: private-key operations on digests, off the server's GIL.

Started by :mod:`correo.server.dkim_pool` as ``python -I -m correo.server.dkim_worker``
(isolated; it imports the standard library, ``cryptography`` and
:mod:`correo.server.worker_main`, nothing else of correo). It reads frames on stdin
and answers on stdout; the parent's end of stdin closing (shutdown, or the server dying)
ends it.

Frames both ways are a 4-byte big-endian length and that many bytes. Requests:

* ``K`` kid:u32 DER — keep a PKCS#8 private key under ``kid`` (no answer);
* ``C`` — forget every key (no answer);
* ``S`` req:u32 n:u8 then n x (kid:u32 digest:32) — sign each SHA-256 digest.

Answers: req:u32 status:u8, then for status 0 the signatures as n x (len:u16 bytes);
status 1 means "could not sign" (unknown key, bad digest) and the parent signs in its own
process.  The first frame the worker writes is req 0 status 2: "ready".
"""

from __future__ import annotations

import os
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from correo.server.worker_main import run, write_all

_HEAD = struct.Struct(">I")
_SIGN = struct.Struct(">IB")
_JOB = struct.Struct(">I32s")
_MAX_FRAME = 1 << 20  # a request is a few hundred bytes; a key a few KiB
READY, OK, FAILED = 2, 0, 1


def sign(key: object, digest: bytes) -> bytes:
    """The signature over one SHA-256 digest, by key type (RFC 6376 §3.3, RFC 8463 §3)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(digest)  # RFC 8463 §3: Ed25519 signs the SHA-256 hash itself
    if isinstance(key, rsa.RSAPrivateKey):  # RFC 6376 §3.3.1: PKCS#1 v1.5 over SHA-256
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    raise ValueError("not a DKIM signing key")


def answer(keys: dict[int, object], body: bytes) -> bytes:
    """The answer frame's body to one ``S`` request."""
    req, n = _SIGN.unpack_from(body, 1)
    try:
        out = [_SIGN.pack(req, OK)]
        for i in range(n):
            kid, digest = _JOB.unpack_from(body, 1 + _SIGN.size + i * _JOB.size)
            signature = sign(keys[kid], digest)
            out.append(len(signature).to_bytes(2, "big") + signature)
        return b"".join(out)
    except (KeyError, ValueError, struct.error):
        return _SIGN.pack(req, FAILED)


def serve(rfd: int, wfd: int) -> None:
    """Answer frames from ``rfd`` on ``wfd`` until end of file."""
    keys: dict[int, object] = {}
    buf = bytearray()
    os.write(wfd, _HEAD.pack(_SIGN.size) + _SIGN.pack(0, READY))
    while True:
        chunk = os.read(rfd, 65536)
        if not chunk:
            return
        buf += chunk
        out = []
        while len(buf) >= _HEAD.size:
            (size,) = _HEAD.unpack_from(buf)
            if size > _MAX_FRAME or size == 0:
                return  # not our parent speaking: stop
            if len(buf) < _HEAD.size + size:
                break
            body = bytes(buf[_HEAD.size : _HEAD.size + size])
            del buf[: _HEAD.size + size]
            kind = body[:1]
            if kind == b"S":
                reply = answer(keys, body)
                out.append(_HEAD.pack(len(reply)) + reply)
            elif kind == b"K":
                (kid,) = _HEAD.unpack_from(body, 1)
                try:
                    keys[kid] = serialization.load_der_private_key(body[5:], password=None)
                except ValueError:
                    keys.pop(kid, None)  # its requests answer FAILED
            elif kind == b"C":
                keys.clear()
        if out:
            write_all(wfd, out)


def main() -> None:
    run(serve)


if __name__ == "__main__":
    main()
