"""The sans-I/O ManageSieve core: parsing table, state table, responses, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correo.managesieve import (
    LEGAL,
    NEED_DATA,
    Authenticate,
    CheckScript,
    CommandError,
    ConnectionClosed,
    GetScript,
    HaveSpace,
    ListScripts,
    Noop,
    PutScript,
    RenameScript,
    Response,
    SaslCancel,
    SaslResponse,
    SetActive,
    SieveLimits,
    SieveServerConnection,
    StartTls,
    State,
    quote,
    script_block,
    script_list,
)


def authed() -> SieveServerConnection:
    c = SieveServerConnection()
    c.receive_data(b'AUTHENTICATE "PLAIN" "eA=="\r\n')
    assert isinstance(c.next_event(), Authenticate)
    c.send(Response("OK"))
    assert c.state is State.AUTHENTICATED
    return c


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b'GETSCRIPT "a b"\r\n', GetScript("a b")),
        (b'getscript "x\\"y"\r\n', GetScript('x"y')),
        (b"LISTSCRIPTS\r\n", ListScripts()),
        (b'HAVESPACE "s" 1234\r\n', HaveSpace("s", 1234)),
        (b'PUTSCRIPT "s" {5+}\r\nkeep;\r\n', PutScript("s", b"keep;")),
        (b'PUTSCRIPT "s" {5}\r\nkeep;\r\n', PutScript("s", b"keep;")),
        (b"CHECKSCRIPT {0+}\r\n\r\n", CheckScript(b"")),
        (b'SETACTIVE ""\r\n', SetActive("")),
        (b'RENAMESCRIPT "a" "b"\r\n', RenameScript("a", "b")),
        (b"NOOP\r\n", Noop()),
        (b'NOOP "tag"\r\n', Noop("tag")),
    ],
)
def test_commands(line: bytes, event: object) -> None:
    c = authed()
    c.receive_data(line)
    assert c.next_event() == event


@pytest.mark.parametrize(
    "line",
    [
        b"GETSCRIPT\r\n",  # missing argument
        b'GETSCRIPT "a" "b"\r\n',
        b"GETSCRIPT a\r\n",  # atoms are not strings
        b'HAVESPACE "s" "x"\r\n',
        b'GETSCRIPT "a\x01"\r\n',  # RFC 5804 §1.6: no controls in names
        b"FROB\r\n",
        b'GETSCRIPT  "a"\r\n',
        b"STARTTLS\r\n",  # not after authentication
    ],
)
def test_errors(line: bytes) -> None:
    c = authed()
    c.receive_data(line)
    ev = c.next_event()
    assert isinstance(ev, CommandError) and ev.response.kind == "NO"
    assert c.send(ev.response).startswith(b"NO ")
    c.receive_data(b"LISTSCRIPTS\r\n")
    assert c.next_event() == ListScripts()  # the session carries on


def test_state_table_covers_not_authenticated() -> None:
    c = SieveServerConnection()
    c.receive_data(b"LISTSCRIPTS\r\n")
    assert isinstance(c.next_event(), CommandError)
    assert ListScripts not in LEGAL[State.NOT_AUTHENTICATED]
    assert StartTls in LEGAL[State.NOT_AUTHENTICATED]


def test_sasl_exchange_and_cancel() -> None:
    c = SieveServerConnection()
    c.receive_data(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.next_event() == Authenticate("PLAIN", None)
    assert c.send_challenge(b"") == b'""\r\n'
    c.receive_data(b'"AGE="\r\n')
    assert c.next_event() == SaslResponse(b"AGE=")
    c.send(Response("NO", None, "bad"))
    assert c.state is State.NOT_AUTHENTICATED
    c.receive_data(b'AUTHENTICATE "PLAIN"\r\n')
    c.next_event()
    c.send_challenge(b"")
    c.receive_data(b'"*"\r\n')
    assert c.next_event() == SaslCancel()  # RFC 5804 §2.1


def test_literal_too_big_is_refused_from_its_header_and_skipped() -> None:
    c = SieveServerConnection(SieveLimits(max_literal=10))
    c.receive_data(b'AUTHENTICATE "PLAIN" "eA=="\r\n')
    c.next_event()
    c.send(Response("OK"))
    c.receive_data(b'PUTSCRIPT "s" {100+}\r\n')
    ev = c.next_event()
    assert isinstance(ev, CommandError)
    c.send(ev.response)
    c.receive_data(b"x" * 100 + b"\r\nLISTSCRIPTS\r\n")
    assert c.next_event() == ListScripts()


def test_line_bound_while_reading() -> None:
    c = SieveServerConnection(SieveLimits(max_line=100))
    c.receive_data(b"NOOP " + b"1" * 200)
    assert isinstance(c.next_event(), CommandError)


def test_starttls_then_forget_plaintext() -> None:
    c = SieveServerConnection()
    c.receive_data(b"STARTTLS\r\nLISTSCRIPTS\r\n")
    assert c.next_event() == StartTls()
    c.send(Response("OK"))
    assert c.state is State.TLS_PENDING
    c.tls_started()
    assert c.next_event() is NEED_DATA  # the injected plaintext command is gone


def test_eof_and_logout() -> None:
    c = SieveServerConnection()
    c.receive_data(b"")
    assert isinstance(c.next_event(), ConnectionClosed)


def test_responses() -> None:
    assert Response("NO", "NONEXISTENT", 'x"y').to_bytes() == b'NO (NONEXISTENT) "x\\"y"\r\n'
    assert quote("a\r\nb") == b"{4}\r\na\r\nb"
    assert script_list([("a", True), ("b", False)]) == b'"a" ACTIVE\r\n"b"\r\n'
    assert script_block("keep;") == b"{5}\r\nkeep;\r\n"


def _events(c: SieveServerConnection) -> list[object]:
    out: list[object] = []
    while True:
        ev = c.next_event()
        if ev is NEED_DATA or isinstance(ev, ConnectionClosed):
            return out
        out.append(ev)
        if isinstance(ev, CommandError):
            c.send(ev.response)
            if ev.close:
                return out
        elif isinstance(ev, Authenticate):
            c.send(Response("OK"))
        else:
            c.send(Response("OK"))


_TOKENS = st.sampled_from(
    [
        b"NOOP",
        b"LISTSCRIPTS",
        b"PUTSCRIPT",
        b" ",
        b'"a"',
        b"{3+}\r\n",
        b"{2}\r\n",
        b"\r\n",
        b"12",
        b'"\\',
        b"AUTHENTICATE",
        b'"PLAIN"',
        b"abc",
        b"\r",
        b"\n",
        b"\x00",
        b"LOGOUT",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_TOKENS, st.binary(max_size=8)), max_size=30))
def test_fuzz(parts: list[bytes]) -> None:
    """Invariant: any input yields commands or a NO/BYE (never an exception), and
    feeding byte by byte gives the same events as feeding everything at once."""
    data = b"".join(parts)
    whole = SieveServerConnection(SieveLimits(max_line=64, max_literal=16))
    whole.receive_data(data)
    expected = _events(whole)
    split = SieveServerConnection(SieveLimits(max_line=64, max_literal=16))
    got: list[object] = []
    for i in range(len(data)):
        split.receive_data(data[i : i + 1])
        got += _events(split)
    assert got == expected


@pytest.mark.parametrize(
    "bad",
    [
        b"PUTSCRIPT x {%d+}\r\n",  # an atom where a string belongs, before the literal
        b'PUTSCRIPT "x" junk {%d+}\r\n',
        b'"x" {%d}\r\n',  # not a command at all; a synchronising literal
        b'PUTSCRIPT "a" {3+}\r\nabc junk {%d+}\r\n',  # the error after a first literal
        b"NOOP " + b"1" * 90 + b" {%d+}\r\n",  # a line too long for the limit
    ],
)
def test_a_refused_line_drops_the_literals_it_announces(bad: bytes) -> None:
    """RFC 5804 §4: the octets of a literal belong to the command, refused or not;
    they must never run as the next command."""
    inner = b'DELETESCRIPT "x"\r\n'
    for step in (None, 1):
        c = SieveServerConnection(SieveLimits(max_line=64))
        c.receive_data(b'AUTHENTICATE "PLAIN" "eA=="\r\n')
        c.next_event()
        c.send(Response("OK"))
        data = bad % len(inner) + inner + b"\r\nLISTSCRIPTS\r\n"
        events: list[object] = []
        for chunk in [data] if step is None else [data[i : i + 1] for i in range(len(data))]:
            c.receive_data(chunk)
            events += _events(c)
        assert [type(e) for e in events] == [CommandError, ListScripts], events


def test_a_refused_literal_beyond_max_skip_ends_the_session() -> None:
    c = authed()
    c.receive_data(b"PUTSCRIPT x {99999999999+}\r\nxx")
    ev = c.next_event()
    assert isinstance(ev, CommandError) and ev.close and ev.response.kind == "BYE"
    assert isinstance(c.next_event(), ConnectionClosed)


@pytest.mark.parametrize(
    "name",
    [b'""', b'"a\xe2\x80\xa8b"', b'"e\xcc\x81"', b'"\xc2\x85"'],  # U+2028, NFD, NEL
)
def test_script_names_follow_rfc_5804(name: bytes) -> None:
    """RFC 5804 §1.6: at least one character, Net-Unicode, no controls or separators."""
    c = authed()
    c.receive_data(b"PUTSCRIPT " + name + b" {5+}\r\nkeep;\r\nLISTSCRIPTS\r\n")
    ev = c.next_event()
    assert isinstance(ev, CommandError) and ev.response.kind == "NO"
    c.send(ev.response)
    assert c.next_event() == ListScripts()
    c.send(Response("OK"))
    c.receive_data(b'SETACTIVE ""\r\nGETSCRIPT "\xc3\xa9"\r\n')  # "" deactivates (§2.8)
    assert c.next_event() == SetActive("")
    c.send(Response("OK"))
    assert c.next_event() == GetScript("é")
