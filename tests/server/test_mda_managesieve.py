"""ManageSieve (RFC 5804) over real sockets: a raw transcript and sieve-connect interop."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, correo, make_data_dir

ALICE = "alice@example.test"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("sieve") / "data"
    make_data_dir(data, {"sieve": '["127.0.0.1:0"]', "lmtp": '["127.0.0.1:0"]'})
    server = Server(data)
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


class Client:
    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=10
        )
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(self.buf)
        self.buf += chunk

    def response(self) -> list[bytes]:
        """Lines up to and including the OK/NO/BYE line (literals are read whole)."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            if line.startswith(b"{") and line.endswith(b"}"):
                size = int(line[1:-1].rstrip(b"+"))
                while len(self.buf) < size:
                    self._fill()
                line, self.buf = self.buf[:size], self.buf[size:]
            lines.append(line)
            if line.split(b" ", 1)[0] in (b"OK", b"NO", b"BYE"):
                return lines

    def cmd(self, text: bytes) -> list[bytes]:
        self.sock.sendall(text + b"\r\n")
        return self.response()

    def starttls(self) -> list[bytes]:
        assert self.cmd(b"STARTTLS")[-1].startswith(b"OK")
        self.sock = client_tls().wrap_socket(self.sock, server_hostname="localhost")
        return self.response()


def login(port: int) -> Client:
    c = Client(port)
    greeting = c.response()
    assert b'"STARTTLS"' in greeting and b'"SASL" ""' in greeting
    caps = c.starttls()
    assert b'"SASL" "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"' in caps and b'"VERSION" "1.0"' in caps
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode())
    assert c.cmd(b'AUTHENTICATE "PLAIN" "' + token + b'"')[-1].startswith(b"OK")
    return c


def test_transcript(srv: Server) -> None:
    c = Client(srv.ports["sieve"])
    c.response()
    no = c.cmd(b'AUTHENTICATE "PLAIN" "AGFsaWNlAHg="')
    assert no[-1].startswith(b"NO (ENCRYPT-NEEDED)")
    c = login(srv.ports["sieve"])
    assert c.cmd(b'HAVESPACE "s1" 100')[-1] == b"OK"
    assert c.cmd(b'HAVESPACE "s1" 99999999')[-1].startswith(b"NO (QUOTA/MAXSIZE)")
    script = b'require "fileinto";\r\nfileinto "Archive";\r\n'
    assert c.cmd(b'PUTSCRIPT "s1" {%d+}\r\n' % len(script) + script)[-1] == b"OK"
    bad = b"if true {\r\n  keep\r\n"
    no = c.cmd(b"CHECKSCRIPT {%d+}\r\n" % len(bad) + bad)[-1]
    assert no.startswith(b"NO") and b"line" in no
    assert c.cmd(b'PUTSCRIPT "bad" {%d}\r\n' % len(bad) + bad)[-1].startswith(b"NO")
    assert c.cmd(b'SETACTIVE "s1"')[-1] == b"OK"
    assert c.cmd(b"LISTSCRIPTS") == [b'"s1" ACTIVE', b"OK"]
    assert c.cmd(b'GETSCRIPT "s1"') == [script, b"", b"OK"]
    assert c.cmd(b'DELETESCRIPT "s1"')[-1].startswith(b"NO (ACTIVE)")
    assert c.cmd(b'RENAMESCRIPT "s1" "s2"')[-1] == b"OK"
    assert c.cmd(b'GETSCRIPT "s1"')[-1].startswith(b"NO (NONEXISTENT)")
    assert c.cmd(b'SETACTIVE ""')[-1] == b"OK"
    assert c.cmd(b'DELETESCRIPT "s2"')[-1] == b"OK"
    assert c.cmd(b'NOOP "t1"')[-1] == b'OK (TAG "t1") "Done"'
    assert c.cmd(b"FROB")[-1].startswith(b"NO")
    assert c.cmd(b"UNAUTHENTICATE")[-1] == b"OK"
    assert c.cmd(b"LISTSCRIPTS")[-1].startswith(b"NO")
    assert c.cmd(b"LOGOUT")[-1].startswith(b"OK")


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("sieve-connect") is None, reason="sieve-connect not installed")
def test_sieve_connect_interop(srv: Server, tmp_path: Path) -> None:
    script = tmp_path / "vacation.sieve"
    script.write_text('require "vacation";\nvacation :days 1 "Away.";\n')

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        read, write = os.pipe()
        os.write(write, PASSWORDS[ALICE].encode() + b"\n")
        os.close(write)
        try:
            return subprocess.run(
                [
                    "sieve-connect",
                    "--server",
                    "127.0.0.1",
                    "--port",
                    str(srv.ports["sieve"]),
                    "--user",
                    ALICE,
                    "--passwordfd",
                    str(read),
                    "--notlsverify",
                    "--authmech",
                    "PLAIN",
                    *args,
                ],
                pass_fds=(read,),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        finally:
            os.close(read)

    r = run("--upload", "--localsieve", str(script), "--remotesieve", "away")
    assert r.returncode == 0, r.stderr
    r = run("--activate", "--remotesieve", "away")
    assert r.returncode == 0, r.stderr
    r = run("--list")
    assert r.returncode == 0 and "away" in r.stdout, r.stdout + r.stderr
    out = tmp_path / "down.sieve"
    r = run("--download", "--remotesieve", "away", "--localsieve", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text() == script.read_text()
    listed = correo(srv.data, "sieve", "list", ALICE)
    assert "away  (active)" in listed.stdout
