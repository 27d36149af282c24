"""Two correo nodes on one PostgreSQL database, end to end.

Each node is a real ``correo serve`` subprocess with its own data folder, made by
``correo init --store`` against the tests' private cluster (tests/pg.py).  Users,
aliases, scripts and keys are changed through node 1's CLI only; node 2 must act on
them.  Outbound mail goes to a recording mail exchanger (``[outbound] relayhost``).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import smtplib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo
from tests.pg import PgCluster
from tests.server.cluster_helpers import CaptureMx, eventually, make_node
from tests.server.helpers import RawSmtp, mailbox
from tests.server.imap_helpers import RawImap, message

pytest.importorskip("psycopg", reason="pip install 'correo[postgresql]'")

ALICE = "alice@example.test"


@dataclass
class Pair:
    url: str
    one: Server
    two: Server

    def nodes(self) -> tuple[Server, Server]:
        return self.one, self.two


def _start_pair(
    root: Path,
    url: str,
    settings: Mapping[str, str] | None = None,
    outbound: Mapping[str, str] | None = None,
) -> Pair:
    one = make_node(
        root / "node1", url, "node1.example.test", settings=settings, outbound=outbound, users=True
    )
    two = make_node(root / "node2", url, "node2.example.test", settings=settings, outbound=outbound)
    one.start()
    try:
        two.start()
    except BaseException:
        one.stop()
        raise
    return Pair(url, one, two)


#: Two nodes, PostgreSQL and the test's clients share this machine's cores, so a loop
#: that is merely busy can fall behind by more than the watchdog's 100 ms while computing
#: for less; a callback that computed for 100 ms (what the watchdog reports on an idle
#: machine) still fails the test.
_COMPUTED_MS = 100


def _stop_pair(pair: Pair) -> None:
    for node in pair.nodes():
        node.allow_stalls = True  # judged below, by CPU time rather than lateness
        if node.proc is not None and node.proc.poll() is None:
            assert node.stop() == 0, node.log()[-3000:]
        blocked = [
            line
            for line in node.log_lines
            if "event=loop.blocked" in line
            and int(re.search(r"cpu_ms=(\d+)", line).group(1)) >= _COMPUTED_MS  # type: ignore[union-attr]
        ]
        assert not blocked, "the event loop was blocked:\n" + "".join(blocked[:5])


@pytest.fixture(scope="module")
def mx() -> Iterator[CaptureMx]:
    server = CaptureMx()
    yield server
    server.close()


def _outbound(mx: CaptureMx) -> dict[str, str]:
    return {
        "relayhost": f'"[127.0.0.1]:{mx.port}"',
        "relayhost_tls": '"none"',
        "mta_sts": "false",
        "retry_initial": "1.0",
        "retry_max": "2.0",
        "greeting_timeout": "120.0",  # the exchanger holds its greeting while a queue fills
        "poll_interval": "0.3",
        "connect_timeout": "2.0",
        "delay_warning": "0.0",
        "max_connections": "4",  # a runner keeps 100 messages in hand: both nodes work
    }


@pytest.fixture(scope="module")
def pair(
    pg_cluster: PgCluster, mx: CaptureMx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two serving nodes on a database that node 1's ``correo init`` created."""
    made = _start_pair(
        tmp_path_factory.mktemp("cluster"), pg_cluster.new_database(), None, _outbound(mx)
    )
    yield made
    _stop_pair(made)


def imap_login(node: Server, user: str = ALICE, password: str | None = None) -> imaplib.IMAP4:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=10
    )
    client.login(user, PASSWORDS[user] if password is None else password)
    return client


def login_works(node: Server, user: str, password: str) -> bool:
    try:
        imap_login(node, user, password).logout()
    except imaplib.IMAP4.error:
        return False
    return True


def subjects(client: imaplib.IMAP4, box: str = "INBOX") -> list[str]:
    typ, _ = client.select(box)
    assert typ == "OK", box
    typ, data = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    return [
        item[1].split(b"Subject: ", 1)[1].split(b"\r\n")[0].decode()
        for item in data
        if isinstance(item, tuple)
    ]


