"""JMAP VacationResponse (RFC 8621 §8) over real TLS: it is the account's Sieve vacation,
the script ManageSieve shows, and it answers mail delivered over SMTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.server.cluster_helpers import eventually
from tests.server.helpers import RawSmtp
from tests.server.jmap_helpers import Jmap, sieve_login, sieve_server

VACATION = "urn:ietf:params:jmap:vacationresponse"
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", VACATION]
ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    yield from sieve_server(tmp_path)


class Client(Jmap):
    using = USING


def _send(srv: Server, subject: str) -> None:
    smtp = RawSmtp(srv.ports["smtp"])
    assert smtp.cmd("EHLO client.test")[0] == 250
    assert smtp.cmd(f"MAIL FROM:<{BOB}>")[0] == 250
    assert smtp.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
    assert smtp.cmd("DATA")[0] == 354
    smtp.send(
        f"From: {BOB}\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@t>\r\n\r\nhello\r\n.\r\n".encode()
    )
    assert smtp.reply()[0] == 250
    smtp.close()


def _subjects(user: str, srv: Server) -> list[str]:
    jmap = Jmap(srv, user)
    ids = jmap.email_ids()
    got = jmap.call("Email/get", ids=ids, properties=["subject"]) if ids else {"list": []}
    return [str(e["subject"]) for e in got["list"]]


def test_vacation_is_the_sieve_vacation(srv: Server) -> None:
    jmap = Client(srv)
    assert VACATION in jmap.session["capabilities"]
    (first,) = jmap.call("VacationResponse/get", ids=None)["list"]
    assert first == {"id": "singleton", "isEnabled": False, "fromDate": None, "toDate": None,
                     "subject": None, "textBody": None, "htmlBody": None}  # fmt: skip
    got = jmap.call(
        "VacationResponse/set",
        update={
            "singleton": {
                "isEnabled": True,
                "fromDate": "2020-01-01T00:00:00Z",
                "subject": 'Away "for now"',
                "textBody": "Back on Monday.\nBye.",
            }
        },
    )
    assert got["updated"] == {"singleton": None} and got["newState"] != got["oldState"]
    # ManageSieve sees the same script, active
    sieve = sieve_login(srv.ports["sieve"])
    listed = sieve.cmd(b"LISTSCRIPTS")
    assert b'"correo-vacation" ACTIVE' in listed, listed
    script = b"\n".join(sieve.cmd(b'GETSCRIPT "correo-vacation"')[:-1])
    assert b"vacation :subject" in script and b"Back on Monday." in script
    sieve.cmd(b"LOGOUT")
    # and it answers
    _send(srv, "are-you-there")
    assert eventually(lambda: 'Away "for now"' in _subjects(BOB, srv), 10)
    (now,) = jmap.call("VacationResponse/get", ids=["singleton"])["list"]
    assert now["isEnabled"] is True and now["textBody"] == "Back on Monday.\nBye."
    # switched off: the settings stay, no reply any more
    off = jmap.call("VacationResponse/set", update={"singleton": {"isEnabled": False}})
    assert off["updated"] == {"singleton": None}
    (now,) = jmap.call("VacationResponse/get", ids=None)["list"]
    assert now["isEnabled"] is False and now["subject"] == 'Away "for now"'


def test_vacation_keeps_the_rest_of_an_active_script_and_its_errors(srv: Server) -> None:
    sieve = sieve_login(srv.ports["sieve"])
    text = b'require ["fileinto"];\r\nif header :contains "subject" "junk" { fileinto "Junk"; }\r\n'
    put = sieve.cmd(b'PUTSCRIPT "mine" {%d+}\r\n' % len(text) + text)
    assert put[-1].startswith(b"OK"), put
    assert sieve.cmd(b'SETACTIVE "mine"')[-1].startswith(b"OK")
    jmap = Client(srv)
    state = jmap.call("VacationResponse/get", ids=None)["state"]
    got = jmap.call(
        "VacationResponse/set",
        update={"singleton": {"isEnabled": True, "textBody": "away"}},
    )
    assert got["updated"] == {"singleton": None}
    script = b"\n".join(sieve.cmd(b'GETSCRIPT "mine"')[:-1])
    assert b'fileinto "Junk"' in script and b'vacation "away"' in script
    sieve.cmd(b"LOGOUT")
    bad = jmap.call(
        "VacationResponse/set",
        create={"x": {"isEnabled": True}},
        update={
            "singleton": {"fromDate": "yesterday"},
            "other": {"isEnabled": True},
        },
        destroy=["singleton"],
    )
    assert bad["notCreated"]["x"]["type"] == "singleton"
    assert bad["notDestroyed"]["singleton"]["type"] == "singleton"
    assert bad["notUpdated"]["singleton"]["type"] == "invalidProperties"
    assert bad["notUpdated"]["other"]["type"] == "notFound"
    errors = jmap.calls(
        ("VacationResponse/set", {"ifInState": state}),
        ("VacationResponse/get", {"properties": ["color"]}),
        ("VacationResponse/get", {"accountId": "Anope"}),
    )
    assert [e[1]["type"] for e in errors] == [
        "stateMismatch",
        "invalidArguments",
        "accountNotFound",
    ]
    (only,) = Jmap(srv).calls(("VacationResponse/get", {}))  # capability not in using
    assert only[1]["type"] == "unknownMethod"
