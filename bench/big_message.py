"""Send one 100 MB message to the MX listener and report the server's RSS growth.

    python bench/big_message.py [--target correo|peer] [--mib 100]
    python bench/big_message.py --port 2525 --pid PID   # an already running correo

The target is "a 100 MB message accepted with under 64 MB of RSS growth": growth is the
server's VmHWM after the 250 minus its VmRSS before sending (VmHWM is first reset to the
current RSS through /proc/PID/clear_refs, so only this message counts). The body is streamed
from a generator of 1 MiB chunks, so the sender holds no more than one chunk.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Iterator

import correo_server
import peer_postfix_dovecot as peer
from measure import PopTarget, RssSampler, pop3_counts, proc_kib, reset_hwm, wait_retrievable
from smtp_load import body_lines

__all__ = ["body_chunks", "main", "send_big"]

_MIB = 1 << 20


def body_chunks(total: int) -> Iterator[bytes]:
    """About `total` bytes of 76-character CRLF lines, one reused 1 MiB chunk at a time."""
    lines = body_lines(_MIB // 70)
    chunk = b"".join(lines)[:_MIB]
    chunk = chunk[: chunk.rfind(b"\r\n") + 2]  # whole lines only
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


class _Replies:
    """Blocking reply reader for the one connection of this script."""

    def __init__(self, sock: socket.socket) -> None:
        self._f = sock.makefile("rb")

    def read(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self._f.readline(4096)
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line.decode(errors="replace").rstrip())
            if line[3:4] != b"-":
                return int(line[:3]), " | ".join(lines)


def send_big(host: str, port: int, total: int, rcpt: str) -> tuple[int, str, float]:
    """Send one message of about `total` bytes; returns (final code, text, seconds)."""
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=600) as sock:
        r = _Replies(sock)
        r.read()
        sock.sendall(b"EHLO bigsender.bench\r\n")
        r.read()
        for cmd, want in (
            (f"MAIL FROM:<big@sender.bench> SIZE={total}\r\n", 250),
            (f"RCPT TO:<{rcpt}>\r\n", 250),
            ("DATA\r\n", 354),
        ):
            sock.sendall(cmd.encode())
            code, text = r.read()
            if code != want:
                return code, text, time.monotonic() - t0
        sock.sendall(
            (
                f"From: <big@sender.bench>\r\nTo: <{rcpt}>\r\nSubject: big message\r\n"
                f"Message-ID: <big.{time.time_ns()}@sender.bench>\r\n\r\n"
            ).encode()
        )
        for chunk in body_chunks(total):
            sock.sendall(chunk)
        sock.sendall(b".\r\n")
        code, text = r.read()
        sock.sendall(b"QUIT\r\n")
    return code, text, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="one big message into the MX listener")
    p.add_argument("--target", choices=["correo", "peer"], default="correo")
    p.add_argument("--mib", type=int, default=100)
    p.add_argument("--port", type=int, help="use a running correo on this port (with --pid)")
    p.add_argument("--pid", type=int, help="pid of that running correo")
    a = p.parse_args(argv)
    total = a.mib * _MIB
    rcpt = "user1@bench.test"
    srv: correo_server.CorreoServer | None = None
    cfg = peer.PeerConfig()
    try:
        if a.target == "peer":
            peer.setup(cfg)
            peer.start(cfg)
            pop = PopTarget("127.0.0.1", cfg.pop3_port, False, (rcpt,), peer.PASSWORD)
            before = pop3_counts(pop)[rcpt]
            t_send = time.monotonic()
            with RssSampler(lambda: peer.peer_pids(cfg)) as rss:
                code, text, secs = send_big("127.0.0.1", cfg.smtp_port, total, rcpt)
                got = wait_retrievable(pop, {rcpt: before + 1}, 600, 0.5)
            growth = rss.peak_kib - rss.first_kib
            print(f"peer: summed RSS before {rss.first_kib / 1024:.1f} MiB, "
                  f"peak {rss.peak_kib / 1024:.1f} MiB")  # fmt: skip
        else:
            if a.port is not None and a.pid is not None:
                port, pid = a.port, a.pid
                pop = None
            else:
                # correo's default limit is 50 MiB; the test is about a 100 MB message.
                srv = correo_server.CorreoServer(message_size=total + _MIB)
                srv.setup()
                srv.start()
                port, pid = srv.smtp_port, srv.pid
                pop = PopTarget("127.0.0.1", srv.pop3s_port, True, (rcpt,), correo_server.PASSWORD)
            time.sleep(0.5)
            rss_before = proc_kib(pid, "VmRSS")
            if not reset_hwm(pid):
                print("warning: cannot reset VmHWM (not root?); growth may include startup")
            t_send = time.monotonic()
            code, text, secs = send_big("127.0.0.1", port, total, rcpt)
            hwm = proc_kib(pid, "VmHWM")
            growth = hwm - rss_before
            got = None
            if pop is not None and code == 250:
                got = wait_retrievable(pop, {rcpt: 1}, 600, 0.5)
            print(f"correo: VmRSS before {rss_before / 1024:.1f} MiB, "
                  f"VmHWM after {hwm / 1024:.1f} MiB")  # fmt: skip
        print(f"reply: {text}")
        print(f"size {total / _MIB:.0f} MiB, accepted in {secs:.2f}s "
              f"({total / _MIB / secs:.1f} MiB/s), RSS growth {growth / 1024:.1f} MiB "
              f"({'PASS' if code == 250 and growth < 64 * 1024 else 'FAIL'} < 64 MiB)")  # fmt: skip
        if got is not None and got.complete:
            print(f"retrievable by POP3 {got.last - t_send:.2f}s after the first connect")
        return 0 if code == 250 else 1
    finally:
        if srv is not None:
            srv.clean()
        if a.target == "peer":
            peer.stop(cfg)


if __name__ == "__main__":
    sys.exit(main())