def send(node: Server, recipients: list[str], subject: str, sender: str = "x@remote.test") -> None:
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail(sender, recipients, message(subject, sender=sender, to=recipients[0]))


def cli(node: Server, *args: str, stdin: str | None = None) -> str:
    result = correo(node.data, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- mail crosses nodes ---------------------------------------------------------------


def test_smtp_into_node_1_and_imap_fetch_on_node_2(pair: Pair) -> None:
    for node in pair.nodes():  # users, domains and keys are the database's, not the folder's
        assert not (node.data / "directory.db").exists()
        assert not (node.data / "dkim").exists()
    body = b"Line one.\r\n" + b"x" * 300_000 + b"\r\n"  # past one stored chunk
    data = message("crossing nodes").replace(b"Hello there.\r\n", body)
    with smtplib.SMTP("127.0.0.1", pair.one.ports["smtp"], timeout=10) as smtp:
        smtp.sendmail("x@remote.test", [ALICE], data)
    client = imap_login(pair.two)
    try:
        client.select("INBOX")
        typ, found = client.uid("SEARCH", None, "SUBJECT", '"crossing nodes"')
        assert typ == "OK" and found[0], found
        typ, fetched = client.uid("FETCH", found[0].split()[-1].decode(), "(BODY.PEEK[])")
        assert typ == "OK"
        stored = next(item[1] for item in fetched if isinstance(item, tuple))
        assert stored.endswith(data)  # after the trace fields node 1 added
        assert b"by node1.example.test" in stored.split(b"\r\n\r\n", 1)[0]
    finally:
        client.logout()


def test_idle_on_node_2_sees_a_delivery_to_node_1_within_a_second(pair: Pair) -> None:
    """Issue 12: node 2 tells its idler within a second of node 1's 250 after DATA.

    The claim stays one second, timed from the 250 (the commit on node 1); it is judged
    on the median of three deliveries, so one round in which two nodes, PostgreSQL and
    the test share a loaded machine's cores and the client is descheduled does not fail
    it, while a node that misses NOTIFY or polls slowly still does."""
    raw = RawImap(pair.two.ports["imaps"])
    try:
        raw.login(ALICE)
        selected = raw.cmd("s", "SELECT INBOX")
        exists = next(int(line.split()[1]) for line in selected if line.endswith(b"EXISTS"))
        raw.send(b"i IDLE\r\n")
        assert raw.line().startswith(b"+ ")
        raw.sock.settimeout(10)  # not hung; the bound is on the median below
        waits = []
        with smtplib.SMTP("127.0.0.1", pair.one.ports["smtp"], timeout=10) as smtp:
            for n in range(3):
                smtp.sendmail("x@remote.test", [ALICE], message(f"for the idler {n}"))
                acknowledged = time.monotonic()  # the 250 after DATA: committed on node 1
                line = raw.line()
                while not (line.endswith(b"EXISTS") and int(line.split()[1]) > exists):
                    line = raw.line()
                waits.append(time.monotonic() - acknowledged)
                exists = int(line.split()[1])
        assert sorted(waits)[1] < 1.0, f"node 2 told its IDLE session after {waits} s"
        raw.send(b"DONE\r\n")
        assert raw.until(b"i")[-1] == b"i OK IDLE terminated"
    finally:
        raw.close()


def test_concurrent_appends_through_both_nodes_get_unique_increasing_uids(pair: Pair) -> None:
    box = "Shared"
    setup = imap_login(pair.one)
    assert setup.create(box)[0] == "OK"
    setup.logout()
    per_client = 25
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def appender(index: int, node: Server) -> None:
        try:
            client = imap_login(node)
            uids = []
            for n in range(per_client):
                typ, data = client.append(box, None, None, message(f"c{index}-{n}"))
                assert typ == "OK", data
                found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                assert found, data
                uids.append(int(found.group(1)))
            client.logout()
            results[index] = uids
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=appender, args=(i, pair.one if i % 2 else pair.two))
        for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    every = [uid for uids in results.values() for uid in uids]
    assert len(every) == len(set(every)) == 4 * per_client  # never reused
    for uids in results.values():
        assert uids == sorted(uids)  # one client's appends: increasing
    for node in pair.nodes():
        client = imap_login(node)
        client.select(box)
        typ, data = client.fetch("1:*", "(UID)")
        assert typ == "OK"
        in_order = [int(re.search(rb"UID (\d+)", d).group(1)) for d in data]  # type: ignore[union-attr]
        client.logout()
        assert in_order == sorted(every)  # sequence order is UID order on both nodes


