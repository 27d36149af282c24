"""POP3 RETR side by side: correo against a private Debian Dovecot on the same machine.

    python bench/pop3_bench.py [--target correo|dovecot|both] [--messages 1000]
        [--rounds 5] [--tls] [--port 23630]

Both servers get the same ``--messages`` messages of 2-100 KB (bench/imap_bench.py's
seeded text), appended over IMAP; then, in ``--rounds`` rounds that alternate between
the servers (every server up at once, the median kept), one POP3 session (USER/PASS,
over implicit TLS with ``--tls``) retrieves every message with ``RETR 1`` .. ``RETR n``,
one command at a time (wall time, and the CPU time of the server's processes, which
a shared machine disturbs far less). The client is a raw socket that only looks for the final
``.`` of each answer, so the time is the servers' rather than a POP3 library's.
Dovecot (needs dovecot-pop3d, and root) is the instance bench/imap_bench.py starts,
with POP3 on too.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import imap_bench
from imap_bench import PASSWORD, USER, correo_start, dovecot_start, load, make_messages
from measure import process_tree, tree_cpu_seconds

__all__ = ["main"]


class RawPop3:
    """Just enough POP3 to time RETR: a command, then read to the end of its answer."""

    def __init__(self, port: int, tls: bool) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        self.line()  # greeting
        for cmd in (f"USER {USER}", f"PASS {PASSWORD}"):
            self.sock.sendall(cmd.encode() + b"\r\n")
            reply = self.line()
            assert reply.startswith(b"+OK"), reply

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self._recv()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _recv(self) -> bytes:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def retr(self, n: int) -> int:
        """RETR n; the octets of the answer (its status line and terminator included)."""
        self.sock.sendall(b"RETR %d\r\n" % n)
        parts, size = [self.buf], len(self.buf)
        tail = self.buf[-5:]
        while not (tail.endswith(b"\r\n.\r\n")):
            data = self._recv()
            parts.append(data)
            size += len(data)
            tail = (tail + data)[-5:]
        self.buf = b""
        first = parts[0] if parts[0] else parts[1]
        assert first.startswith(b"+OK"), first[:80]
        return size

    def quit(self) -> None:
        self.sock.sendall(b"QUIT\r\n")
        self.sock.close()


def retr_all(port: int, tls: bool, count: int, root: int) -> tuple[float, float, int]:
    """One session's RETR 1..count (login excluded): seconds, CPU seconds of the server's
    processes (those alive after the login: Dovecot forks per session), octets received."""
    client = RawPop3(port, tls)
    pids = process_tree(root)
    cpu = tree_cpu_seconds(pids)
    started = time.perf_counter()
    octets = sum(client.retr(n) for n in range(1, count + 1))
    took = time.perf_counter() - started
    cpu = tree_cpu_seconds(pids) - cpu
    client.quit()
    return took, cpu, octets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=["correo", "dovecot", "both"], default="both")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tls", action="store_true", help="POP3S (implicit TLS) to every server")
    p.add_argument("--port", type=int, default=23630, help="first of the ports (uses +0..+14)")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/correo-pop3bench"))
    a = p.parse_args(argv)
    imap_bench.TLS = a.tls
    targets = ["correo", "dovecot"] if a.target == "both" else [a.target]
    messages = make_messages(a.messages)
    running: dict[str, tuple[int, int, object, int]] = {}  # imap, pop3 port, stop, pid
    try:
        for target in targets:
            imap = a.port + (0 if target == "correo" else 10)
            if target == "correo":
                srv = correo_start(a.workdir / target, imap, None, a.tls)
                pop3 = imap + 2 if a.tls else imap + 4  # correo_start's pop3s / pop3
                root = srv.pid
                running[target] = (imap, pop3, srv.stop, root)
            else:
                proc = dovecot_start(a.workdir / target, imap, a.tls, pop3_port=imap + 4)
                if proc is None:
                    print("dovecot not installed; skipped")
                    continue
                root = proc.pid
                running[target] = (imap, imap + 4, proc.terminate, root)
            load(imap, messages, lambda root=root: process_tree(root))
        times: dict[str, list[float]] = {t: [] for t in running}
        cpus: dict[str, list[float]] = {t: [] for t in running}
        octets: dict[str, int] = {}
        for n in range(a.rounds):
            order = list(running) if n % 2 == 0 else list(reversed(running))
            for target in order:
                _imap, pop3, _stop, root = running[target]
                took, cpu, octets[target] = retr_all(pop3, a.tls, a.messages, root)
                times[target].append(took)
                cpus[target].append(cpu)
    finally:
        for _imap, _pop3, stop, _root in running.values():
            stop()  # type: ignore[operator]
    transport = "TLS" if a.tls else "plaintext"
    print(f"\nRETR 1..{a.messages}, one session, {transport}, median of {a.rounds} rounds")
    for target, got in times.items():
        med = statistics.median(got)
        rate = a.messages / med
        mib = octets[target] / med / (1 << 20)
        cpu = statistics.median(cpus[target])
        print(
            f"{target:10} {med:8.3f} s  {rate:8.0f} msg/s  {mib:7.1f} MiB/s"
            f"  server CPU {cpu:6.3f} s  rounds {[round(t, 3) for t in got]}"
        )
    if len(times) == 2:
        ratio = statistics.median(times["dovecot"]) / statistics.median(times["correo"])
        cpu_ratio = statistics.median(cpus["dovecot"]) / statistics.median(cpus["correo"])
        print(f"correo rate / Dovecot rate: {ratio:.2f}x; Dovecot CPU / correo's {cpu_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
