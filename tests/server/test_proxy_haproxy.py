"""correo behind a real HAProxy: ``send-proxy-v2`` and ``send-proxy`` in ``mode tcp``.

A private haproxy on free ports forwards SMTP (version 2 header), POP3S and IMAPS
(version 1 header, TLS passed through to correo) and checks each node the way
docs/cluster.md says: ``/readyz`` on the metrics listener, which reads no header. The
clients connect to haproxy from 127.0.0.3 and 127.0.0.4; correo must see those, never
haproxy's own 127.0.0.1.
"""

from __future__ import annotations

import imaplib
import poplib
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir
from tests.server.acme_helpers import free_port
from tests.server.helpers import message

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
)
pytestmark = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed")

ALICE, BOB = "alice@example.test", "bob@example.test"

_CONFIG = """\
global
    maxconn 200
    stats socket {work}/stats.sock mode 600 level operator

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend smtp
    bind 127.0.0.1:{smtp}
    default_backend smtp
backend smtp
    option httpchk GET /readyz
    server node1 127.0.0.1:{correo_smtp} send-proxy-v2 check port {metrics} inter 300ms

frontend pop3s
    bind 127.0.0.1:{pop3s}
    default_backend pop3s
backend pop3s
    server node1 127.0.0.1:{correo_pop3s} send-proxy

frontend imaps
    bind 127.0.0.1:{imaps}
    default_backend imaps
backend imaps
    option httpchk GET /readyz
    server node1 127.0.0.1:{correo_imaps} send-proxy-v2 check port {metrics} inter 300ms
"""


class Haproxy:
    def __init__(self, work: Path, node: Server) -> None:
        self.work = work
        self.ports = {"smtp": free_port(), "pop3s": free_port(), "imaps": free_port()}
        config = _CONFIG.format(
            work=work,
            metrics=node.ports["metrics"],
            **self.ports,
            **{f"correo_{s}": node.ports[s] for s in self.ports},
        )
        (work / "haproxy.cfg").write_text(config)
        assert HAPROXY is not None
        check = subprocess.run(
            [HAPROXY, "-c", "-f", str(work / "haproxy.cfg")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(work / "haproxy.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stat(self) -> str:
        """``show stat`` over the stats socket: one CSV line per frontend and server."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.work / "stats.sock"))
            sock.sendall(b"show stat\n")
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        return out.decode()

    def wait_up(self, timeout: float = 20.0) -> None:
        """Until haproxy's health checks (``/readyz``) mark the checked servers UP."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                lines = [ln for ln in self.stat().splitlines() if ",node1," in ln]
            except OSError:
                lines = []
            checked = [ln for ln in lines if ln.startswith(("smtp,", "imaps,"))]
            if len(checked) == 2 and all(",UP," in ln for ln in checked):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not mark correo UP: {lines}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Haproxy]]:
    root = tmp_path_factory.mktemp("haproxy")
    data = root / "data"
    make_data_dir(data, {"proxy_protocol": '["127.0.0.1"]'})
    node = Server(data)
    node.start()
    lb = Haproxy(root, node)
    try:
        lb.wait_up()
        yield node, lb
    finally:
        lb.stop()
        assert node.stop() == 0, node.log()[-3000:]


def _source(address: str) -> tuple[str, int]:
    return (address, 0)


def test_smtp_through_haproxy_v2_names_the_client(balanced: tuple[Server, Haproxy]) -> None:
    node, lb = balanced
    with smtplib.SMTP(
        "127.0.0.1", lb.ports["smtp"], timeout=10, source_address=_source("127.0.0.3")
    ) as smtp:
        smtp.ehlo("client.example")
        smtp.sendmail(BOB, [ALICE], message(BOB, ALICE, "through haproxy"))
    deadline = time.monotonic() + 10
    found = b""
    while not found and time.monotonic() < deadline:
        pop = poplib.POP3_SSL(
            "127.0.0.1", lb.ports["pop3s"], context=client_tls(), timeout=10
        )  # version 1 header, TLS after it
        pop.user(ALICE)
        pop.pass_(PASSWORDS[ALICE])
        for i in range(pop.stat()[0]):
            text = b"\r\n".join(pop.retr(i + 1)[1])
            if b"Subject: through haproxy" in text:
                found = text
        pop.quit()
    assert found, node.log()[-3000:]
    received = found.split(b"\r\n\r\n")[0]
    assert b"[127.0.0.3]" in received, received
    assert node.wait_log("event=smtp.connect") and "peer=127.0.0.3:" in node.log()


def test_imaps_through_haproxy_tls_after_the_header(balanced: tuple[Server, Haproxy]) -> None:
    node, lb = balanced
    start = len(node.log_lines)

    class FromFour(imaplib.IMAP4_SSL):
        def _create_socket(self, timeout: float | None = None) -> socket.socket:
            raw = socket.create_connection(
                (self.host, self.port), 10, source_address=_source("127.0.0.4")
            )
            return self.ssl_context.wrap_socket(raw, server_hostname=self.host)

    # bob's: the POP3 logins of the test before are alice's, and their lines may still
    # be on their way into the log
    with FromFour("127.0.0.1", lb.ports["imaps"], ssl_context=client_tls()) as imap:
        imap.login(BOB, PASSWORDS[BOB])
        assert imap.select("INBOX")[0] == "OK"
    deadline = time.monotonic() + 30
    logins: list[str] = []
    while not logins and time.monotonic() < deadline:
        logins = [
            ln for ln in node.log_lines[start:] if "event=auth.ok" in ln and f"user={BOB}" in ln
        ]
        time.sleep(0.05)
    assert logins and all("peer=127.0.0.4" in ln for ln in logins), logins
    refused = [ln for ln in node.log_lines if "event=proxy.refused" in ln]
    assert not refused, refused  # haproxy's checks and connections all carried a header
