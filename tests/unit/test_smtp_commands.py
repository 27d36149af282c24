"""Command-line parsing: every verb, valid and invalid, and every error code."""

from __future__ import annotations

import pytest

from correo.smtp import (
    Address,
    Auth,
    Bdat,
    Command,
    Data,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Path,
    Quit,
    RcptTo,
    Reply,
    Rset,
    StartTls,
    Vrfy,
    parse_command,
)


def _mail(local: str, domain: str, raw: str, **params: str | None) -> MailFrom:
    return MailFrom(Path(Address(local, domain), raw), dict(params))


VALID: list[tuple[bytes, Command]] = [
    (b"EHLO client.example", Helo("client.example", True)),
    (b"ehlo [192.0.2.1]", Helo("[192.0.2.1]", True)),
    (b"HELO x", Helo("x", False)),
    (b"HeLo x  ", Helo("x", False)),  # trailing blanks tolerated
    (b"MAIL FROM:<a@b>", _mail("a", "b", "<a@b>")),
    (b"mail from:<a@b>", _mail("a", "b", "<a@b>")),
    (b"MAIL FROM: <a@b>", _mail("a", "b", "<a@b>")),
    (b"MAIL FROM:<>", MailFrom(Path(None, "<>"), {})),
    (
        b"MAIL FROM:<a@b> SIZE=1000 body=8BITMIME",
        _mail("a", "b", "<a@b>", SIZE="1000", BODY="8BITMIME"),
    ),
    (b"MAIL FROM:<a@b> SMTPUTF8", _mail("a", "b", "<a@b>", SMTPUTF8=None)),
    (
        "MAIL FROM:<\u00e9@b> SMTPUTF8".encode(),
        _mail("\u00e9", "b", "<\u00e9@b>", SMTPUTF8=None),
    ),
    (b"MAIL FROM:<a@b> ENVID=x+2Bq", _mail("a", "b", "<a@b>", ENVID="x+2Bq")),
    (b"MAIL FROM:<a@b>  AUTH=<>", _mail("a", "b", "<a@b>", AUTH="<>")),
    (b"RCPT TO:<c@d>", RcptTo(Path(Address("c", "d"), "<c@d>"), {})),
    (
        b"RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d",
        RcptTo(
            Path(Address("c", "d"), "<c@d>"),
            {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;c@d"},
        ),
    ),
    (b"rcpt to:<Postmaster>", RcptTo(Path(Address("postmaster", ""), "<Postmaster>"), {})),
    (
        b"RCPT TO:<@hop:c@d>",
        RcptTo(Path(Address("c", "d"), "<@hop:c@d>", had_source_route=True), {}),
    ),
    (b"DATA", Data()),
    (b"data", Data()),
    (b"BDAT 0", Bdat(0, False)),
    (b"BDAT 100 LAST", Bdat(100, True)),
    (b"bdat 7 last", Bdat(7, True)),
    (b"BDAT 000000000000000001", Bdat(1, False)),
    (b"RSET", Rset()),
    (b"NOOP", Noop()),
    (b"NOOP anything at all", Noop()),
    (b"QUIT", Quit()),
    (b"VRFY user", Vrfy("user")),
    (b"VRFY Some User <u@x>", Vrfy("Some User <u@x>")),
    (b"EXPN list", Expn("list")),
    (b"HELP", Help(None)),
    (b"HELP MAIL", Help("MAIL")),
    (b"STARTTLS", StartTls()),
    (b"starttls", StartTls()),
    (b"AUTH PLAIN", Auth("PLAIN", None)),
    (b"auth login", Auth("LOGIN", None)),
    (b"AUTH PLAIN =", Auth("PLAIN", b"")),
    (b"AUTH PLAIN AHVzZXIAcGFzcw==", Auth("PLAIN", b"\x00user\x00pass")),
    (b"AUTH SCRAM-SHA-256 biwsbj11c2Vy", Auth("SCRAM-SHA-256", b"n,,n=user")),
]


@pytest.mark.parametrize(("line", "expected"), VALID)
def test_valid(line: bytes, expected: Command) -> None:
    assert parse_command(line) == expected


def test_rcpt_utf8_needs_transaction_smtputf8() -> None:
    line = "RCPT TO:<\u00e9@b>".encode()
    assert parse_command(line) == Reply(501, "5.1.3", "Bad recipient address syntax")
    cmd = parse_command(line, smtputf8=True)
    assert isinstance(cmd, RcptTo)
    assert cmd.path.address == Address("\u00e9", "b")


def test_lhlo_only_in_lmtp() -> None:
    assert parse_command(b"LHLO x", lmtp=True) == Helo("x", True)
    assert _code(parse_command(b"LHLO x")) == (500, "5.5.1")
    assert _code(parse_command(b"EHLO x", lmtp=True)) == (500, "5.5.1")
    assert _code(parse_command(b"HELO x", lmtp=True)) == (500, "5.5.1")


def _code(result: Command | Reply) -> tuple[int, str | None]:
    assert isinstance(result, Reply), result
    return result.code, result.status


INVALID: list[tuple[bytes, tuple[int, str]]] = [
    (b"", (500, "5.5.2")),
    (b"   ", (500, "5.5.2")),
    (b"FOO", (500, "5.5.1")),
    (b"MAILFROM:<a@b>", (500, "5.5.1")),
    (b"\x00", (500, "5.5.1")),
    (b"EHLO", (501, "5.5.2")),
    (b"HELO", (501, "5.5.2")),
    (b"EHLO two words", (501, "5.5.2")),
    (b"EHLO \xff", (501, "5.5.2")),
    (b"MAIL", (501, "5.5.2")),
    (b"MAIL TO:<a@b>", (501, "5.5.2")),
    (b"MAIL FROM:a@b", (501, "5.1.7")),
    (b"MAIL FROM:  <a@b>", (501, "5.1.7")),
    (b"MAIL FROM:<a@b", (501, "5.1.7")),
    (b"MAIL FROM:<a@b>SIZE=1", (501, "5.1.7")),
    (b"MAIL FROM:<@b>", (501, "5.1.7")),
    ("MAIL FROM:<\u00e9@b>".encode(), (501, "5.1.7")),
    (b"MAIL FROM:<a@b> SIZE=1 SIZE=2", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> size=1 SIZE=2", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> =1", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> SIZE=", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> SIZE=a=b", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> -X", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> X_Y", (501, "5.5.4")),
    (b"MAIL FROM:<a@b> X=\xff", (501, "5.5.4")),
    (b"RCPT", (501, "5.5.2")),
    (b"RCPT FROM:<a@b>", (501, "5.5.2")),
    (b"RCPT TO:<>", (501, "5.1.3")),
    (b"RCPT TO:c@d", (501, "5.1.3")),
    (b"RCPT TO:<c@d> A=1 a=2", (501, "5.5.4")),
    (b"DATA now", (501, "5.5.2")),
    (b"RSET x", (501, "5.5.2")),
    (b"QUIT now", (501, "5.5.2")),
    (b"STARTTLS x", (501, "5.5.2")),
    (b"VRFY", (501, "5.5.2")),
    (b"EXPN", (501, "5.5.2")),
    (b"VRFY \xff", (501, "5.5.2")),
    (b"HELP \xfe", (501, "5.5.2")),
    (b"AUTH", (501, "5.5.2")),
    (b"AUTH PLAIN x y", (501, "5.5.2")),
    (b"AUTH BAD!MECH", (501, "5.5.2")),
    (b"AUTH " + b"M" * 21, (501, "5.5.2")),
    (b"AUTH PLAIN ####", (501, "5.5.2")),
    (b"AUTH PLAIN AHVzZXIAcGFzcw", (501, "5.5.2")),  # missing padding
    (b"BDAT", (554, "5.5.4")),
    (b"BDAT x", (554, "5.5.4")),
    (b"BDAT -1", (554, "5.5.4")),
    (b"BDAT 1 FIRST", (554, "5.5.4")),
    (b"BDAT 1 LAST x", (554, "5.5.4")),
    (b"BDAT 1000000000000000000", (554, "5.5.4")),  # 19 digits
]


@pytest.mark.parametrize(("line", "code"), INVALID)
def test_invalid(line: bytes, code: tuple[int, str]) -> None:
    assert _code(parse_command(line)) == code
