"""The correo pytest plugin: its fixtures over real sockets, and a sample project that
uses it as its developers would (a pytest subprocess, two xdist workers)."""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from correo.directory import DirectoryError
from correo.testing import CorreoTestServer, MailTimeout, Material

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_project"


def _message(sender: str, to: str, subject: str, body: str = "Hello.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content(body)
    return message


def _submit(server: CorreoTestServer, user: str, password: str, message: EmailMessage) -> None:
    with smtplib.SMTP(*server.submission, timeout=10) as smtp:
        smtp.starttls(context=server.client_tls())
        smtp.login(user, password)
        smtp.send_message(message)


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``folder`` as a user runs it: the plugin comes from the entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_plugin_is_registered_by_the_package() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("correo") == "correo.testing.plugin", (
        "the pytest11 entry point is missing: reinstall correo (pip install -e .)"
    )


@pytest.mark.slow
def test_sample_project_in_two_parallel_workers() -> None:
    result = _pytest(SAMPLE, "-n", "2", "-v", "-rA")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"\b4 passed\b", output), output[-2000:]
    assert "[gw0]" in output and "[gw1]" in output, output[-2000:]
    # each worker's servers have ports of their own
    seen = re.findall(r"worker (gw\d) port (\d+)", output)
    assert {w for w, _ in seen} == {"gw0", "gw1"}, output[-2000:]
    assert len({p for _, p in seen}) == len(seen), seen


def test_starts_on_free_loopback_ports(correo_server: CorreoTestServer) -> None:
    # reported here; asserted on the median of several starts below (a busy machine
    # can stretch any single one)
    print(f"correo_server started in {correo_server.startup_seconds * 1000:.0f} ms")
    assert 0 < correo_server.startup_seconds < 5
    for service in ("smtp", "submission", "imap", "imaps", "pop3"):
        host, port = getattr(correo_server, service)
        assert host == "127.0.0.1" and port >= 1024, (service, port)
        socket.create_connection((host, port), timeout=5).close()


