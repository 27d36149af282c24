"""``correo dev`` over real sockets: any address, any login, one mailbox, the JSON API,
and the chaos options as a sender (smtplib) sees them."""

from __future__ import annotations

import http.client
import imaplib
import json
import poplib
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import client_tls, correo

_SERVICE = {
    "SMTP (MX": "smtp",
    "Submission (any": "submission",
    "IMAP (any": "imap",
    "POP3 (any": "pop3",
    "HTTPS ": "https",
}


@dataclass
class Dev:
    """``correo dev --free-ports`` in a subprocess; ``ports`` as it printed them."""

    proc: subprocess.Popen[str]
    ports: dict[str, int] = field(default_factory=dict)
    data: Path | None = None
    stderr: list[str] = field(default_factory=list)  # read as it comes: a full pipe blocks
    _pump: threading.Thread | None = None

    def read_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None

        def pump() -> None:
            for line in stream:
                self.stderr.append(line)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        if self._pump is not None:
            self._pump.join(10)
        return code

    def api(self, method: str, path: str) -> tuple[int, str, bytes]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.ports["https"], context=client_tls(), timeout=10
        )
        try:
            conn.request(method, path)
            answer = conn.getresponse()
            return answer.status, answer.getheader("Content-Type") or "", answer.read()
        finally:
            conn.close()

    def json(self, method: str, path: str) -> Any:
        status, kind, body = self.api(method, path)
        assert status == 200 and kind.startswith("application/json"), (status, body[:300])
        return json.loads(body)


