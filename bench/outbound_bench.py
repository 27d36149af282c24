"""Outbound throughput: 5,000 queued messages to Postfix's smtp-sink, correo vs Postfix.

Both MTAs start from a full queue and relay to the same sink on the same machine:

* correo: the messages are filed into the store's queue directly (as submission would),
  then ``correo serve`` starts and the clock runs until the queue is empty;
* Postfix: a private instance (``postfix -c DIR``) takes the messages over SMTP while its
  ``smtp`` transport is deferred, then the deferral is lifted, the queue flushed, and
  the clock runs until ``postqueue -j`` shows nothing.

Both use 20 connections to the destination (Postfix's default destination concurrency)
and no TLS.  Run as root (Postfix).  ``python bench/outbound_bench.py [--messages N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LOG_LEVEL = os.environ.get("CORREO_BENCH_LOG", "info")  # info logs every delivery, as Postfix
SINK_PORT = 2555
PF_PORT = 2556
WORK = Path("/var/tmp/correo-bench/outbound")
BODY = ("x" * 76 + "\r\n") * 25  # ~2 KB


def message(i: int) -> bytes:
    return (
        f"From: load@src.test\r\nTo: user{i % 10}@bench.test\r\nSubject: m{i}\r\n"
        f"Message-ID: <m{i}@src.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n{BODY}"
    ).encode()


def start_sink() -> subprocess.Popen[bytes]:
    sink = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    proc = subprocess.Popen(
        [sink, "-u", "postfix", f"127.0.0.1:{SINK_PORT}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc


# -- correo ---------------------------------------------------------------------------------


def run_correo(n: int) -> float:
    data = WORK / "correo"
    shutil.rmtree(data, ignore_errors=True)
    cli = [sys.executable, "-m", "correo.cli.main"]
    subprocess.run(
        [*cli, "init", "--data", str(data), "--domain", "src.test", "--hostname", "mx.src.test"],
        check=True,
        capture_output=True,
    )
    cfg = (data / "correo.toml").read_text()
    import re

    cfg = re.sub(r'^(\w+) = \["127\.0\.0\.1:\d+"\]$', r'\1 = ["127.0.0.1:0"]', cfg, flags=re.M)
    cfg = cfg.replace('level = "info"', f'level = "{LOG_LEVEL}"')
    cfg += (
        "\n[outbound]\n"
        f'transport = ["bench.test smtp:[127.0.0.1]:{SINK_PORT}"]\n'
        'tls = "none"\nmax_per_destination = 20\nmax_connections = 50\n'
        "max_messages_per_connection = 1000\n"
    )
    (data / "correo.toml").write_text(cfg)

    async def fill() -> None:
        from correo.store.api import Envelope, QueuedRecipient
        from correo.store.sqlite import SqliteStore

        store = SqliteStore(data / "store")
        await store.open()
        try:

            async def one(i: int) -> None:
                spool = store.new_spool()
                spool.write(message(i))
                await store.deliver(
                    spool,
                    Envelope(sender="load@src.test"),
                    [],
                    [QueuedRecipient(f"user{i % 10}@bench.test")],
                )

            for start in range(0, n, 500):
                await asyncio.gather(*(one(i) for i in range(start, min(n, start + 500))))
        finally:
            await store.close()

    asyncio.run(fill())
    db = sqlite3.connect(data / "store" / "mail.db")
    assert db.execute("SELECT count(*) FROM queue").fetchone()[0] == n
    started = time.monotonic()
    log = open(WORK / "correo.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*cli, "--data", str(data), "serve"], stdout=subprocess.DEVNULL, stderr=log
    )
    while b"event=server.ready" not in (WORK / "correo.log").read_bytes():
        if proc.poll() is not None or time.monotonic() - started > 60:
            raise SystemExit(f"correo did not start; see {WORK / 'correo.log'}")
        time.sleep(0.005)
    started = time.monotonic()  # like Postfix's clock: from a running server with a full queue
    try:
        while True:
            left = db.execute("SELECT count(*) FROM queue").fetchone()[0]
            if left == 0:
                break
            if proc.poll() is not None:
                raise SystemExit(f"correo exited; see {WORK / 'correo.log'}")
            if time.monotonic() - started > 600:
                raise SystemExit(f"correo: {left} messages left after 600 s")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        db.close()
        log.close()


# -- Postfix --------------------------------------------------------------------------------

PF_MAIN = """\
compatibility_level = 3.6
config_directory = {w}/etc
queue_directory = {w}/spool
data_directory = {w}/data
maillog_file = {w}/postfix.log
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.src.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
default_process_limit = 100
default_destination_concurrency_limit = 20
smtp_destination_concurrency_limit = 20
in_flow_delay = 0s
defer_transports = smtp
biff = no
"""


def run_postfix(n: int) -> float:
    w = WORK / "postfix"
    pf = ["postfix", "-c", str(w / "etc")]
    if (w / "etc" / "main.cf").exists():
        subprocess.run([*pf, "stop"], capture_output=True, check=False)
    shutil.rmtree(w, ignore_errors=True)
    (w / "etc").mkdir(parents=True)
    (w / "data").mkdir()
    (w / "spool").mkdir()
    shutil.chown(w / "data", "postfix", "postfix")
    for p in (w, *w.parents):
        if p != Path("/"):
            p.chmod(p.stat().st_mode | 0o011)
    (w / "etc" / "main.cf").write_text(PF_MAIN.format(w=w, sink=SINK_PORT))
    master = Path(__file__).with_name("peer_postfix_dovecot.py").read_text()
    block = master.split('_MASTER_CF = """\\\n', 1)[1].split('"""', 1)[0]
    (w / "etc" / "master.cf").write_text(block.replace("{port}", f"127.0.0.1:{PF_PORT}"))
    subprocess.run([*pf, "check"], capture_output=True, check=False)
    subprocess.run([*pf, "start"], check=True, capture_output=True)
    time.sleep(1.0)

    def inject(worker: int) -> None:
        with smtplib.SMTP("127.0.0.1", PF_PORT, timeout=30) as s:
            for i in range(worker, n, 20):
                s.sendmail("load@src.test", [f"user{i % 10}@bench.test"], message(i))

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(inject, range(20)))

    def queued() -> int:
        total = 0
        for sub in ("incoming", "active", "deferred", "maildrop", "hold"):
            for _root, _dirs, files in os.walk(w / "spool" / sub):
                total += len(files)
        return total

    deadline = time.monotonic() + 120
    while queued() < n and time.monotonic() < deadline:
        time.sleep(0.1)
    subprocess.run(["postconf", "-c", str(w / "etc"), "-e", "defer_transports ="], check=True)
    started = time.monotonic()
    subprocess.run([*pf, "reload"], check=True, capture_output=True)
    subprocess.run(["postqueue", "-c", str(w / "etc"), "-f"], check=True, capture_output=True)
    try:
        while queued() > 0:
            if time.monotonic() - started > 600:
                raise SystemExit(f"postfix: {queued()} left after 600 s")
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        subprocess.run([*pf, "stop"], capture_output=True, check=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--only", choices=["correo", "postfix"])
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (Postfix)")
    WORK.mkdir(parents=True, exist_ok=True)
    sink = start_sink()
    try:
        results = {}
        if args.only in (None, "postfix"):
            results["postfix"] = run_postfix(args.messages)
        if args.only in (None, "correo"):
            results["correo"] = run_correo(args.messages)
    finally:
        sink.terminate()
        sink.wait()
    for name, seconds in results.items():
        print(
            f"{name:8} {args.messages} messages in {seconds:6.2f} s = "
            f"{args.messages / seconds:7.0f} msg/s"
        )
    if len(results) == 2:
        print(f"ratio correo/postfix: {results['postfix'] / results['correo']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
