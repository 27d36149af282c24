"""The TLS exporter (RFC 5705, RFC 8446 §7.5) of a connection: ``tls-exporter`` channel
binding for SCRAM-*-PLUS (RFC 9266).

Python's ``ssl`` module (3.11 to 3.13) has no keying-material exporter and no maintained
package adds one to its connections (pyOpenSSL has it, but on connections of its own,
not asyncio's). OpenSSL has ``SSL_export_keying_material``: this module calls it on the
``SSL *`` behind an :class:`ssl.SSLObject`, which the C object ``_ssl._SSLSocket`` keeps
right after its object header and its socket weak reference. That layout is CPython's
own, so it is used only on CPython builds where it is known (64-bit, 3.11 to 3.13, with
the GIL), and only after the pointer proves itself: ``SSL_get_version`` through it must
name the protocol the object reports. Anywhere else :func:`exporter` answers None and
SCRAM offers no -PLUS on TLS 1.3, as before.
"""

from __future__ import annotations

import ctypes
import ssl
import sys
import sysconfig
from typing import Any

__all__ = ["CHANNEL_BINDING_LABEL", "exporter"]

#: RFC 9266 §2: the label, no context, 32 octets.
CHANNEL_BINDING_LABEL = b"EXPORTER-Channel-Binding"
_LENGTH = 32
_SSL_OFFSET = 24  # PyObject_HEAD (16 octets), then ``PyObject *Socket``, then ``SSL *ssl``


def _library() -> Any:
    """libssl's functions as ``_ssl`` itself resolves them, or None."""
    if (
        sys.implementation.name != "cpython"
        or not (3, 11) <= sys.version_info[:2] <= (3, 13)
        or ctypes.sizeof(ctypes.c_void_p) != 8
        or sysconfig.get_config_var("Py_GIL_DISABLED")
    ):
        return None
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # dlsym searches _ssl's own libssl: the same one
        export = lib.SSL_export_keying_material
        version = lib.SSL_get_version
    except (ImportError, AttributeError, OSError):
        return None
    export.restype = ctypes.c_int
    export.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_int,
    ]
    version.restype = ctypes.c_char_p
    version.argtypes = [ctypes.c_void_p]
    return lib


_LIB = _library()


def _pointer(obj: ssl.SSLObject | ssl.SSLSocket) -> int | None:
    """The ``SSL *`` of ``obj``, checked against the protocol version it reports."""
    inner = getattr(obj, "_sslobj", None)
    if _LIB is None or type(inner).__name__ != "_SSLSocket" or type(inner).__module__ != "_ssl":
        return None
    pointer = ctypes.c_void_p.from_address(id(inner) + _SSL_OFFSET).value
    if not pointer:
        return None
    named = _LIB.SSL_get_version(pointer)
    return pointer if named is not None and named.decode() == obj.version() else None


def exporter(obj: ssl.SSLObject | ssl.SSLSocket) -> bytes | None:
    """The connection's ``tls-exporter`` channel binding data (RFC 9266 §2), or None
    where it cannot be had (no handshake yet, or a Python where the exporter is out of
    reach)."""
    if obj.version() is None:
        return None
    pointer = _pointer(obj)
    if pointer is None:
        return None
    out = ctypes.create_string_buffer(_LENGTH)
    label = CHANNEL_BINDING_LABEL
    done = _LIB.SSL_export_keying_material(pointer, out, _LENGTH, label, len(label), None, 0, 0)
    return out.raw if done == 1 else None