def start_dev(*args: str) -> Dev:
    proc = subprocess.Popen(
        [sys.executable, "-m", "correo.cli.main", "dev", "--free-ports", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        return _banner(Dev(proc))
    except BaseException:
        proc.kill()  # never leave it running behind a failed start
        proc.wait()
        raise


def _banner(dev: Dev) -> Dev:
    proc = dev.proc
    assert proc.stdout is not None and proc.stderr is not None
    lines = []
    for line in proc.stdout:  # the banner ends with "Stop with Ctrl-C"
        lines.append(line)
        for label, service in _SERVICE.items():
            if line.strip().startswith(label):
                dev.ports[service] = int(line.rsplit(":", 1)[1])
        if line.strip().startswith("Data folder"):
            dev.data = Path(line.split()[2])
        if "Stop with Ctrl-C" in line:
            break
    else:
        proc.wait(10)
        raise AssertionError("correo dev did not start:\n" + "".join(lines) + proc.stderr.read())
    banner = "".join(lines)
    assert f":{dev.ports['https']}/api/v1/messages" in banner, banner
    web = [line for line in lines if line.strip().startswith("Web inbox")]
    assert web and web[0].rstrip().endswith(f":{dev.ports['https']}/"), banner
    dev.read_stderr()
    return dev


@pytest.fixture
def dev() -> Iterator[Dev]:
    server = start_dev()
    yield server
    assert server.stop() == 0, "".join(server.stderr)[-3000:]
    assert not any("loop.blocked" in line for line in server.stderr)


def _message(sender: str, to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content("Plain text.\n")
    message.add_alternative("<p>HTML</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    return message


def test_any_address_any_login_one_mailbox(dev: Dev) -> None:
    with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=10) as smtp:  # MX: no login
        smtp.send_message(_message("app@shop.example", "ann@customer.example", "one"))
    with smtplib.SMTP("127.0.0.1", dev.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=client_tls())
        smtp.login("whoever@anything.example", "any password at all")
        smtp.send_message(
            _message("other@elsewhere.example", "bob@example.org", "two"),
            to_addrs=["bob@example.org", "hidden@bcc.example"],
        )
    with smtplib.SMTP("127.0.0.1", dev.ports["submission"], timeout=10) as smtp:
        smtp.login("plain", "text")  # on loopback a login needs no TLS in dev mode
        smtp.send_message(_message("x@y.example", "z@w.example", "three"))
    with imaplib.IMAP4("127.0.0.1", dev.ports["imap"]) as imap:
        imap.login("someone", "anything")
        assert imap.select("INBOX")[1] == [b"3"]
        _, data = imap.fetch("1:3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subjects = [part[1] for part in data if isinstance(part, tuple)]
        assert subjects == [
            b"Subject: one\r\n\r\n",
            b"Subject: two\r\n\r\n",
            b"Subject: three\r\n\r\n",
        ]
    pop = poplib.POP3("127.0.0.1", dev.ports["pop3"], timeout=10)
    try:
        pop.user("another")
        pop.pass_("login")
        assert pop.stat()[0] == 3
    finally:
        pop.quit()


def test_json_api_lists_gets_raw_and_deletes(dev: Dev) -> None:
    with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=10) as smtp:
        smtp.send_message(_message("app@shop.example", "ann@customer.example", "first"))
        smtp.send_message(
            _message("app@shop.example", "bob@customer.example", "second"),
            to_addrs=["bob@customer.example", "audit@bcc.example"],
        )
    listing = dev.json("GET", "/api/v1/messages")
    assert listing["total"] == 2
    newest, oldest = listing["messages"]
    assert (newest["subject"], oldest["subject"]) == ("second", "first")
    assert newest["envelope_to"] == ["bob@customer.example", "audit@bcc.example"]
    assert newest["envelope_from"] == "app@shop.example"
    assert newest["to"] == ["bob@customer.example"]
    assert dev.json("GET", "/api/v1/messages?limit=1&offset=1")["messages"][0]["id"] == oldest["id"]

    detail = dev.json("GET", f"/api/v1/messages/{newest['id']}")
    assert detail["text"] == "Plain text.\n"
    assert detail["html"] == "<p>HTML</p>\n"
    assert detail["attachments"] == [
        {"filename": "a.pdf", "content_type": "application/pdf", "size": 8}
    ]
    assert ["Subject", "second"] in detail["headers"]

    status, kind, raw = dev.api("GET", f"/api/v1/messages/{newest['id']}/raw")
    assert status == 200 and kind == "message/rfc822"
    with imaplib.IMAP4("127.0.0.1", dev.ports["imap"]) as imap:  # the same message by UID
        imap.login("x", "y")
        imap.select("INBOX")
        _, data = imap.uid("FETCH", str(newest["id"]), "(BODY.PEEK[])")
        assert isinstance(data[0], tuple) and data[0][1] == raw

    for bad in ("/api/v1/messages/999", "/api/v1/messages/abc", "/api/v1/messages/1/x"):
        assert dev.api("GET", bad)[0] == 404, bad
    assert dev.api("DELETE", "/.well-known/mta-sts.txt")[0] == 405
    assert dev.api("GET", "/api/v1/messages?limit=%C2%B2")[0] == 400
    assert dev.json("DELETE", f"/api/v1/messages/{oldest['id']}") == {"deleted": 1}
    assert dev.api("GET", f"/api/v1/messages/{oldest['id']}")[0] == 404
    assert dev.json("DELETE", "/api/v1/messages") == {"deleted": 1}
    assert dev.json("GET", "/api/v1/messages")["total"] == 0
    with imaplib.IMAP4("127.0.0.1", dev.ports["imap"]) as imap:
        imap.login("x", "y")
        assert imap.select("INBOX")[1] == [b"0"]


def _send(dev: Dev) -> None:
    with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=10) as smtp:
        smtp.send_message(_message("app@shop.example", "ann@customer.example", "chaos"))


def test_reject_rate_refuses_every_recipient_with_5xx() -> None:
    dev = start_dev("--reject-rate", "1")
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            _send(dev)
        code, text = refused.value.recipients["ann@customer.example"]
        assert code == 550 and b"reject-rate" in text
    finally:
        assert dev.stop() == 0


def test_tempfail_rate_defers_with_4xx() -> None:
    dev = start_dev("--tempfail-rate", "1")
    try:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            _send(dev)
        assert refused.value.recipients["ann@customer.example"][0] == 451
    finally:
        assert dev.stop() == 0


def test_chaos_at_the_end_of_data_only() -> None:
    dev = start_dev("--reject-rate", "1", "--chaos-stage", "data")
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(dev)  # RCPT accepted, the message refused
        assert refused.value.smtp_code == 550
        assert dev.json("GET", "/api/v1/messages")["total"] == 0
    finally:
        assert dev.stop() == 0


def test_delay_slows_every_answer_it_covers() -> None:
    dev = start_dev("--delay", "0.3")
    try:
        started = time.monotonic()
        _send(dev)  # one RCPT and one end of data: two delays
        assert time.monotonic() - started >= 0.55
        assert dev.json("GET", "/api/v1/messages")["total"] == 1
    finally:
        assert dev.stop() == 0


def test_mixed_rates_are_reproducible_with_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        dev = start_dev("--reject-rate", "0.3", "--tempfail-rate", "0.3", "--seed", "7")
        codes = []
        try:
            with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=10) as smtp:
                smtp.ehlo()
                smtp.mail("app@shop.example")
                for n in range(20):
                    codes.append(smtp.rcpt(f"r{n}@customer.example")[0])
        finally:
            assert dev.stop() == 0
        outcomes.append(codes)
    assert outcomes[0] == outcomes[1]
    assert {250, 451, 550} <= set(outcomes[0])


def test_refuses_a_non_loopback_address_without_listen_any() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "dev", "--listen", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--listen-any" in result.stderr and result.stdout == ""


def test_listen_any_warns_and_starts() -> None:
    dev = start_dev("--listen-any", "--listen", "0.0.0.0")
    try:
        deadline = time.monotonic() + 10
        while not dev.stderr and time.monotonic() < deadline:
            time.sleep(0.01)  # the warning precedes the banner: it is there or on its way
        assert "WARNING" in dev.stderr[0] and "0.0.0.0" in dev.stderr[0], dev.stderr[:3]
        with smtplib.SMTP("127.0.0.1", dev.ports["submission"], timeout=10) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("auth")  # off loopback a login needs TLS again
    finally:
        assert dev.stop() == 0


def test_temporary_folder_removed_and_data_folder_kept(tmp_path: Path) -> None:
    dev = start_dev()
    assert dev.data is not None and dev.data.is_dir()
    assert dev.stop() == 0
    assert not dev.data.exists()

    kept = tmp_path / "devdata"
    dev = start_dev("--data", str(kept))
    try:
        _send(dev)
    finally:
        assert dev.stop() == 0
    dev = start_dev("--data", str(kept))
    try:
        assert dev.json("GET", "/api/v1/messages")["total"] == 1
    finally:
        assert dev.stop() == 0


def test_refuses_a_servers_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "server"
    r = correo(data, "init", "--domain", "example.test", "--hostname", "localhost")
    assert r.returncode == 0, r.stderr
    result = subprocess.run(
        [sys.executable, "-m", "correo.cli.main", "dev", "--free-ports", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "data folder" in result.stderr


def test_concurrent_senders_are_all_kept(dev: Dev) -> None:
    errors: list[BaseException] = []

    def send(n: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", dev.ports["smtp"], timeout=10) as smtp:
                smtp.send_message(_message("a@b.example", f"c{n}@d.example", f"n{n}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    subjects = {m["subject"] for m in dev.json("GET", "/api/v1/messages")["messages"]}
    assert subjects == {f"n{n}" for n in range(8)}
