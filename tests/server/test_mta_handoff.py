"""LMTP hand-off of a local domain to a second correo, and RFC 3461 success notices.

Instance ``first`` owns example.test but its ``[outbound] transport`` hands the domain
to ``mda``'s LMTP listener: mail accepted by first's MX and submission services must
end up in mda's mailboxes, never in first's own store.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORDS, Server, client_tls, make_data_dir
from tests.server.helpers import mailbox, message

ALICE, BOB = "alice@example.test", "bob@example.test"


def _wait(port: int, user: str, count: int, timeout: float = 15.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while True:
        box = mailbox(port, user)
        if len(box) >= count or time.monotonic() > deadline:
            return box
        time.sleep(0.1)


def _queue_id(srv: Server, event: str, needle: str, start: int = 0) -> str:
    """The queue_id of the first ``event`` log line after ``start`` containing ``needle``."""
    assert srv.wait_log(f"event={event} ", start=start), _events(srv)
    for line in srv.log_lines[start:]:
        if f"event={event} " in line and needle in line:
            return line.split("queue_id=")[1].split()[0]
    raise AssertionError(f"no {event} with {needle}: {_events(srv)}")


def _attempt_done(srv: Server, queue_id: str, start: int = 0) -> None:
    """Wait until the queue has finished its attempt at ``queue_id``: every delivery and
    notice it causes is committed and logged by then."""
    done = f"event=queue.attempt_done queue_id={queue_id}\n"
    deadline = time.monotonic() + 15
    while not any(line.endswith(done) for line in srv.log_lines[start:]):
        assert time.monotonic() < deadline, _events(srv)
        time.sleep(0.05)


def _events(srv: Server) -> str:
    """The log without the POP3 polling noise, for assertion messages."""
    return "".join(x for x in srv.log_lines if "pop3." not in x and "auth.ok" not in x)[-4000:]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root: Path = tmp_path_factory.mktemp("handoff")
    mda = Server(root / "mda")
    make_data_dir(mda.data)
    mda.start()
    first = Server(root / "first")
    make_data_dir(first.data)
    with (first.data / "correo.toml").open("a") as f:
        f.write(
            "\n[outbound]\n"
            f'transport = ["example.test lmtp:127.0.0.1:{mda.ports["lmtp"]}"]\n'
            "poll_interval = 0.3\nretry_initial = 1.0\n"
        )
    first.start()
    yield first, mda
    first.stop()
    mda.stop()


def _submit(srv: Server, user: str, rcpts: list[str], msg: bytes, **kw: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", srv.ports["submission"], timeout=10) as s:
        s.starttls(context=client_tls())
        s.login(user, PASSWORDS[user])
        s.sendmail(user, rcpts, msg, **kw)


def test_mx_mail_for_handed_off_domain_reaches_the_mda(pair: tuple[Server, Server]) -> None:
    first, mda = pair
    with smtplib.SMTP("127.0.0.1", first.ports["smtp"], timeout=10) as s:
        s.sendmail("someone@remote.test", [ALICE], message("someone@remote.test", ALICE, "mx ho"))
    box = _wait(mda.ports["pop3s"], ALICE, 1)
    assert any(b"Subject: mx ho" in m for m in box), first.log()[-3000:]
    assert not any(b"Subject: mx ho" in m for m in mailbox(first.ports["pop3s"], ALICE))
    assert "event=queue.delivered" in first.log() and "relay=127.0.0.1" in first.log()


def test_submitted_mail_is_handed_off_and_unknown_users_refused(
    pair: tuple[Server, Server],
) -> None:
    first, mda = pair
    _submit(first, BOB, [ALICE], message(BOB, ALICE, "sub ho"))
    box = _wait(mda.ports["pop3s"], ALICE, 2)
    assert any(b"Subject: sub ho" in m for m in box)
    assert not any(b"Subject: sub ho" in m for m in mailbox(first.ports["pop3s"], ALICE))
    # The anti-relay decision still validates the recipient: no backscatter later.
    with smtplib.SMTP("127.0.0.1", first.ports["smtp"], timeout=10) as s:
        s.ehlo()
        s.mail("someone@remote.test")
        code, _ = s.rcpt("nobody@example.test")
        assert code == 550


def _report(raw: bytes) -> list[email.message.Message]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert isinstance(parts, list)
    groups = parts[1].get_payload()
    assert isinstance(groups, list)
    return groups


def test_notify_success_through_the_handoff(pair: tuple[Server, Server]) -> None:
    """The LMTP peer offers DSN: NOTIFY goes on, and the MDA reports the delivery."""
    first, mda = pair
    msg = message(BOB, ALICE, "notify ho")
    _submit(first, BOB, [ALICE], msg, rcpt_options=["NOTIFY=SUCCESS"])
    assert any(b"Subject: notify ho" in m for m in _wait(mda.ports["pop3s"], ALICE, 3))
    dsns = [m for m in _wait(mda.ports["pop3s"], BOB, 1) if b"multipart/report" in m]
    assert len(dsns) == 1, _events(mda) + _events(first)
    groups = _report(dsns[0])
    assert groups[1]["Action"] == "delivered" and groups[1]["Status"] == "2.0.0"
    assert not any(b"multipart/report" in m for m in mailbox(first.ports["pop3s"], BOB))


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("notify") / "data")
    make_data_dir(srv.data)
    with (srv.data / "correo.toml").open("a") as f:
        f.write("\n[outbound]\npoll_interval = 0.3\n")
    srv.start()
    yield srv
    srv.stop()


def test_local_delivery_success_dsn(single: Server) -> None:
    """One DSN with Action: delivered for the recipients that asked, none for the rest."""
    carol = "carol@example.test"
    msg = message(ALICE, BOB, "local notify")
    start = len(single.log_lines)
    with smtplib.SMTP("127.0.0.1", single.ports["submission"], timeout=10) as s:
        s.starttls(context=client_tls())
        s.login(ALICE, PASSWORDS[ALICE])
        s.mail(ALICE, ["RET=FULL", "ENVID=env42"])
        assert s.rcpt(BOB, ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@example.test"])[0] == 250
        assert s.rcpt(carol)[0] == 250
        assert s.data(msg)[0] == 250
    assert any(b"Subject: local notify" in m for m in _wait(single.ports["pop3s"], BOB, 1))
    assert any(b"Subject: local notify" in m for m in _wait(single.ports["pop3s"], carol, 1))
    box = _wait(single.ports["pop3s"], ALICE, 1)
    assert len(box) == 1, single.log()[-3000:]
    raw = box[0]
    groups = _report(raw)
    assert groups[0]["Original-Envelope-Id"] == "env42"
    assert len(groups) == 2  # per-message fields + bob only
    assert groups[1]["Final-Recipient"] == "rfc822; bob@example.test"
    assert groups[1]["Original-Recipient"] == "rfc822;bob@example.test"
    assert groups[1]["Action"] == "delivered"
    assert b"Subject: Successful Mail Delivery Report" in raw
    assert b"Content-Type: message/rfc822" in raw  # RET=FULL returns the message
    # The attempt delivered every recipient, so the message left the queue: no later
    # attempt, and no second notice, can come once it is over.
    queue_id = _queue_id(single, "queue.dsn", f"to={ALICE}", start)
    _attempt_done(single, queue_id, start)
    assert len(mailbox(single.ports["pop3s"], ALICE)) == 1  # exactly one DSN
    dsn_lines = [x for x in single.log_lines[start:] if "event=queue.dsn " in x]
    assert len(dsn_lines) == 1, dsn_lines


def test_null_sender_never_gets_a_success_dsn(single: Server) -> None:
    start = len(single.log_lines)
    with smtplib.SMTP("127.0.0.1", single.ports["smtp"], timeout=10) as s:
        s.ehlo()
        s.mail("<>")
        assert s.rcpt("carol@example.test", ["NOTIFY=SUCCESS"])[0] == 250
        assert s.data(message("x@remote.test", "carol@example.test", "null notify"))[0] == 250
    box = _wait(single.ports["pop3s"], "carol@example.test", 2)
    assert any(b"Subject: null notify" in m for m in box)
    # The notice would be sent in the attempt that delivered to carol, before it ends.
    queue_id = _queue_id(single, "queue.delivered", "rcpt=carol@example.test", start)
    _attempt_done(single, queue_id, start)
    assert not [x for x in single.log_lines[start:] if "event=queue.dsn " in x]
