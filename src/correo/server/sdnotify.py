"""systemd's readiness protocol (sd_notify(3)), without a dependency.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` to a datagram socket and waits
for ``READY=1`` before it counts the service as started, so units ordered after
correo (and ``systemctl start``) return only once every listener is bound.
A name starting with ``@`` is in Linux's abstract namespace.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["notify", "notify_reloading"]


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STOPPING=1"`` …) to systemd; False if not asked to."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":  # unset, or a vsock address: not ours
        return False
    if address[0] == "@":  # abstract namespace: a leading NUL byte
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a datagram to a local socket: never waits
            sock.sendto(state.encode(), address)
    except OSError:
        return False  # systemd gone or the socket full: the service runs on
    return True


def notify_reloading() -> bool:
    """``RELOADING=1`` with the time it began (``Type=notify-reload``, systemd 253+)."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")