def test_repeated_starts_reuse_the_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What keeps a start cheap is that no key is made per server: the certificate and
    DKIM keys come from the session's Material. Key generation is made to fail, so a
    start that made one would fail here (a property, not a time, so a busy machine
    cannot flake it)."""
    material = Material.create(tmp_path / "material")
    expected = ssl.PEM_cert_to_DER_cert(material.cert.read_text())

    def no_new_keys(*args: object, **kwargs: object) -> None:
        raise AssertionError("a test server start generated a key")

    monkeypatch.setattr(rsa, "generate_private_key", no_new_keys)
    monkeypatch.setattr(ec, "generate_private_key", no_new_keys)
    for n in range(3):
        server = CorreoTestServer.start(tmp_path / f"s{n}", material)
        try:
            context = ssl.create_default_context(cafile=str(material.cert))
            context.check_hostname = False
            with (
                socket.create_connection(server.imaps, timeout=10) as raw,
                context.wrap_socket(raw) as tls,
            ):
                assert tls.getpeercert(binary_form=True) == expected
        finally:
            server.stop()


def test_messages_and_wait_for(correo_server: CorreoTestServer) -> None:
    correo_server.add_user("alice@example.test", "alice-pw")
    assert correo_server.messages("alice@example.test") == []
    # MX port: no login needed for a local recipient
    with smtplib.SMTP(*correo_server.smtp, timeout=10) as smtp:
        smtp.send_message(_message("x@elsewhere.example", "alice@example.test", "first"))
    first = correo_server.wait_for("alice@example.test")
    assert first["Subject"] == "first"

    def later() -> None:
        time.sleep(0.2)
        with smtplib.SMTP(*correo_server.smtp, timeout=10) as smtp:
            smtp.send_message(_message("x@elsewhere.example", "alice@example.test", "second"))

    sender = threading.Thread(target=later)
    sender.start()
    try:
        second = correo_server.wait_for("alice@example.test", lambda m: m["Subject"] == "second")
    finally:
        sender.join()
    assert second.get_content().strip() == "Hello."
    assert [m["Subject"] for m in correo_server.messages("alice@example.test")] == [
        "first",
        "second",
    ]
    with pytest.raises(MailTimeout, match="subjects"):
        correo_server.wait_for("alice@example.test", lambda m: m["Subject"] == "x", timeout=0.3)
    with pytest.raises(LookupError):
        correo_server.messages("nobody@example.test")


def test_outbound_is_captured_with_its_envelope(correo_server: CorreoTestServer) -> None:
    correo_server.add_user("shop@example.test", "shop-pw")
    message = _message("shop@example.test", "ann@customer.example", "Your order")
    message["Bcc"] = "audit@customer.example"
    _submit(correo_server, "shop@example.test", "shop-pw", message)
    sent = correo_server.wait_for_outbound(lambda m: m["Subject"] == "Your order")
    assert sent.envelope_from == "shop@example.test"
    assert sorted(sent.envelope_to) == ["ann@customer.example", "audit@customer.example"]
    assert sent["Bcc"] is None  # removed by smtplib; the envelope still has it
    assert "d=example.test" in str(sent["DKIM-Signature"])
    deadline = time.monotonic() + 20  # only a failure waits that long
    while correo_server.queue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert correo_server.queue() == []
    assert len(correo_server.outbound()) == 1


def test_remote_refusals_bounce_or_stay_queued(correo_server: CorreoTestServer) -> None:
    correo_server.add_user("shop@example.test", "shop-pw")
    _submit(
        correo_server,
        "shop@example.test",
        "shop-pw",
        _message("shop@example.test", "bounce@customer.example", "Gone"),
    )
    dsn = correo_server.wait_for(
        "shop@example.test", lambda m: m.get_content_type() == "multipart/report"
    )
    assert "bounce@customer.example" in dsn.as_string()
    _submit(
        correo_server,
        "shop@example.test",
        "shop-pw",
        _message("shop@example.test", "defer@customer.example", "Later"),
    )
    deadline = time.monotonic() + 20  # only a failure waits that long
    entries = correo_server.queue()
    while time.monotonic() < deadline and not (entries and entries[0].recipients[0][2]):
        time.sleep(0.02)
        entries = correo_server.queue()
    assert len(entries) == 1, entries
    address, status, error = entries[0].recipients[0]
    assert (address, status) == ("defer@customer.example", "queued")
    assert "451" in error
    assert correo_server.outbound() == []  # both attempts are over: neither was captured
    assert correo_server.flush_queue() == 1


def test_add_user_and_tls_submission_with_auth(correo_server: CorreoTestServer) -> None:
    correo_server.add_user("carol@other.test", "carol-pw")  # a new domain becomes local
    with pytest.raises(DirectoryError):
        correo_server.add_user("carol@other.test", "again")
    with smtplib.SMTP(*correo_server.submission, timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # passwords only over TLS
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login("carol@other.test", "carol-pw")
    with (
        smtplib.SMTP(*correo_server.submission, timeout=10) as smtp,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        smtp.starttls(context=ssl.create_default_context())  # the system does not trust it
    message = _message("carol@other.test", "carol@other.test", "to myself")
    _submit(correo_server, "carol@other.test", "carol-pw", message)
    assert correo_server.wait_for("carol@other.test")["Subject"] == "to myself"
    with imaplib.IMAP4_SSL(*correo_server.imaps, ssl_context=correo_server.client_tls()) as imap:
        imap.login("carol@other.test", "carol-pw")
        assert imap.select("INBOX")[1] == [b"1"]


_SESSION_IDS: list[int] = []


@pytest.mark.parametrize("n", [1, 2])
def test_the_session_fixture_is_one_server(correo_server_session: CorreoTestServer, n: int) -> None:
    _SESSION_IDS.append(id(correo_server_session))
    assert len(set(_SESSION_IDS)) == 1
    socket.create_connection(correo_server_session.smtp, timeout=5).close()


_FAILING = """
import socket, threading

PORTS = []

def test_fails_with_a_server(correo_server):
    PORTS.extend(p for _, p in (correo_server.smtp, correo_server.imap))
    assert False, "this test fails on purpose"

def test_runs_after_it():
    assert PORTS
    for port in PORTS:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except ConnectionRefusedError:
            continue
        raise AssertionError(f"port {port} is still served")
    names = [t.name for t in threading.enumerate()]
    assert "correo-test-server" not in names, names
"""


def test_a_failing_test_still_stops_its_server(tmp_path: Path) -> None:
    (tmp_path / "test_failing.py").write_text(_FAILING)
    result = _pytest(tmp_path, "-p", "no:cacheprovider", "-q", "test_failing.py")
    output = result.stdout + result.stderr
    assert re.search(r"\b1 failed, 1 passed\b", output), output[-3000:]
    assert "this test fails on purpose" in output
