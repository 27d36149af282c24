"""SCRAM-SHA-1, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, 7677) over real sockets,
driven by the scramp client, on IMAP, POP3, submission and ManageSieve; throttling,
verifiers for accounts made before SCRAM, channel binding on TLS 1.2 only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import scramp

from correo.server.tlsexport import exporter
from tests.conftest import PASSWORDS, Server, client_tls

ALICE = "alice@example.test"


class Wire:
    """A line client over an (implicit or STARTTLS) TLS socket."""

    def __init__(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed: " + self.buf.decode(errors="replace"))
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode(errors="replace")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def until(self, pattern: str) -> list[str]:
        lines = [self.line()]
        while not re.match(pattern, lines[-1]):
            lines.append(self.line())
        return lines


def tls_context(tls12: bool = False) -> ssl.SSLContext:
    ctx = client_tls()
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Proto:
    """One protocol's SASL framing: ``begin`` sends the command and returns the offered
    mechanisms; ``challenge`` is the next server challenge or None (then ``final``)."""

    name = ""

    def __init__(self, srv: Server, tls12: bool = False) -> None:
        self.srv = srv
        self.ctx = tls_context(tls12)
        self.final = ""
        self.w = self.connect()

    def connect(self) -> Wire:
        raise NotImplementedError

    def mechanisms(self) -> list[str]:
        raise NotImplementedError

    def start(self, mech: str) -> None:
        raise NotImplementedError

    def challenge(self) -> bytes | None:
        raise NotImplementedError

    def respond(self, data: bytes) -> None:
        self.w.send(base64.b64encode(data).decode())

    def ok(self) -> bool:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError


class Imap(Proto):
    name = "imap"

    def connect(self) -> Wire:
        raw = socket.create_connection(("127.0.0.1", self.srv.ports["imaps"]), timeout=20)
        w = Wire(self.ctx.wrap_socket(raw))
        w.until(r"\* OK")
        return w

    def mechanisms(self) -> list[str]:
        self.w.send("c CAPABILITY")
        caps = " ".join(self.w.until(r"c OK"))
        return re.findall(r"AUTH=(\S+)", caps)

    def start(self, mech: str) -> None:
        self.w.send(f"a AUTHENTICATE {mech}")

    def challenge(self) -> bytes | None:
        line = self.w.line()
        if line.startswith("+"):
            return base64.b64decode(line[2:])
        self.final = line
        return None

    def ok(self) -> bool:
        return self.final.startswith("a OK")

    def alive(self) -> bool:
        self.w.send("n NOOP")
        return self.w.until(r"n ")[-1].startswith("n OK")


class Pop3(Proto):
    name = "pop3"

    def connect(self) -> Wire:
        raw = socket.create_connection(("127.0.0.1", self.srv.ports["pop3s"]), timeout=20)
        w = Wire(self.ctx.wrap_socket(raw))
        w.until(r"\+OK")
        return w

    def mechanisms(self) -> list[str]:
        self.w.send("CAPA")
        lines = self.w.until(r"\.$")
        sasl = [line for line in lines if line.startswith("SASL ")]
        return sasl[0].split()[1:] if sasl else []

    def start(self, mech: str) -> None:
        self.w.send(f"AUTH {mech}")

    def challenge(self) -> bytes | None:
        line = self.w.line()
        if line.startswith("+ ") or line == "+":
            return base64.b64decode(line[2:])
        self.final = line
        return None

    def ok(self) -> bool:
        return self.final.startswith("+OK")

    def alive(self) -> bool:
        self.w.send("NOOP")
        return self.w.line().startswith(("+OK", "-ERR"))


class Submission(Proto):
    name = "submission"

    def connect(self) -> Wire:
        raw = socket.create_connection(("127.0.0.1", self.srv.ports["submissions"]), timeout=20)
        w = Wire(self.ctx.wrap_socket(raw))
        w.until(r"220 ")
        w.send("EHLO client.test")
        self.ehlo = w.until(r"250 ")
        return w

    def mechanisms(self) -> list[str]:
        lines = self.ehlo
        auth = [line[4:] for line in lines if line[4:].startswith("AUTH ")]
        return auth[0].split()[1:] if auth else []

    def start(self, mech: str) -> None:
        self.w.send(f"AUTH {mech}")

    def challenge(self) -> bytes | None:
        line = self.w.line()
        if line.startswith("334"):
            return base64.b64decode(line[4:])
        self.final = line
        return None

    def ok(self) -> bool:
        return self.final.startswith("235")

    def alive(self) -> bool:
        self.w.send("NOOP")
        return self.w.line().startswith("250")


class Sieve(Proto):
    name = "sieve"

    def connect(self) -> Wire:
        raw = socket.create_connection(("127.0.0.1", self.srv.ports["sieve"]), timeout=20)
        w = Wire(raw)
        w.until(r"OK")
        w.send("STARTTLS")
        w.until(r"OK")
        w = Wire(self.ctx.wrap_socket(raw))
        self.caps = w.until(r"OK")
        return w

    def mechanisms(self) -> list[str]:
        sasl = [line for line in self.caps if line.startswith('"SASL"')]
        return sasl[0].split('"')[3].split() if sasl else []

    def start(self, mech: str) -> None:
        self.w.send(f'AUTHENTICATE "{mech}"')

    def challenge(self) -> bytes | None:
        line = self.w.line()
        if line.startswith('"'):
            return base64.b64decode(line.strip('"'))
        self.final = line
        return None

    def respond(self, data: bytes) -> None:
        self.w.send('"' + base64.b64encode(data).decode() + '"')

    def ok(self) -> bool:
        return self.final.startswith("OK")

    def alive(self) -> bool:
        self.w.send("NOOP")
        return self.w.until(r"(OK|NO|BYE)")[-1].startswith("OK")


PROTOCOLS: list[type[Proto]] = [Imap, Pop3, Submission, Sieve]


def scram_login(
    proto: Proto,
    mech: str,
    user: str,
    password: str,
    binding: tuple[str, bytes] | None = None,
    tamper: Callable[[str], str] | None = None,
) -> bool:
    """One SCRAM exchange by scramp; True when the server accepted it (and scramp
    verified the server's signature)."""
    client = scramp.ScramClient([mech], user, password, channel_binding=binding)
    proto.start(mech)
    first = proto.challenge()
    assert first == b"", (first, proto.final)
    proto.respond(client.get_client_first().encode())
    server_first = proto.challenge()
    if server_first is None:
        return False
    client.set_server_first(server_first.decode())
    final = client.get_client_final()
    proto.respond((tamper(final) if tamper else final).encode())
    server_final = proto.challenge()
    if server_final is None:
        return False
    client.set_server_final(server_final.decode())  # raises if the signature is wrong
    proto.respond(b"")
    assert proto.challenge() is None
    return proto.ok()


@pytest.mark.parametrize("proto_cls", PROTOCOLS, ids=lambda p: p.name)
@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_logs_in(server: Server, proto_cls: type[Proto], mech: str) -> None:
    """scramp logs in with each family and verifies the server's signature; a wrong
    password is refused and the session goes on."""
    proto = proto_cls(server)
    offered = proto.mechanisms()
    assert mech in offered and "SCRAM-SHA-256-PLUS" not in offered, offered  # TLS 1.3
    assert not scram_login(proto, mech, ALICE, "not-the-password")
    assert proto.alive()
    proto = proto_cls(server)
    assert scram_login(proto, mech, ALICE, PASSWORDS[ALICE]), proto.final
    assert proto.alive()


@pytest.mark.parametrize("proto_cls", PROTOCOLS, ids=lambda p: p.name)
def test_scram_plus_on_tls12(server: Server, proto_cls: type[Proto]) -> None:
    """On TLS 1.2, -PLUS is offered with tls-unique; the right binding logs in, a wrong
    one is refused (RFC 5802 §6), and a client that could bind but says "y" is too."""
    proto = proto_cls(server, tls12=True)
    assert "SCRAM-SHA-256-PLUS" in proto.mechanisms()
    sock = proto.w.sock
    assert isinstance(sock, ssl.SSLSocket) and sock.version() == "TLSv1.2"
    data = sock.get_channel_binding("tls-unique")
    assert data
    binding = ("tls-unique", data)
    assert scram_login(proto, "SCRAM-SHA-256-PLUS", ALICE, PASSWORDS[ALICE], binding)
    assert proto.alive()
    proto = proto_cls(server, tls12=True)
    wrong = ("tls-unique", bytes(len(data)))  # another connection's binding, say
    assert not scram_login(proto, "SCRAM-SHA-256-PLUS", ALICE, PASSWORDS[ALICE], wrong)
    assert proto.alive()
    proto = proto_cls(server, tls12=True)  # tls-exporter: not offered, refused at once
    proto.start("SCRAM-SHA-256-PLUS")
    assert proto.challenge() == b""
    proto.respond(b"p=tls-exporter,,n=alice@example.test,r=abcdefgh")
    assert proto.challenge() is None and not proto.ok()
    assert proto.alive()


def test_downgrade_flag_refused_on_tls12(server: Server) -> None:
    """gs2 flag "y" (client supports binding, thinks the server does not) where the
    server does offer -PLUS is a downgrade: refused (RFC 5802 §6)."""
    proto = Imap(server, tls12=True)
    proto.start("SCRAM-SHA-256")
    assert proto.challenge() == b""
    proto.respond(b"y,,n=alice@example.test,r=abcdefghijklmnop")
    assert proto.challenge() is None and "NO" in proto.final
    assert proto.alive()


def exporter_login(proto: Proto, user: str, password: str, data: bytes) -> bool:
    """SCRAM-SHA-256-PLUS bound with tls-exporter (RFC 9266), computed here from RFC 5802
    §3 (scramp refuses that binding type); True when the server accepted it and its
    signature is right."""
    header = b"p=tls-exporter,,"
    nonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={nonce}"
    proto.start("SCRAM-SHA-256-PLUS")
    assert proto.challenge() == b"", proto.final
    proto.respond(header + bare.encode())
    first = proto.challenge()
    if first is None:
        return False
    fields = dict(item.split("=", 1) for item in first.decode().split(","))
    assert fields["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c={base64.b64encode(header + data).decode()},r={fields['r']}"
    auth = f"{bare},{first.decode()},{without_proof}".encode()
    signature = hmac.new(stored, auth, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    proto.respond(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    final = proto.challenge()
    if final is None:
        return False
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    expected = base64.b64encode(hmac.new(server_key, auth, "sha256").digest()).decode()
    assert final.decode() == f"v={expected}", final
    proto.respond(b"")
    assert proto.challenge() is None
    return proto.ok()


def test_no_plus_on_tls13_by_default(server: Server) -> None:
    """On TLS 1.3 -PLUS is neither offered nor accepted unless ``[auth]
    tls_exporter_binding`` is on (Mutt through Cyrus SASL would pick it and fail)."""
    proto = Submission(server)
    assert "SCRAM-SHA-256-PLUS" not in proto.mechanisms()
    proto.start("SCRAM-SHA-256-PLUS")
    assert proto.challenge() is None and proto.final.startswith("504")


def test_scram_plus_on_tls13_binds_with_tls_exporter(
    start_server: Callable[..., Server],
) -> None:
    """With ``[auth] tls_exporter_binding`` on, -PLUS on TLS 1.3 is bound with
    tls-exporter (RFC 9266): the connection's own exporter logs in, another
    connection's is refused, tls-unique is refused; on every protocol."""
    server = start_server({"tls_exporter_binding": "true"})
    for proto_cls in PROTOCOLS:
        _exporter_logins(server, proto_cls)


def _exporter_logins(server: Server, proto_cls: type[Proto]) -> None:
    proto = proto_cls(server)
    assert "SCRAM-SHA-256-PLUS" in proto.mechanisms()
    sock = proto.w.sock
    assert isinstance(sock, ssl.SSLSocket) and sock.version() == "TLSv1.3"
    data = exporter(sock)
    assert data is not None and len(data) == 32
    assert exporter_login(proto, ALICE, PASSWORDS[ALICE], data), proto.final
    assert proto.alive()
    proto = proto_cls(server)
    assert not exporter_login(proto, ALICE, PASSWORDS[ALICE], data)  # not this connection's
    assert proto.alive()
    proto = proto_cls(server)
    proto.start("SCRAM-SHA-256-PLUS")
    assert proto.challenge() == b""
    proto.respond(b"p=tls-unique,,n=alice@example.test,r=abcdefgh")
    assert proto.challenge() is None and not proto.ok()
    assert proto.alive()


def test_exporter_is_what_openssl_exports(tmp_path: Path) -> None:
    """The exporter read through OpenSSL's C function equals what an independent TLS
    client computes for the same connection (``openssl s_client -keymatexport``), on
    TLS 1.3 and TLS 1.2, with the memory-BIO objects asyncio's servers use."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=x"],
        check=True, capture_output=True,
    )  # fmt: skip
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.maximum_version = version
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        client = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
             "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        conn, _ = listener.accept()
        conn.settimeout(20)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                conn.sendall(outgoing.read())
                incoming.write(conn.recv(65536))
        conn.sendall(outgoing.read())
        ours = exporter(obj)
        out, _ = client.communicate(b"", timeout=20)
        conn.close()
        listener.close()
        theirs = re.search(rb"Keying material: ([0-9A-F]{64})", out)
        assert theirs is not None, out
        assert ours is not None and ours.hex().upper() == theirs[1].decode(), version


@pytest.mark.parametrize(
    "first, final",
    [
        (b"", None),
        (b"x,,n=a,r=b", None),
        (b"n,,m=ext,n=a,r=b", None),
        (b"n,,n=bad=name,r=abc", None),
        (b"n,,n=alice@example.test,r=ab,cd", None),
        (b"n,,n=alice@example.test,r=\xff", None),
        (b"n,,n=alice@example.test,r=" + b"x" * 5000, None),
        (b"n,,n=alice@example.test,r=abc", b"c=biws,r=WRONG,p=AAAA"),
        (b"n,,n=alice@example.test,r=abc", b"c=biws,r=abc"),
        (b"n,,n=alice@example.test,r=abc", b"garbage"),
        (b"n,,n=alice@example.test,r=abc", b"c=!!,r=abc,p=!!"),
    ],
)
def test_hostile_messages(server: Server, first: bytes, final: bytes | None) -> None:
    """Malformed client messages, a wrong nonce, a missing proof: a NO, the session lives."""
    proto = Imap(server)
    proto.start("SCRAM-SHA-256")
    assert proto.challenge() == b""
    proto.respond(first)
    challenge = proto.challenge()
    if final is None:
        assert challenge is None and proto.final.startswith(("a NO", "a BAD")), proto.final
    else:
        assert challenge is not None and b",i=" in challenge
        nonce = challenge.split(b",")[0][2:]
        proto.respond(final.replace(b"r=abc", b"r=" + nonce) if b"WRONG" not in final else final)
        assert proto.challenge() is None and proto.final.startswith(("a NO", "a BAD"))
    assert proto.alive()


def test_unknown_user_gets_a_stable_salt(server: Server) -> None:
    """An unknown user gets a salt and a count, the same each time (RFC 5802 §9)."""
    salts = []
    for _ in range(2):
        proto = Imap(server)
        proto.start("SCRAM-SHA-256")
        proto.challenge()
        proto.respond(b"n,,n=nobody@example.test,r=abcdef")
        challenge = proto.challenge()
        assert challenge is not None
        salts.append(challenge.split(b",", 1)[1])
    assert salts[0] == salts[1] and b"i=8192" in salts[0]


def test_scram_failures_count_toward_lockout(start_server: Callable[..., Server]) -> None:
    """Wrong SCRAM proofs count like wrong passwords: then even the right one is refused."""
    srv = start_server({"lockout_failures": "3", "max_delay": "0.1"})
    for _ in range(3):
        proto = Submission(srv)
        proto.mechanisms()
        assert not scram_login(proto, "SCRAM-SHA-256", ALICE, "wrong-password")
        assert proto.final.startswith("535"), proto.final
    proto = Submission(srv)
    proto.mechanisms()
    assert not scram_login(proto, "SCRAM-SHA-256", ALICE, PASSWORDS[ALICE])
    assert proto.final.startswith("454"), proto.final  # locked, no server-final sent
    imap = Imap(srv)
    imap.w.send(f"b LOGIN {ALICE} {PASSWORDS[ALICE]}")
    assert "UNAVAILABLE" in imap.w.until(r"b ")[-1]
    assert srv.wait_log("event=auth.locked")


def test_old_account_gets_verifiers_at_plain_login(start_server: Callable[..., Server]) -> None:
    """An account whose verifiers are missing (made before SCRAM) cannot use SCRAM until a
    password login computes them; then it can, without a restart."""
    srv = start_server()
    with sqlite3.connect(srv.data / "directory.db") as db:
        db.execute("UPDATE users SET scram = '' WHERE address = ?", (ALICE,))
    proto = Imap(srv)
    assert not scram_login(proto, "SCRAM-SHA-256", ALICE, PASSWORDS[ALICE])
    assert "AUTHENTICATIONFAILED" in proto.final
    pop = Pop3(srv)
    plain = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
    pop.w.send(f"AUTH PLAIN {plain}")
    assert pop.w.line().startswith("+OK")
    with sqlite3.connect(srv.data / "directory.db") as db:
        (stored,) = db.execute("SELECT scram FROM users WHERE address = ?", (ALICE,)).fetchone()
    assert "SCRAM-SHA-256$8192:" in stored and "SCRAM-SHA-1$4096:" in stored
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        proto = Imap(srv)
        assert scram_login(proto, mech, ALICE, PASSWORDS[ALICE]), proto.final


# ---- clients nobody here wrote: msmtp (GNU SASL) and mutt (Cyrus SASL) ----------------


def _scram_logins(srv: Server, user: str) -> int:
    return sum(
        1
        for line in srv.log_lines
        if "event=auth.ok" in line and "method=scram" in line and f"user={user}" in line
    )


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp not installed")
@pytest.mark.parametrize("mech", ["scram-sha-256", "scram-sha-1"])
def test_msmtp_scram(server: Server, tmp_path: Path, mech: str) -> None:
    """msmtp, through GNU SASL, submits over implicit TLS with SCRAM; a wrong password
    is refused."""
    bob = "bob@example.test"

    def send(password: str) -> subprocess.CompletedProcess[str]:
        rc = tmp_path / "msmtprc"
        rc.write_text(
            f"tls on\ntls_starttls off\ntls_trust_file {server.data / 'tls' / 'cert.pem'}\n"
            f"auth {mech}\nhost 127.0.0.1\nport {server.ports['submissions']}\n"
            f"from {bob}\nuser {bob}\npassword {password}\n"
        )
        rc.chmod(0o600)  # msmtp refuses a readable file holding a password
        return subprocess.run(
            ["msmtp", "-C", str(rc), ALICE],
            input=f"From: {bob}\nTo: {ALICE}\nSubject: scram {mech}\n\nvia msmtp\n",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    before = _scram_logins(server, bob)
    result = send(PASSWORDS[bob])
    assert result.returncode == 0, result.stdout + result.stderr
    assert _scram_logins(server, bob) == before + 1
    result = send("not-the-password")
    assert result.returncode != 0 and "535" in result.stderr, result.stderr


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("mutt") is None, reason="mutt not installed")
def test_mutt_smtp_scram(server: Server, tmp_path: Path) -> None:
    """mutt, through Cyrus SASL's SCRAM module, submits with SCRAM-SHA-256 only."""
    carol = "carol@example.test"
    certs = tmp_path / "mutt-certs"
    shutil.copy(server.data / "tls" / "cert.pem", certs)
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set from = "{carol}"\n'
        f'set smtp_url = "smtps://{carol.replace("@", "%40")}@127.0.0.1:'
        f'{server.ports["submissions"]}/"\n'
        f'set smtp_pass = "{PASSWORDS[carol]}"\n'
        'set smtp_authenticators = "scram-sha-256"\n'
        f'set ssl_force_tls = yes\nset certificate_file = "{certs}"\n'
        'set record = ""\nset copy = no\n'
    )
    before = _scram_logins(server, carol)
    result = subprocess.run(
        ["mutt", "-n", "-F", str(rc), "-s", "scram via mutt", ALICE],
        input="Written in mutt.\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin"), "TERM": "vt100"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _scram_logins(server, carol) == before + 1


def test_scram_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The shared directory: an account without verifiers gets them at a PLAIN login, and
    a password changed through the CLI holds for SCRAM at once."""
    psycopg = pytest.importorskip("psycopg")
    from tests.conftest import correo
    from tests.server.test_postgres_store import pg_node

    srv = pg_node(tmp_path / "node", pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE users SET scram = '' WHERE address = %s", (ALICE,))
    srv.start()
    try:
        assert not scram_login(Imap(srv), "SCRAM-SHA-256", ALICE, PASSWORDS[ALICE])
        pop = Pop3(srv)
        plain = base64.b64encode(f"\0{ALICE}\0{PASSWORDS[ALICE]}".encode()).decode()
        pop.w.send(f"AUTH PLAIN {plain}")
        assert pop.w.line().startswith("+OK")
        assert scram_login(Submission(srv), "SCRAM-SHA-256", ALICE, PASSWORDS[ALICE])
        changed = correo(srv.data, "user", "passwd", ALICE, stdin="a-changed-password\n")
        assert changed.returncode == 0, changed.stderr
        # The node hears of the change by NOTIFY, within milliseconds.
        deadline = time.monotonic() + 10
        while not scram_login(Sieve(srv), "SCRAM-SHA-1", ALICE, "a-changed-password"):
            assert time.monotonic() < deadline
        assert not scram_login(Sieve(srv), "SCRAM-SHA-1", ALICE, PASSWORDS[ALICE])
    finally:
        assert srv.stop() == 0
