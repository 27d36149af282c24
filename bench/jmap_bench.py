"""JMAP Email/query + Email/get of 50 against IMAP SEARCH + FETCH ENVELOPE of 50, over TLS.

    python bench/jmap_bench.py [--messages 10000] [--rounds 20] [--dovecot] [--load N]

One mailbox of ``--messages`` messages (2-20 KB of seeded text, the imap_bench corpus
generator) is appended over IMAP to a fresh correo (and, with ``--dovecot``, written as
Maildir files for a private Debian Dovecot with TLS, as root).  Then, over TLS:

* JMAP (correo's ``https`` listener, one keep-alive HTTPS connection, Basic auth): one
  request with ``Email/query`` (newest first, limit 50) and ``Email/get`` of its ids by
  result reference (the ENVELOPE fields: subject, from, to, cc, sentAt, messageId,
  plus keywords, size and receivedAt);
* IMAP (correo's ``imaps`` and Dovecot's): ``UID SEARCH ALL`` and ``UID FETCH`` of the
  50 highest UIDs ``(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)`` on a selected
  mailbox.

The first request after the load is timed once; then each of ``--rounds`` rounds runs
every server in turn (interleaved, so they share the machine's moments): one message is
appended to each server by a second IMAP session and each client's next request is
"cold" (every cache keyed on the mailbox's MODSEQ is stale), then three "warm" requests
of each.  Medians and the ratios to
Dovecot are printed.  ``--load N`` runs N busy processes meanwhile (the loaded case).

correo's log is searched for ``event=loop.blocked`` afterwards: the loop must never
stall more than 100 ms, the first listing included.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import multiprocessing
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
import urllib3

sys.path.insert(0, str(Path(__file__).parent))
from correo_server import CorreoServer
from imap_bench import PASSWORD, USER, dovecot_start, make_messages

__all__ = ["main"]

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
PROPS = ["id", "subject", "from", "to", "cc", "sentAt", "messageId", "keywords", "size",
         "receivedAt"]  # fmt: skip


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def small_messages(n: int) -> list[bytes]:
    """imap_bench's corpus, each cut to 2-20 KB (the count matters here, not the size)."""
    out = []
    for i, m in enumerate(make_messages(n)):
        head, _, body = m.partition(b"\r\n\r\n")
        out.append(head + b"\r\n\r\n" + body[: 2_000 + (i * 7919) % 18_000] + b"\r\n")
    return out


def correo_start(work: Path, imaps: int, https: int) -> CorreoServer:
    shutil.rmtree(work, ignore_errors=True)
    srv = CorreoServer(work, smtp_port=imaps + 2, pop3s_port=imaps + 3, users=1)
    srv.setup()
    toml = work / "correo.toml"
    text = toml.read_text()
    text = re.sub(r'(?m)^(\w+) = \["127\.0\.0\.1:\d+"\]$', r'\1 = ["127.0.0.1:0"]', text)
    for service, port in (("imaps", imaps), ("https", https), ("smtp", imaps + 2),
                          ("pop3s", imaps + 3)):  # fmt: skip
        text = re.sub(rf"(?m)^{service} = \[.*\]$", f'{service} = ["127.0.0.1:{port}"]', text)
    text = re.sub(r"(?m)^level = .*$", 'level = "info"', text)
    toml.write_text(text)
    srv.start()
    return srv


def fill(port: int, messages: list[bytes]) -> float:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=_tls(), timeout=600)
    client.login(USER, PASSWORD)
    started = time.perf_counter()
    for m in messages:
        typ, _ = client.append("INBOX", None, None, m)
        assert typ == "OK"
    client.logout()
    return len(messages) / (time.perf_counter() - started)


def burn(seconds: float) -> None:
    """One busy process: the "loaded" case (other work on the machine's two cores)."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def appender(port: int) -> Callable[[bytes], None]:
    """A second IMAP session that delivers one new message (APPEND): the next query
    after it is "cold" (the mailbox's MODSEQ moved, every cache keyed on it is stale)."""
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=_tls(), timeout=600)
    client.login(USER, PASSWORD)

    def deliver(message: bytes) -> None:
        typ, _ = client.append("INBOX", None, None, message)
        assert typ == "OK"

    return deliver


