"""Two correo instances exchanging mail through MX records on a loopback DNS server."""

from __future__ import annotations

import email
import email.policy
import time

from tests.server.conftest_mta import DnsServer, Instance, correo, message


def test_two_instances_exchange_mail_both_ways(instances: object) -> None:
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "a to b"))
    b.submit("bob@b.test", ["alice@a.test"], message("bob@b.test", "alice@a.test", "b to a"))
    got_b = b.wait_mail("bob", 1)
    got_a = a.wait_mail("alice", 1)
    assert len(got_b) == 1 and b"Subject: a to b" in got_b[0], a.log()[-3000:]
    assert len(got_a) == 1 and b"Subject: b to a" in got_a[0], b.log()[-3000:]
    assert b"Return-Path: <alice@a.test>" in got_b[0]
    assert "event=queue.tls" in a.log()  # opportunistic STARTTLS between the two
    assert a.queue_empty() and b.queue_empty()


def _dsn(raw: bytes) -> tuple[email.message.Message, list[email.message.Message]]:
    """The report and its per-recipient field groups (RFC 3464 §2.1)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    groups = status.get_payload()
    assert isinstance(groups, list)
    return msg, groups


def test_5xx_and_mixed_results_bounce_one_dsn_to_the_sender(instances: object) -> None:
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    rcpts = ["bob@b.test", "nobody@b.test", "ghost@b.test"]
    a.submit("alice@a.test", rcpts, message("alice@a.test", "bob@b.test", "mixed"))
    assert len(b.wait_mail("bob", 1)) == 1
    box = a.wait_mail("alice", 1)
    assert len(box) == 1, a.log()[-3000:]
    msg, groups = _dsn(box[0])
    assert msg["From"].endswith("<MAILER-DAEMON@mx.a.test>")
    assert groups[0]["Reporting-MTA"] == "dns; mx.a.test"
    finals = sorted(g["Final-Recipient"] for g in groups[1:])
    assert finals == ["rfc822; ghost@b.test", "rfc822; nobody@b.test"]
    for g in groups[1:]:
        assert g["Action"] == "failed"
        assert g["Status"] == "5.1.1"
        assert g["Remote-MTA"] == "dns; mx.b.test"
        assert g["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    returned = msg.get_payload()[2]
    assert returned.get_content_type() == "message/rfc822"
    assert b"Subject: mixed" in box[0]
    assert a.queue_empty()


def test_null_mx_bounces_at_once(instances: object) -> None:
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    a.submit("alice@a.test", ["x@nullmx.test"], message("alice@a.test", "x@nullmx.test", "null"))
    box = a.wait_mail("alice", 1)
    assert len(box) == 1
    _msg, groups = _dsn(box[0])
    assert groups[1]["Status"] == "5.1.10"
    assert groups[1]["Final-Recipient"] == "rfc822; x@nullmx.test"


def test_destination_down_then_up_is_retried(instances: object) -> None:
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3", start=False)  # type: ignore[operator]
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "retry"))
    deadline = time.monotonic() + 10
    while "event=queue.deferred" not in a.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "event=queue.deferred" in a.log()
    b.start()
    box = b.wait_mail("bob", 1, timeout=20)
    assert len(box) == 1 and b"Subject: retry" in box[0]
    assert a.mailbox("alice") == []  # no bounce, no delay warning
    assert a.queue_empty()


def test_cname_mx_host_is_followed(instances: object, dns_server: DnsServer) -> None:
    a: Instance = instances("a.test", "127.0.0.2")  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3")  # type: ignore[operator]
    # alias.test's MX host is a CNAME to mx.b.test; b accepts alias.test as a local domain
    assert b.data.exists()
    assert correo(b.data, "domain", "add", "alias.test").returncode == 0
    assert correo(b.data, "alias", "add", "bob@alias.test", "bob@b.test").returncode == 0
    a.submit("alice@a.test", ["bob@alias.test"], message("alice@a.test", "bob@alias.test", "cn"))
    box = b.wait_mail("bob", 1)
    assert len(box) == 1, a.log()[-2000:]
