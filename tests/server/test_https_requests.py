"""The https listener answers every request head, over real TLS: absolute-form targets
(RFC 9112 §3.2.2) and queries with many fields included."""

from __future__ import annotations

import pytest

from tests.conftest import Server
from tests.server.web_helpers import https_get as _get
from tests.server.web_helpers import status_of


def test_absolute_form_target(server: Server) -> None:
    answer = _get(
        server.ports["https"],
        b"GET https://mta-sts.example.test/.well-known/mta-sts.txt HTTP/1.1\r\n"
        b"Host: mta-sts.example.test\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"version: STSv1" in answer


def test_many_query_fields_get_an_answer(server: Server) -> None:
    fields = "&".join(f"f{i}=x" for i in range(100))
    answer = _get(
        server.ports["https"],
        f"GET /mail/config-v1.1.xml?emailaddress=alice%40example.test&{fields} HTTP/1.1\r\n"
        "Host: autoconfig.example.test\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"<clientConfig" in answer
    for bad in (
        b"GET //[ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\nb\r\n\r\n",
        b"GET https://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ):
        answer = _get(server.ports["https"], bad)
        assert status_of(answer) in (400, 404), (bad, answer[:200])
    log = server.log()
    assert "Traceback" not in log and "session_crashed" not in log


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"https://MTA-STS.Example.Test/.well-known/mta-sts.txt", 200),
        (b"http://mta-sts.example.test:8443/.well-known/mta-sts.txt", 200),
        (b"HTTPS://mta-sts.example.test./.well-known/mta-sts.txt", 200),
        (b"https://mta-sts.elsewhere.test/.well-known/mta-sts.txt", 404),  # not Host's
        (b"https://user:pw@mta-sts.example.test/.well-known/mta-sts.txt", 400),
        (b"ftp://mta-sts.example.test/.well-known/mta-sts.txt", 400),
        (b"https:///.well-known/mta-sts.txt", 400),
    ],
)
def test_the_target_authority_names_the_host(server: Server, target: bytes, status: int) -> None:
    """RFC 9112 §3.2.2: an absolute-form target's authority replaces the Host field."""
    answer = _get(
        server.ports["https"],
        b"GET " + target + b" HTTP/1.1\r\nHost: mta-sts.elsewhere.test\r\n\r\n"
        if status != 404
        else b"GET " + target + b" HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n",
    )
    assert status_of(answer) == status, answer[:300]
