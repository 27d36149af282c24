"""What reading a PROXY header costs a connection: correo with it against correo without.

    python bench/proxy_bench.py                  # 6 rounds of 2000 connections, c=10
    python bench/proxy_bench.py --rounds 8 -n 3000 -c 20

Two correo instances from the same code, started in the same run: one with
``[server] proxy_protocol = ["127.0.0.1"]`` (every connection opens with a version 2
header naming a made-up client, as HAProxy's ``send-proxy-v2`` does), one without.
Each round opens ``-n`` connections to each, alternating which goes first:

* ``smtp``: connect, greeting, EHLO, QUIT on the MX listener (plain TCP);
* ``imaps``: connect, the TLS handshake (after the header), greeting, LOGOUT.

Reported per workload: connections per second and the server's CPU per connection
(utime + stime from /proc), medians over the rounds, and the ratio with/without.
The parser alone is timed too (µs per header).

With ``--peer`` (root, Debian's postfix installed) the SMTP workload also runs against a
private Postfix instance (bench/peer_postfix_dovecot.py, its own work directory and
ports) with two smtpd listeners, one with ``smtpd_upstream_proxy_protocol = haproxy``
and one without, in the same interleaved rounds: Postfix's own cost of the header, for
comparison. Its CPU is that of the instance's process tree (smtpd kept alive with a
high ``max_use`` so no process's time is lost with it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path

DOMAIN = "bench.test"
HEADER = (
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x11"
    + struct.pack("!H", 12)
    + bytes([203, 0, 113, 7, 192, 0, 2, 1])
    + struct.pack("!HH", 40000, 25)
)


def _correo() -> list[str]:
    exe = shutil.which("correo")
    return [exe] if exe else [sys.executable, "-m", "correo.cli.main"]


class Node:
    """``correo serve`` on port-0 listeners, its ports read from ``server.ready``."""

    def __init__(self, root: Path, name: str, proxy: bool) -> None:
        self.data = root / name
        subprocess.run(
            [*_correo(), "init", "--data", str(self.data), "--domain", DOMAIN],
            check=True,
            capture_output=True,
        )
        toml = self.data / "correo.toml"
        text = re.sub(r'"127\.0\.0\.1:\d+"', '"127.0.0.1:0"', toml.read_text())
        text = re.sub(r"(?m)^connections_per_ip = .*$", "connections_per_ip = 0", text)
        if proxy:
            text = text.replace("proxy_protocol = []", 'proxy_protocol = ["127.0.0.1"]')
        toml.write_text(text)
        self.proxy = proxy
        self.ports: dict[str, int] = {}
        self.proc = subprocess.Popen(
            [*_correo(), "--data", str(self.data), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                if "event=server.ready" in line:
                    self.ports = {
                        m.group(1): int(m.group(3))
                        for m in re.finditer(r"(\w+)=([\d.]+):(\d+)", line)
                    }
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(60):
            raise RuntimeError(f"{name} did not start")

    def cpu(self) -> float:
        """The server's CPU seconds so far (utime + stime)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class PostfixPeer:
    """A private Postfix with one smtpd reading the PROXY header and one not."""

    def __init__(self, root: Path) -> None:
        sys.path.insert(0, str(Path(__file__).parent))
        import peer_postfix_dovecot as peer  # the bench's own peer scripts

        self.peer = peer
        base = 31000 + os.getpid() % 2000
        self.cfg = peer.PeerConfig(
            workdir=Path("/var/tmp/correo-bench/proxy-peer"),
            smtp_port=base,
            lmtp_port=base + 1,
            pop3_port=base + 2,
            users=1,
        )
        peer.setup(self.cfg)
        proxied = base + 3
        master = self.cfg.postfix_dir / "master.cf"
        master.write_text(
            master.read_text()
            + f"127.0.0.1:{proxied} inet n - n - - smtpd"
            + " -o smtpd_upstream_proxy_protocol=haproxy\n"
        )
        with (self.cfg.postfix_dir / "main.cf").open("a") as fh:
            fh.write("max_use = 1000000\nmax_idle = 3600s\n")
        # Postfix alone: the connections end at its smtpd, no delivery reaches Dovecot
        peer._run("postfix", "-c", self.cfg.postfix_dir, "start")
        for port in (base, proxied):
            peer._wait_port(port)
        self.ports = {"without": base, "with": proxied}

    def cpu(self) -> float:
        from measure import tree_cpu_seconds

        return tree_cpu_seconds(self.peer.peer_pids(self.cfg))

    def stop(self) -> None:
        self.peer.stop(self.cfg)
        self.peer.clean(self.cfg)


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _smtp(port: int, header: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if header:
        writer.write(header)
    await reader.readline()
    writer.write(b"EHLO bench.example\r\n")
    while (await reader.readline())[3:4] == b"-":
        pass
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()
    await writer.wait_closed()


async def _imaps(port: int, header: bytes, tls: ssl.SSLContext) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if header:
        writer.write(header)
        await writer.drain()
    await writer.start_tls(tls, server_hostname="localhost")
    await reader.readline()
    writer.write(b"a LOGOUT\r\n")
    while not (await reader.readline()).startswith(b"a "):
        pass
    writer.close()
    try:
        await writer.wait_closed()
    except (ssl.SSLError, ConnectionError):
        pass


async def _round(
    node: Node | PostfixPeer, workload: str, n: int, c: int, arm: str = ""
) -> tuple[float, float]:
    """(connections per second, server CPU µs per connection) for ``n`` connections."""
    tls = _client_tls()
    if isinstance(node, PostfixPeer):
        header = HEADER if arm == "with" else b""
        port = node.ports[arm]
    else:
        header = HEADER if node.proxy else b""
        port = node.ports["smtp" if workload == "smtp" else "imaps"]
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if workload == "smtp":
                await _smtp(port, header)
            else:
                await _imaps(port, header, tls)

    cpu0, t0 = node.cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    elapsed = time.perf_counter() - t0
    return n / elapsed, (node.cpu() - cpu0) / n * 1e6


def _parser() -> dict[str, float]:
    from correo.proxyproto import parse_header

    v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n"
    runs = 20000
    return {
        "v1": min(timeit.repeat(lambda: parse_header(v1), number=runs, repeat=5)) / runs * 1e6,
        "v2": min(timeit.repeat(lambda: parse_header(HEADER), number=runs, repeat=5)) / runs * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("-n", type=int, default=2000, help="connections per round and node")
    ap.add_argument("-c", type=int, default=10, help="concurrent clients")
    ap.add_argument("--workload", choices=["smtp", "imaps", "both"], default="both")
    ap.add_argument("--peer", action="store_true", help="also Postfix, SMTP only (root)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="correo-proxy-bench-"))
    nodes = {"with": Node(root, "with", True), "without": Node(root, "without", False)}
    postfix = PostfixPeer(root) if args.peer else None
    workloads = ["smtp", "imaps"] if args.workload == "both" else [args.workload]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for workload in workloads:
            for r in range(args.rounds):
                order = ["with", "without"] if r % 2 == 0 else ["without", "with"]
                for name in order:
                    rate, cpu = asyncio.run(_round(nodes[name], workload, args.n, args.c))
                    results.setdefault((workload, name), []).append((rate, cpu))
                    print(f"{workload} round {r} {name:7s} {rate:8.0f}/s {cpu:7.0f} µs CPU")
                    if postfix is not None and workload == "smtp":
                        rate, cpu = asyncio.run(_round(postfix, workload, args.n, args.c, name))
                        results.setdefault(("postfix", name), []).append((rate, cpu))
                        print(f"postfix round {r} {name:7s} {rate:8.0f}/s {cpu:7.0f} µs CPU")
    finally:
        for node in nodes.values():
            node.stop()
        if postfix is not None:
            postfix.stop()
        shutil.rmtree(root, ignore_errors=True)
    if postfix is not None and "smtp" in workloads:
        workloads.append("postfix")
    print(f"\nmedians over {args.rounds} rounds of {args.n} connections, c={args.c}")
    print(f"{'workload':8s} {'header':8s} {'conn/s':>8s} {'CPU µs/conn':>12s}")
    for workload in workloads:
        med = {}
        for name in ("with", "without"):
            rows = results[(workload, name)]
            med[name] = (
                statistics.median(r[0] for r in rows),
                statistics.median(r[1] for r in rows),
            )
            print(f"{workload:8s} {name:8s} {med[name][0]:8.0f} {med[name][1]:12.0f}")
        rate = med["with"][0] / med["without"][0]
        cpu = med["with"][1] / med["without"][1]
        print(f"{workload:8s} ratio    {rate:8.2f} {cpu:12.2f}   (with / without)")
    parser = _parser()
    print(f"\nparser alone: v1 {parser['v1']:.1f} µs, v2 {parser['v2']:.1f} µs per header")


if __name__ == "__main__":
    main()
