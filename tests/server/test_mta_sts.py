"""MTA-STS end to end: a.test sends to b.test, whose policy is served over HTTPS.

b.test's MX certificate and its policy host's certificate come from a test CA that
a.test trusts through ``[outbound] ca_file``; DNS is the loopback test server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pki import PolicyServer, TestCA
from tests.server.conftest_mta import DnsServer, Instance, _free_mx_port, correo, message


@pytest.fixture
def policy(tmp_path: Path, dns_server: DnsServer) -> Iterator[tuple[TestCA, PolicyServer]]:
    ca = TestCA(tmp_path / "ca")
    server = PolicyServer(ca, tmp_path, ["mta-sts.b.test"])
    dns_server.zone["_mta-sts.b.test"] = {"TXT": ["v=STSv1; id=2026112601"]}
    dns_server.zone["mta-sts.b.test"] = {"A": ["127.0.0.1"]}
    yield ca, server
    server.close()


def _serve(server: PolicyServer, mode: str, mx: str) -> None:
    body = f"version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n".encode()
    server.responses["mta-sts.b.test"] = (200, "text/plain", body)


def _pair(
    instances: object, ca: TestCA, server: PolicyServer, *, b_cert_from_ca: bool = True
) -> tuple[Instance, Instance]:
    outbound = {"mta_sts_port": str(server.port), "ca_file": f'"{ca.cert_path}"'}
    a: Instance = instances("a.test", "127.0.0.2", outbound)  # type: ignore[operator]
    b: Instance = instances("b.test", "127.0.0.3", start=False)  # type: ignore[operator]
    if b_cert_from_ca:
        ca.issue("mx.b.test", b.data / "tls" / "cert.pem", b.data / "tls" / "key.pem")
    b.start()
    return a, b


def _wait_log(inst: Instance, text: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in inst.log():
            return True
        time.sleep(0.1)
    return False


def _held_back(a: Instance, b: Instance, subject: str, reason: str) -> None:
    """Mail from a to bob@b.test waits in a's queue for ``reason``; b never gets it."""
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", subject))
    assert _wait_log(a, "event=queue.deferred"), a.log()[-3000:]
    assert reason in a.log()
    # Not a fixed wait: a retry (1 s later) is deferred again, and only then is b's
    # mailbox looked at and the message found still queued.
    deferred = a.log().count("event=queue.deferred")
    deadline = time.monotonic() + 30
    while a.log().count("event=queue.deferred") <= deferred:
        assert time.monotonic() < deadline, a.log()[-3000:]
        time.sleep(0.1)
    assert b.mailbox("bob") == []
    assert "Mail queue is empty" not in correo(a.data, "queue", "list").stdout


def test_enforced_policy_delivers_over_verified_tls(
    instances: object, policy: tuple[TestCA, PolicyServer]
) -> None:
    ca, server = policy
    _serve(server, "enforce", "mx.b.test")
    a, b = _pair(instances, ca, server)
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "sts ok"))
    box = b.wait_mail("bob", 1)
    assert len(box) == 1 and b"Subject: sts ok" in box[0], a.log()[-3000:]
    log = a.log()
    assert "event=queue.mta_sts_policy domain=b.test id=2026112601 mode=enforce" in log
    assert "event=queue.tls host=mx.b.test" in log
    assert server.requests == ["mta-sts.b.test/.well-known/mta-sts.txt"]
    assert (a.data / "mta-sts.json").exists()


def test_an_mx_host_the_policy_does_not_name_gets_nothing(
    instances: object, policy: tuple[TestCA, PolicyServer]
) -> None:
    ca, server = policy
    _serve(server, "enforce", "mx2.b.test")
    a, b = _pair(instances, ca, server)
    _held_back(a, b, "sts no", "is allowed by the domain's MTA-STS policy")


def test_a_certificate_that_does_not_verify_is_not_bypassed(
    instances: object, policy: tuple[TestCA, PolicyServer]
) -> None:
    """b.test keeps its self-signed certificate: no delivery, and no plaintext retry."""
    ca, server = policy
    _serve(server, "enforce", "mx.b.test")
    a, b = _pair(instances, ca, server, b_cert_from_ca=False)
    _held_back(a, b, "sts bad", "certificate verify failed")


def test_testing_mode_delivers_anyway_and_says_so(
    instances: object, policy: tuple[TestCA, PolicyServer]
) -> None:
    ca, server = policy
    _serve(server, "testing", "mx2.b.test")
    a, b = _pair(instances, ca, server, b_cert_from_ca=False)
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "sts test"))
    box = b.wait_mail("bob", 1)
    assert len(box) == 1, a.log()[-3000:]
    assert "event=queue.mta_sts_testing domain=b.test not_in_policy=mx.b.test" in a.log()


def test_correo_publishes_a_policy_another_correo_enforces(
    instances: object, dns_server: DnsServer, tmp_path: Path
) -> None:
    """b.test serves its own policy on its https listener; a.test fetches and enforces it."""
    import re

    from correo.web.site import mta_sts_id, mta_sts_policy

    ca = TestCA(tmp_path / "own-ca")
    port = _free_mx_port()  # not a fixed port: another run on this machine may hold it
    a: Instance = instances(  # type: ignore[operator]
        "a.test", "127.0.0.2", {"mta_sts_port": str(port), "ca_file": f'"{ca.cert_path}"'}
    )
    b: Instance = instances("b.test", "127.0.0.3", start=False)  # type: ignore[operator]
    cfg = (b.data / "correo.toml").read_text()
    cfg = re.sub(r"(?m)^https = \[.*\]$", f'https = ["127.0.0.3:{port}"]', cfg)
    (b.data / "correo.toml").write_text(cfg)
    ca.issue("mx.b.test", b.data / "tls" / "cert.pem", b.data / "tls" / "key.pem", "mta-sts.b.test")
    ident = mta_sts_id(mta_sts_policy("mx.b.test"))
    dns_server.zone["_mta-sts.b.test"] = {"TXT": [f"v=STSv1; id={ident}"]}
    dns_server.zone["mta-sts.b.test"] = {"A": ["127.0.0.3"]}
    b.start()
    a.submit("alice@a.test", ["bob@b.test"], message("alice@a.test", "bob@b.test", "own policy"))
    box = b.wait_mail("bob", 1)
    assert len(box) == 1, a.log()[-3000:]
    assert f"event=queue.mta_sts_policy domain=b.test id={ident} mode=enforce mx=mx.b.test" in (
        a.log()
    )
    assert "event=https.request" in b.log() and "path=/.well-known/mta-sts.txt" in b.log()
    assert "event=queue.tls host=mx.b.test" in a.log()