# -- the directory, scripts and keys are the cluster's ---------------------------------


def test_a_user_changed_through_node_1_counts_on_node_2_at_once(pair: Pair) -> None:
    dave = "dave@example.test"
    cli(pair.one, "user", "add", dave, stdin="dave-secret-1\n")
    assert login_works(pair.two, dave, "dave-secret-1")  # no wait: logins ask the database
    cli(pair.one, "user", "passwd", dave, stdin="dave-secret-2\n")
    assert not login_works(pair.two, dave, "dave-secret-1")
    assert login_works(pair.two, dave, "dave-secret-2")
    cli(pair.one, "user", "del", dave)
    assert not login_works(pair.two, dave, "dave-secret-2")


def test_an_alias_added_through_node_1_routes_mail_on_node_2(pair: Pair) -> None:
    cli(pair.one, "alias", "add", "sales@example.test", "bob@example.test")

    def accepted() -> bool:
        smtp = RawSmtp(pair.two.ports["smtp"])
        try:
            smtp.cmd("EHLO client.test")
            smtp.cmd("MAIL FROM:<x@remote.test>")
            return smtp.cmd("RCPT TO:<sales@example.test>")[0] == 250
        finally:
            smtp.close()

    # Node 2 reloads on node 1's NOTIFY (tests/directory/test_postgres.py shows that it
    # is the NOTIFY); 10 s only says "not never" on a loaded machine.
    assert eventually(accepted, timeout=10.0)
    send(pair.two, ["sales@example.test"], "to sales")
    client = imap_login(pair.two, "bob@example.test")
    try:
        assert "to sales" in subjects(client)
    finally:
        client.logout()


def test_a_sieve_script_put_through_node_1_files_mail_on_node_2(pair: Pair) -> None:
    erin = "erin@example.test"
    cli(pair.one, "user", "add", erin, stdin="erin-secret-1\n")
    script = 'require ["fileinto", "mailbox"];\nfileinto :create "Filed";\n'
    cli(pair.one, "sieve", "put", erin, "filter", "-", "--activate", stdin=script)
    send(pair.two, [erin], "sorted by node 2")
    client = imap_login(pair.two, erin, "erin-secret-1")
    try:
        assert subjects(client, "Filed") == ["sorted by node 2"]
        assert subjects(client, "INBOX") == []
    finally:
        client.logout()


def test_dkim_rotate_through_node_1_makes_node_2_sign_with_the_new_selector(
    pair: Pair, mx: CaptureMx
) -> None:
    reloads = pair.two.log().count("event=dkim.reloaded")
    out = cli(pair.one, "dkim", "rotate", "example.test")
    active = set(re.findall(r"^active +(\S+)\._domainkey", out, re.M))
    assert len(active) == 2, out
    assert eventually(lambda: pair.two.log().count("event=dkim.reloaded") > reloads, 15.0)
    with smtplib.SMTP("127.0.0.1", pair.two.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=client_tls())
        smtp.login(ALICE, PASSWORDS[ALICE])
        smtp.sendmail(ALICE, ["someone@remote.test"], message("signed", to="someone@remote.test"))
    assert eventually(lambda: any(b"Subject: signed" in d.data for d in mx.delivered()), 15)
    (signed,) = [d for d in mx.delivered() if b"Subject: signed" in d.data]
    selectors = set(re.findall(rb"DKIM-Signature:[^:]*?\bs=([\w-]+)", signed.data, re.S))
    assert {s.decode() for s in selectors} == active
    # signed where it was submitted: node 2's trace field (either node's runner may take
    # the queued message out, so the HELO it was sent with names either)
    head = signed.data.split(b"\r\n\r\n", 1)[0]
    assert re.search(
        rb"^Received:[^\r]*(?:\r\n[ \t][^\r]*)*\bby node2\.example\.test\b", head, re.M
    )


