"""MTA test fixtures: an authoritative DNS server on loopback and correo instances
that each own a mail domain and a loopback address with an MX listener on ``MX_PORT``.

The MX port is one unprivileged port, free on every loopback address the tests use,
picked once per test process (``[outbound] port`` points the senders at it): no root
needed, and two runs (or pytest-xdist workers) on one machine do not collide.

Registered once as a pytest plugin by ``tests/conftest.py``; the ``test_mta_*`` modules
import the helpers (``Instance``, ``message``) from here.
"""

from __future__ import annotations

import atexit
import random
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Server, client_tls, correo
from tests.server.dnsserver import DnsServer, Zone
from tests.server.helpers import mailbox

__all__ = [
    "MX_PORT",
    "PASSWORD",
    "DnsServer",
    "Instance",
    "Zone",
    "base_zone",
    "correo",
    "message",
]

PASSWORD = "mta-secret-123"

#: Loopback addresses the MTA tests listen on (instances, relays, Postfix).
MX_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def _free_mx_port() -> int:
    """A port free on every address of ``MX_ADDRESSES`` at once.

    Drawn below the kernel's ephemeral range (32768+ on Linux) so outgoing connections
    do not take it between tests, and at random so concurrent runs pick different ones.
    """
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        held: list[socket.socket] = []
        try:
            for ip in MX_ADDRESSES:
                held.append(socket.create_server((ip, port)))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return port
    raise RuntimeError("no port free on all of " + ", ".join(MX_ADDRESSES))


#: The port of every MX in the MTA tests (``[outbound] port`` of each instance).
MX_PORT = _free_mx_port()


FAST_OUTBOUND = {
    "port": str(MX_PORT),
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
        "smtp": f'["{ip}:{MX_PORT}"]',
        "submission": '["127.0.0.1:0"]',
        "submissions": '["127.0.0.1:0"]',
        "pop3": "[]",
        "pop3s": '["127.0.0.1:0"]',
        "imap": "[]",
        "imaps": "[]",
        "lmtp": "[]",
        "sieve": "[]",
        "https": "[]",
        "http": "[]",  # two instances on one machine: no fixed default ports
        "metrics": "[]",
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
class Instance(Server):
    """One correo server owning ``domain``, its MX listener on ``ip``:``MX_PORT``."""

    domain: str = field(kw_only=True)
    ip: str = field(kw_only=True)
    users: tuple[str, ...] = ("alice", "bob")

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

    def submit(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Submission over STARTTLS with AUTH, as a mail client would."""
        self.submit_many(sender, [(recipients, message)])

    def submit_many(self, sender: str, items: list[tuple[list[str], bytes]]) -> None:
        """Several messages over one authenticated submission session."""
        with smtplib.SMTP("127.0.0.1", self.ports["submission"], timeout=10) as s:
            s.starttls(context=client_tls())
            s.login(sender, PASSWORD)
            for recipients, msg in items:
                s.sendmail(sender, recipients, msg)

    def mailbox(self, user: str) -> list[bytes]:
        return mailbox(self.ports["pop3s"], f"{user}@{self.domain}", PASSWORD)

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
            if "Mail queue is empty" in out:
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
        inst = Instance(tmp_path / domain, domain=domain, ip=ip)
        inst.setup(dns_server.port, outbound)
        if start:
            inst.start()
        made.append(inst)
        return inst

    yield make
    for inst in made:
        if inst.proc is not None and inst.proc.poll() is None:
            inst.stop()
