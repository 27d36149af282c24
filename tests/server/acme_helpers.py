"""Debian's pebble (a test ACME server) on free loopback ports, validating for real.

Pebble resolves names through the test DNS server (``-dnsserver``) and validates on
the ports correo listens on (``httpPort``/``tlsPort``), so correo's listener ports are
chosen before either starts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from tests.pki import TestCA
from tests.server.dnsserver import DnsServer

__all__ = ["Pebble", "free_port", "peer_certificate", "wait_for"]

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Pebble:
    """``Pebble(dir, dns, http_port=…, tls_port=…, validity=…)``; ``directory`` is its URL."""

    def __init__(
        self,
        folder: Path,
        dns: DnsServer,
        *,
        http_port: int,
        tls_port: int,
        validity: int = 3600,
    ) -> None:
        if not os.access(PEBBLE, os.X_OK):
            pytest.skip("pebble is not installed (apt-get install pebble)")
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = TestCA(folder / "ca")
        cert, key = folder / "pebble.pem", folder / "pebble.key"
        self.ca.issue("localhost", cert, key)
        self.port, self.management = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": validity,
            }
        }
        (folder / "pebble.json").write_text(json.dumps(config))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",  # validate at once
            "PEBBLE_VA_ALWAYS_VALID": "0",  # really validate
            "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce: deterministic tests
            "PEBBLE_AUTHZREUSE": "0",  # every order validates again (renewal failures)
        }
        self.log = folder / "pebble.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [PEBBLE, "-config", str(folder / "pebble.json"), "-dnsserver", dns.address],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_for(self._up, 20, "pebble to listen")

    @property
    def directory(self) -> str:
        return f"https://localhost:{self.port}/dir"

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("pebble exited:\n" + self.log.read_text())
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def root(self) -> bytes:
        """Pebble's root certificate (new every run), from its management interface."""
        ctx = ssl.create_default_context(cafile=str(self.ca.cert_path))
        url = f"https://localhost:{self.management}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as answer:
            data: bytes = answer.read()
        return data

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def peer_certificate(
    port: int, name: str, *, cafile: Path | None = None, alpn: list[str] | None = None
) -> x509.Certificate:
    """The certificate the server at 127.0.0.1:``port`` presents for SNI ``name``.

    With ``cafile`` the chain and the name are verified against it.
    """
    ctx = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl.create_default_context()
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