def test_both_runners_drain_a_queue_of_500_exactly_once(pair: Pair, mx: CaptureMx) -> None:
    mx.hold()  # the queue fills first: the runners' connections wait for a greeting
    ids = [f"q{i}@queue.test" for i in range(500)]
    errors: list[BaseException] = []

    def submit(node: Server, chunk: list[str]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30) as smtp:
                smtp.starttls(context=client_tls())
                smtp.login(ALICE, PASSWORDS[ALICE])
                for mid in chunk:
                    text = (
                        f"From: {ALICE}\r\nTo: far@remote.test\r\nSubject: queued\r\n"
                        f"Message-ID: <{mid}>\r\n\r\nbody\r\n"
                    )
                    smtp.sendmail(ALICE, ["far@remote.test"], text.encode())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    chunks = [ids[i::4] for i in range(4)]
    threads = [
        threading.Thread(target=submit, args=(pair.one if i % 2 else pair.two, chunk))
        for i, chunk in enumerate(chunks)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
    finally:
        mx.release()

    def drained() -> bool:
        got = {d.message_id for d in mx.delivered()}
        return set(ids) <= got

    assert eventually(drained, timeout=120.0, step=0.2)
    assert eventually(lambda: "empty" in cli(pair.two, "queue", "list"), timeout=30.0, step=0.2)
    queued = [d for d in mx.delivered() if d.message_id.endswith("@queue.test")]
    counts = Counter(d.message_id for d in queued)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}, [m for m, n in counts.items() if n > 1][:5]
    by_node = Counter(d.helo for d in queued)
    assert set(by_node) == {"node1.example.test", "node2.example.test"}, by_node


# -- one budget of password guesses -----------------------------------------------------


def test_a_password_guesser_gets_one_budget_for_the_whole_cluster(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    settings = {"free_failures": "10", "lockout_failures": "4", "max_delay": "0.2"}  # quick
    pair = _start_pair(tmp_path, pg_cluster.new_database(), settings)
    try:
        for node in (pair.one, pair.two, pair.one, pair.two):  # two tries on each node
            assert not login_works(node, ALICE, "a wrong guess")
        # Counted per node, each would have seen two failures and let this one in.
        for node in pair.nodes():
            assert not login_works(node, ALICE, PASSWORDS[ALICE])
        assert eventually(lambda: "event=auth.locked" in pair.two.log(), timeout=5.0)
    finally:
        _stop_pair(pair)


# -- a node dies ------------------------------------------------------------------------


def _load(port: int, worker: int, acked: list[str], stop: threading.Event) -> None:
    """One SMTP session delivering to alice until stopped or cut off."""
    with contextlib.suppress(OSError):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO load.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        n = 0
        while not stop.is_set():
            tag = f"w{worker}-{n}"
            n += 1
            sock.sendall(b"MAIL FROM:<l@load.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
            if [reader.readline()[:3] for _ in range(3)] != [b"250", b"250", b"354"]:
                return
            sock.sendall(f"Subject: {tag}\r\n\r\n".encode() + b"x" * 2000 + b"\r\n.\r\n")
            if reader.readline()[:3] != b"250":
                return
            acked.append(tag)


def test_kill_9_of_node_1_under_smtp_load_loses_nothing_acknowledged(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    pair = _start_pair(tmp_path, pg_cluster.new_database())
    try:
        acked: list[str] = []
        stop = threading.Event()
        threads = [
            threading.Thread(target=_load, args=(pair.one.ports["smtp"], i, acked, stop))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        assert eventually(lambda: len(acked) >= 200, timeout=30.0, step=0.05)
        pair.one.kill()  # SIGKILL in the middle of the load
        stop.set()
        for t in threads:
            t.join(10)
        acknowledged = list(acked)
        stored = mailbox(pair.two.ports["pop3s"], ALICE)  # read through the survivor
        seen = Counter(m.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in stored)
        assert [tag for tag in acknowledged if seen[tag] != 1] == []
        assert set(seen.values()) == {1}  # nothing stored twice
    finally:
        _stop_pair(pair)
