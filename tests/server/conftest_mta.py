"""MTA test fixtures: an authoritative DNS server on loopback and correo instances
that each own a mail domain and a loopback address with an MX listener on port 25.

Imported by the ``test_mta_*`` modules (not a pytest conftest, so it stays opt-in).
"""

from __future__ import annotations

import atexit
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

PASSWORD = "mta-secret-123"

# name -> {rtype: [values]}; MX values are "pref host", CNAME a name.
Zone = dict[str, dict[str, list[str]]]


class _Answerer:
    """Answers queries from a zone dict: NXDOMAIN, NODATA, CNAME chains, MX, A, AAAA."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.lock = threading.Lock()

    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        rtype = dns.rdatatype.to_text(q.rdtype)
        with self.lock:
            for _ in range(8):
                records = self.zone.get(name)
                if records is None:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                    break
                if "CNAME" in records and rtype != "CNAME":
                    target = records["CNAME"][0]
                    response.answer.append(
                        dns.rrset.from_text(name + ".", 60, "IN", "CNAME", target + ".")
                    )
                    name = target.lower()
                    continue
                values = records.get(rtype, [])
                if values:
                    texts = [v if rtype != "MX" else _mx(v) for v in values]
                    response.answer.append(
                        dns.rrset.from_text_list(name + ".", 60, "IN", rtype, texts)
                    )
                break
        return response.to_wire()


def _mx(value: str) -> str:
    pref, host = value.split()
    return f"{pref} {host if host == '.' else host + '.'}"


class DnsServer:
    """UDP and TCP on 127.0.0.1:<free port>; ``zone`` may be changed while it runs."""

    def __init__(self, zone: Zone) -> None:
        self.answerer = _Answerer(zone)
        answerer = self.answerer

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                out = answerer.answer(data)
                if out is not None:
                    sock.sendto(out, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                head = conn.recv(2)
                if len(head) < 2:
                    return
                length = int.from_bytes(head, "big")
                data = b""
                while len(data) < length:
                    chunk = conn.recv(length - len(data))
                    if not chunk:
                        return
                    data += chunk
                out = answerer.answer(data)
                if out is not None:
                    conn.sendall(len(out).to_bytes(2, "big") + out)

        self.udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        port = self.udp.server_address[1]
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
        self.port = port
        for srv in (self.udp, self.tcp):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    @property
    def zone(self) -> Zone:
        return self.answerer.zone

    def close(self) -> None:
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()


def correo(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "--data", str(data), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


FAST_OUTBOUND = {
    "retry_initial": "1.0",
    "retry_max": "2.0",
    "poll_interval": "0.3",
    "connect_timeout": "2.0",
    "delay_warning": "0.0",
}


_TEMPLATES: dict[str, Path] = {}


def _make_template(data: Path, domain: str, users: tuple[str, ...]) -> None:
    r = correo(data, "init", "--domain", domain, "--hostname", f"mx.{domain}")
    assert r.returncode == 0, r.stderr
    ip = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}[domain]
    cfg = (data / "correo.toml").read_text()
    listen = {
        "smtp": f'["{ip}:25"]',
        "submission": '["127.0.0.1:0"]',
        "submissions": '["127.0.0.1:0"]',
        "pop3": "[]",
        "pop3s": '["127.0.0.1:0"]',
        "imap": "[]",
        "imaps": "[]",
        "lmtp": "[]",
        "sieve": "[]",
    }
    for service, value in listen.items():
        cfg = re.sub(rf"^{service} = \[.*\]$", f"{service} = {value}", cfg, flags=re.M)
    cfg = cfg.replace('level = "info"', 'level = "debug"')
    (data / "correo.toml").write_text(cfg)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "correo.cli.main",
                "--data",
                str(data),
                "user",
                "add",
                f"{user}@{domain}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for user in users
    ]
    for proc in procs:
        _, err = proc.communicate(PASSWORD + "\n", timeout=60)
        assert proc.returncode == 0, err


@dataclass
class Instance:
    """One correo server owning ``domain``, its MX listener on ``ip``:25."""

    data: Path
    domain: str
    ip: str
    users: tuple[str, ...] = ("alice", "bob")
    proc: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)

    def setup(self, dns_port: int, outbound: Mapping[str, str] | None = None) -> None:
        """Copy a per-domain template (init + users are slow), then configure."""
        template = _TEMPLATES.get(self.domain)
        if template is None:
            root = tempfile.mkdtemp(prefix="correo-mta-")
            atexit.register(shutil.rmtree, root, True)
            template = Path(root) / self.domain
            _make_template(template, self.domain, self.users)
            _TEMPLATES[self.domain] = template
        shutil.copytree(template, self.data)
        cfg = (self.data / "correo.toml").read_text()
        ns = f'nameservers = ["127.0.0.1:{dns_port}"]'
        cfg = re.sub(r"^nameservers = .*$", ns, cfg, flags=re.M)
        settings = {**FAST_OUTBOUND, **(outbound or {})}
        cfg += "\n[outbound]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
        (self.data / "correo.toml").write_text(cfg)

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "correo.cli.main", "--data", str(self.data), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        lines = self.log_lines

        def pump(stream: object) -> None:
            for line in stream:  # type: ignore[attr-defined]
                lines.append(line)
                if "event=server.ready" in line:
                    self.ports = {
                        m.group(1): int(m.group(3))
                        for m in re.finditer(r"(\w+)=([\d.]+):(\d+)", line)
                    }
                    ready.set()

        threading.Thread(target=pump, args=(self.proc.stderr,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + "".join(lines))

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log(self) -> str:
        return "".join(self.log_lines)

    def submit(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Submission over STARTTLS with AUTH, as a mail client would."""
        import smtplib
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.ports["submission"], timeout=10) as s:
            s.starttls(context=ctx)
            s.login(sender, PASSWORD)
            s.sendmail(sender, recipients, message)

    def submit_many(self, sender: str, items: list[tuple[list[str], bytes]]) -> None:
        """Several messages over one authenticated submission session."""
        import smtplib
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", self.ports["submission"], timeout=10) as s:
            s.starttls(context=ctx)
            s.login(sender, PASSWORD)
            for recipients, msg in items:
                s.sendmail(sender, recipients, msg)

    def mailbox(self, user: str) -> list[bytes]:
        import poplib
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        client = poplib.POP3_SSL("127.0.0.1", self.ports["pop3s"], context=ctx, timeout=10)
        try:
            client.user(f"{user}@{self.domain}")
            client.pass_(PASSWORD)
            count, _ = client.stat()
            return [b"\r\n".join(client.retr(i + 1)[1]) for i in range(count)]
        finally:
            client.quit()

    def wait_mail(self, user: str, count: int, timeout: float = 15.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            box = self.mailbox(user)
            if len(box) >= count or time.monotonic() > deadline:
                return box
            time.sleep(0.1)

    def queue_empty(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = correo(self.data, "queue", "list").stdout
            if "empty" in out:
                return True
            time.sleep(0.2)
        return False


def message(sender: str, to: str, subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@test>\r\n"
        f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


def base_zone() -> Zone:
    return {
        "a.test": {"MX": ["10 mx.a.test"]},
        "mx.a.test": {"A": ["127.0.0.2"]},
        "b.test": {"MX": ["10 mx.b.test"]},
        "mx.b.test": {"A": ["127.0.0.3"]},
        "nullmx.test": {"MX": ["0 ."]},
        "alias.test": {"MX": ["10 mx-alias.b.test"]},
        "mx-alias.b.test": {"CNAME": ["mx.b.test"]},
    }


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer(base_zone())
    yield server
    server.close()


@pytest.fixture
def instances(tmp_path: Path, dns_server: DnsServer) -> Iterator[object]:
    """Factory: ``make(domain, ip, outbound=None, start=True)`` → Instance (stopped at end)."""
    made: list[Instance] = []

    def make(
        domain: str, ip: str, outbound: Mapping[str, str] | None = None, start: bool = True
    ) -> Instance:
        inst = Instance(tmp_path / domain, domain, ip)
        inst.setup(dns_server.port, outbound)
        if start:
            inst.start()
        made.append(inst)
        return inst

    yield make
    for inst in made:
        if inst.proc is not None and inst.proc.poll() is None:
            inst.stop()
