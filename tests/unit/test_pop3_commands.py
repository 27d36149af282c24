"""POP3 command-line parser: one table of lines and the command (or error) each gives."""

from __future__ import annotations

import pytest

from correo.pop3.commands import (
    PARSERS,
    ApopCommand,
    AuthCommand,
    BadCommand,
    CapaCommand,
    Command,
    DeleCommand,
    ListCommand,
    NoopCommand,
    PassCommand,
    QuitCommand,
    RetrCommand,
    RsetCommand,
    StatCommand,
    StlsCommand,
    TopCommand,
    UidlCommand,
    UserCommand,
    decode_base64,
    parse_command,
)

SYNTAX = BadCommand("Syntax error")
BADNUM = BadCommand("Invalid message number")
NOARGS = BadCommand("No arguments allowed")

CASES: list[tuple[bytes, Command | BadCommand]] = [
    (b"USER alice", UserCommand("alice")),
    (b"user alice@example.org", UserCommand("alice@example.org")),
    (b"USER", SYNTAX),
    (b"USER a b", SYNTAX),
    (b"USER  a", SYNTAX),
    (b"USER \xff", SYNTAX),
    (b"PASS secret", PassCommand("secret")),
    (b"PASS with spaces  inside ", PassCommand("with spaces  inside ")),  # RFC 1939 §7
    (b"PASS", SYNTAX),
    (b"PASS ", SYNTAX),
    (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", ApopCommand()),
    (b"AUTH", AuthCommand(None, None)),
    (b"AUTH plain", AuthCommand("PLAIN", None)),
    (b"AUTH PLAIN =", AuthCommand("PLAIN", b"")),
    (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", AuthCommand("PLAIN", b"\x00alice\x00secret")),
    (b"AUTH PLAIN AGFsaWNlAHNlY3JldA", BadCommand("Invalid base64 data")),
    (b"AUTH PLAIN !!!!", BadCommand("Invalid base64 data")),
    (b"AUTH PLAIN a b", SYNTAX),
    (b"AUTH PL@IN", BadCommand("Invalid mechanism name")),
    (b"AUTH " + b"X" * 21, BadCommand("Invalid mechanism name")),
    (b"AUTH SCRAM-SHA-256", AuthCommand("SCRAM-SHA-256", None)),
    (b"STLS", StlsCommand()),
    (b"STLS now", NOARGS),
    (b"CAPA", CapaCommand()),
    (b"capa", CapaCommand()),
    (b"STAT", StatCommand()),
    (b"STAT ", NOARGS),
    (b"LIST", ListCommand(None)),
    (b"LIST 3", ListCommand(3)),
    (b"LIST 007", ListCommand(7)),
    (b"LIST 0", ListCommand(0)),  # syntactically a number; range check is the core's job
    (b"LIST +1", BADNUM),
    (b"LIST -1", BADNUM),
    (b"LIST 1.0", BADNUM),
    (b"LIST 12345678901", BADNUM),
    (b"LIST 9999999999", ListCommand(9999999999)),
    (b"LIST 1 2", SYNTAX),
    (b"LIST ", SYNTAX),
    (b"LIST \xd9\xa3", BADNUM),  # Arabic-Indic digit: not ASCII
    (b"UIDL", UidlCommand(None)),
    (b"UIDL 2", UidlCommand(2)),
    (b"UIDL x", BADNUM),
    (b"RETR 1", RetrCommand(1)),
    (b"RETR", SYNTAX),
    (b"RETR 1 2", SYNTAX),
    (b"RETR one", BADNUM),
    (b"TOP 1 0", TopCommand(1, 0)),
    (b"top 2 10", TopCommand(2, 10)),
    (b"TOP 1", SYNTAX),
    (b"TOP 1 -1", BADNUM),
    (b"TOP 1 2 3", SYNTAX),
    (b"DELE 4", DeleCommand(4)),
    (b"DELE", SYNTAX),
    (b"RSET", RsetCommand()),
    (b"NOOP", NoopCommand()),
    (b"QUIT", QuitCommand()),
    (b"QUIT now", NOARGS),
    (b"", BadCommand("Unknown command")),
    (b"HELO", BadCommand("Unknown command")),
    (b"RETRX 1", BadCommand("Unknown command")),
    (b" STAT", BadCommand("Unknown command")),
    (b"STAT\r", SYNTAX),
    (b"LIST\t1", SYNTAX),
    (b"USER a\x00b", SYNTAX),
    (b"NOOP\x7f", SYNTAX),
]


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_parse_table(line: bytes, expected: Command | BadCommand) -> None:
    assert parse_command(line) == expected


def test_every_keyword_is_in_the_table() -> None:
    tested = {ln.partition(b" ")[0].upper() for ln, cmd in CASES if not isinstance(cmd, BadCommand)}
    assert tested == set(PARSERS)


def test_secrets_hidden_in_repr() -> None:
    assert "secret" not in repr(PassCommand("secret"))
    assert "alice" not in repr(AuthCommand("PLAIN", b"\x00alice\x00secret"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [(b"=", b""), (b"YQ==", b"a"), (b"YQ", None), (b"Y Q==", None), (b"YQ==YQ==", None)],
)
def test_decode_base64(text: bytes, expected: bytes | None) -> None:
    assert decode_base64(text) == expected