def jmap_round(port: int) -> Callable[[], object]:
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    http.auth = (USER, PASSWORD)
    session = http.get(f"https://127.0.0.1:{port}/.well-known/jmap", timeout=60).json()
    account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    body = json.dumps({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [
            ["Email/query", {"accountId": account, "limit": 50,
                             "sort": [{"property": "receivedAt", "isAscending": False}]}, "q"],
            ["Email/get", {"accountId": account, "properties": PROPS,
                           "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}},
             "g"],
        ],
    })  # fmt: skip

    def run() -> object:
        got = http.post(
            f"https://127.0.0.1:{port}/jmap/api/",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=600,
        )
        answer = got.json()["methodResponses"]
        assert len(answer[1][1]["list"]) == 50, answer[1]
        return answer

    return run


def imap_round(port: int) -> Callable[[], object]:
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=_tls(), timeout=600)
    client.login(USER, PASSWORD)
    client.select("INBOX")

    def run() -> object:
        typ, data = client.uid("SEARCH", "ALL")
        assert typ == "OK"
        uids = data[0].split()[-50:]
        span = b",".join(uids).decode()
        typ, fetched = client.uid("FETCH", span, "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")
        assert typ == "OK" and len([f for f in fetched if f != b")"]) == 50
        return fetched

    return run


def maildir_fill(work: Path, messages: list[bytes]) -> None:
    """Dovecot's mailbox written as Maildir files (its APPEND with mail_fsync=always runs
    at ~25/s here); Dovecot indexes them at the first SELECT, inside the first round."""
    new = work / "home" / "Maildir" / "cur"
    new.mkdir(parents=True, exist_ok=True)
    (work / "home" / "Maildir" / "new").mkdir(exist_ok=True)
    (work / "home" / "Maildir" / "tmp").mkdir(exist_ok=True)
    stamp = int(time.time()) - len(messages)
    for i, m in enumerate(messages):
        (new / f"{stamp + i}.M{i}P1.bench,S={len(m)}:2,").write_bytes(m)
    subprocess.run(["chown", "-R", "8:8", str(work / "home")], check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--dovecot", action="store_true", help="also Dovecot (needs root)")
    p.add_argument("--load", type=int, default=0, help="busy processes while measuring")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/correo-jmap-bench"))
    p.add_argument("--port", type=int, default=24_993, help="imaps; https is port+1")
    args = p.parse_args(argv)
    messages = small_messages(args.messages + args.rounds)
    base, extra = messages[: args.messages], messages[args.messages :]
    srv = correo_start(args.workdir / "correo", args.port, args.port + 1)
    dovecot = None
    burners: list[multiprocessing.Process] = []
    try:
        print(f"correo: {fill(args.port, base):.0f} APPENDs/s", flush=True)
        if args.dovecot:
            dovecot = dovecot_start(args.workdir / "dovecot", args.port + 10, tls=True)
            if dovecot is None:
                print("no Dovecot here")
            else:
                maildir_fill(args.workdir / "dovecot", base)
        runs: dict[str, Callable[[], object]] = {
            "correo JMAP": jmap_round(args.port + 1),
            "correo IMAP": imap_round(args.port),
        }
        deliveries = [appender(args.port)]  # one delivery per server and round
        if dovecot is not None:
            runs["Dovecot IMAP"] = imap_round(args.port + 10)
            deliveries.append(appender(args.port + 10))
        first = {name: timed(run) for name, run in runs.items()}  # after start/load
        burners = [
            multiprocessing.Process(target=burn, args=(3600,), daemon=True)
            for _ in range(args.load)
        ]
        for b in burners:
            b.start()
        cold: dict[str, list[float]] = {name: [] for name in runs}
        warm: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(args.rounds):  # interleaved: each round runs every server
            for deliver in deliveries:
                deliver(extra[i])
            for name, run in runs.items():
                cold[name].append(timed(run))
            for _ in range(3):
                for name, run in runs.items():
                    warm[name].append(timed(run))
        assert srv.data is not None
        log = (srv.data / "serve.log").read_text(errors="replace")
        stalls = [line for line in log.splitlines() if "event=loop.blocked" in line]
        print(f"correo loop stalls over 100 ms: {len(stalls)}", *stalls[:3], sep="\n")
    finally:
        for b in burners:
            b.terminate()
        srv.stop()
        if dovecot is not None:
            dovecot.terminate()
            dovecot.wait(20)
    print(f"TLS, {args.messages} messages, {args.rounds} rounds, {args.load} busy processes")
    print(f"{'query + 50 envelopes':22} {'first ms':>9} {'cold ms':>9} {'warm ms':>9}")
    med = {n: (statistics.median(cold[n]), statistics.median(warm[n])) for n in runs}
    for name in runs:
        print(f"{name:22} {first[name]:9.1f} {med[name][0]:9.1f} {med[name][1]:9.1f}")
    if "Dovecot IMAP" in runs:
        peer = med["Dovecot IMAP"]
        for name in ("correo JMAP", "correo IMAP"):
            print(
                f"{name} / Dovecot IMAP: cold {med[name][0] / peer[0]:.2f}"
                f"  warm {med[name][1] / peer[1]:.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
