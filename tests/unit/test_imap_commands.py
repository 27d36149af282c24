"""Command parser tables (RFC 9051 §6 and the extensions in scope): valid and invalid."""

from __future__ import annotations

import datetime as dt

import pytest

from correo.imap.commands import (
    COMMAND_NAMES,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAtt,
    GetQuota,
    GetQuotaRoot,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    ParseOptions,
    Qresync,
    Rename,
    Search,
    Section,
    Select,
    SetQuota,
    Sort,
    SortCriterion,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Thread,
    UidExpunge,
    Unauthenticate,
    Unselect,
    Unsubscribe,
    command_name,
    parse_command,
)
from correo.imap.errors import ParseError
from correo.imap.search import All, FlagKey, HeaderKey
from correo.imap.sequence import STAR, SequenceSet


def parse(line: bytes, *, utf8: bool = False) -> Command:
    """Split a test command at its literals the way the connection frames it."""
    lines: list[bytes] = []
    literals: list[bytes] = []
    rest = line
    while True:
        brace = rest.find(b"}\r\n")
        if brace < 0:
            lines.append(rest)
            break
        start = rest.rfind(b"{", 0, brace)
        size = int(rest[start + 1 : brace].rstrip(b"+"))
        lines.append(rest[: brace + 1])
        body = rest[brace + 3 :]
        literals.append(body[:size])
        rest = body[size:]
    return parse_command(lines, literals, options=ParseOptions(utf8=utf8))


def S(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


VALID: list[tuple[bytes, Command]] = [
    (b"a CAPABILITY", Capability()),
    (b"a noop", Noop()),
    (b"a LOGOUT", Logout()),
    (b"a STARTTLS", StartTLS()),
    (b"a AUTHENTICATE PLAIN", Authenticate("PLAIN")),
    (b"a AUTHENTICATE PLAIN =", Authenticate("PLAIN", b"")),
    (b"a AUTHENTICATE plain AGFsaWNlAHB3", Authenticate("PLAIN", b"\x00alice\x00pw")),
    (b"a LOGIN alice secret", Login("alice", "secret")),
    (b'a LOGIN "al\\"ice" {3}\r\np w', Login('al"ice', "p w")),
    (b'a LOGIN "j\xc3\xb6rg" x', Login("jörg", "x")),
    (b"a ENABLE CONDSTORE utf8=accept", Enable(("CONDSTORE", "UTF8=ACCEPT"))),
    (b"a SELECT inbox", Select("INBOX")),
    (b"a SELECT INBOX (CONDSTORE)", Select("INBOX", condstore=True)),
    (b"a EXAMINE Trash", Examine("Trash")),
    (
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        Select("INBOX", qresync=Qresync(67890007, 20050715194045000, S("41,43:211,214:541"))),
    ),
    (
        b"a SELECT INBOX (QRESYNC (1 2 1:9 (1,5 10,50)))",
        Select("INBOX", qresync=Qresync(1, 2, S("1:9"), (S("1,5"), S("10,50")))),
    ),
    (
        b"a SELECT INBOX (QRESYNC (1 2 (1 10)))",
        Select("INBOX", qresync=Qresync(1, 2, None, (S("1"), S("10")))),
    ),
    (b"a CREATE Entw&APw-rfe", Create("Entwürfe")),
    (b"a CREATE Sent (USE (\\Sent))", Create("Sent", ("\\Sent",))),
    (b"a DELETE foo", Delete("foo")),
    (b"a RENAME foo bar", Rename("foo", "bar")),
    (b"a SUBSCRIBE foo", Subscribe("foo")),
    (b"a UNSUBSCRIBE foo", Unsubscribe("foo")),
    (b'a LIST "" *', List("", ("*",))),
    (b"a LIST ~/Mail %/x", List("~/Mail", ("%/x",))),
    (
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (INBOX "Fo%") '
        b"RETURN (CHILDREN STATUS (MESSAGES UNSEEN))",
        List(
            "",
            ("INBOX", "Fo%"),
            frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
            frozenset({"CHILDREN", "STATUS"}),
            ("MESSAGES", "UNSEEN"),
            True,
        ),
    ),
    (b'a LIST () "" % RETURN ()', List("", ("%",), extended=True)),
    (b'a LSUB "" *', Lsub("", "*")),
    (b"a NAMESPACE", Namespace()),
    (
        b"a STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ SIZE)",
        Status("INBOX", ("MESSAGES", "UIDNEXT", "HIGHESTMODSEQ", "SIZE")),
    ),
    (b"a IDLE", Idle()),
    (b"a CHECK", Check()),
    (b"a CLOSE", Close()),
    (b"a UNSELECT", Unselect()),
    (b"a EXPUNGE", Expunge()),
    (b"a UID EXPUNGE 3:5,7", UidExpunge(S("3:5,7"))),
    (b"a SEARCH ALL", Search(False, All())),
    (
        b"a UID SEARCH CHARSET utf-8 FROM {4}\r\nj\xc3\xb6",
        Search(True, HeaderKey("From", "jö"), "UTF-8"),
    ),
    (b"a SEARCH RETURN () SEEN", Search(False, FlagKey("\\Seen"), None, ())),
    (
        b"a SEARCH RETURN (MIN MAX SAVE) UNSEEN",
        Search(False, FlagKey("\\Seen", False), None, ("MIN", "MAX", "SAVE")),
    ),
    (
        b"a UID SORT (REVERSE DATE SUBJECT) UTF-8 ALL",
        Sort(True, (SortCriterion("DATE", True), SortCriterion("SUBJECT")), "UTF-8", All()),
    ),
    (b"a THREAD REFERENCES US-ASCII ALL", Thread(False, "REFERENCES", "US-ASCII", All())),
    (b"a FETCH 1 FLAGS", Fetch(False, S("1"), (FetchAtt("FLAGS"),))),
    (
        b"a FETCH 1:* FAST",
        Fetch(
            False, S("1:*"), (FetchAtt("FLAGS"), FetchAtt("INTERNALDATE"), FetchAtt("RFC822.SIZE"))
        ),
    ),
    (
        b"a UID FETCH 5 (BODY[] BINARY.PEEK[1]<0.10> BINARY.SIZE[2] RFC822.HEADER)",
        Fetch(
            True,
            S("5"),
            (
                FetchAtt("BODY", Section()),
                FetchAtt("BINARY", Section((1,)), (0, 10), peek=True),
                FetchAtt("BINARY.SIZE", Section((2,))),
                FetchAtt("RFC822.HEADER"),
                FetchAtt("UID"),
            ),
        ),
    ),
    (
        b"a FETCH 2 (BODY.PEEK[HEADER.FIELDS.NOT (Received X-Spam)] "
        b"BODY[1.2.MIME] BODY[3.TEXT]<5.7>)",
        Fetch(
            False,
            S("2"),
            (
                FetchAtt(
                    "BODY", Section((), "HEADER.FIELDS.NOT", ("Received", "X-Spam")), peek=True
                ),
                FetchAtt("BODY", Section((1, 2), "MIME")),
                FetchAtt("BODY", Section((3,), "TEXT"), (5, 7)),
            ),
        ),
    ),
    (
        b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
        Fetch(
            True, S("1:*"), (FetchAtt("FLAGS"), FetchAtt("UID"), FetchAtt("MODSEQ")), 12345, True
        ),
    ),
    (b"a STORE 1 FLAGS (\\Seen)", Store(False, S("1"), "replace", ("\\Seen",))),
    (
        b"a UID STORE 1:3 -FLAGS.SILENT \\Deleted $Junk",
        Store(True, S("1:3"), "remove", ("\\Deleted", "$Junk"), True),
    ),
    (b"a STORE 2 (UNCHANGEDSINCE 7) +FLAGS ()", Store(False, S("2"), "add", (), False, 7)),
    (b"a COPY 1:2 Trash", Copy(False, S("1:2"), "Trash")),
    (b"a UID MOVE $ Archive", Move(True, SequenceSet((), True), "Archive")),
    (b"a ID NIL", Id(None)),
    (b'a ID ("name" "x" "version" NIL)', Id((("name", "x"), ("version", None)))),
    (b"a ID ()", Id(())),
    (b"a COMPRESS DEFLATE", Compress("DEFLATE")),
    (b'a GETQUOTA ""', GetQuota("")),
    (b"a GETQUOTAROOT INBOX", GetQuotaRoot("INBOX")),
    (b'a SETQUOTA "" (STORAGE 512)', SetQuota("", (("STORAGE", 512),))),
    (b"a UNAUTHENTICATE", Unauthenticate()),
]


@pytest.mark.parametrize(
    ("line", "command"), VALID, ids=[v[0][:40].decode("latin-1") for v in VALID]
)
def test_valid(line: bytes, command: Command) -> None:
    assert parse(line) == command


def test_every_command_has_a_valid_case() -> None:
    seen = set()
    for line, _ in VALID:
        head = command_name(line)
        assert head is not None
        seen.add(head[1])
    streamed = {"APPEND", "REPLACE", "UID REPLACE"}  # framed by the connection, not parsed
    assert seen >= COMMAND_NAMES - streamed - {
        "UID COPY",
        "MOVE",
        "UID THREAD",
        "SORT",
        "UID STORE",
    }


def test_utf8_mailbox_names() -> None:
    assert parse(b'a SELECT "Entw\xc3\xbcrfe"', utf8=True) == Select("Entwürfe")
    # in a rev2 session "&" is just a character
    assert parse(b"a SELECT a&b", utf8=True) == Select("a&b")


def test_fetch_response_names() -> None:
    cmd = parse(b'a FETCH 1 (BODY.PEEK[1.HEADER.FIELDS (From "X Y")]<10.20> BINARY[2] RFC822)')
    assert isinstance(cmd, Fetch)
    names = [i.response_name() for i in cmd.items]
    assert names == [b'BODY[1.HEADER.FIELDS (From "X Y")]<10>', b"BINARY[2]", b"RFC822"]
    assert [i.sets_seen for i in cmd.items] == [False, True, True]


INVALID: list[tuple[bytes, str, str | None]] = [
    (b"a NOOP x", "BAD", "PARSE"),
    (b"a NOOP ", "BAD", "PARSE"),
    (b"a FOO", "BAD", "CLIENTBUG"),
    (b"a UID NOOP", "BAD", "CLIENTBUG"),
    (b"a LOGIN alice", "BAD", "PARSE"),
    (b"a LOGIN alice  pw", "BAD", "PARSE"),
    (b'a LOGIN "unterminated pw', "BAD", "PARSE"),
    (b'a LOGIN "bad\\x" pw', "BAD", "PARSE"),
    (b"a LOGIN \xff pw", "BAD", "PARSE"),
    (b"a AUTHENTICATE PLAIN !!!", "BAD", "PARSE"),
    (b"a AUTHENTICATE PLAIN AGF", "BAD", "PARSE"),
    (b"a SELECT", "BAD", "PARSE"),
    (b"a SELECT INBOX (FOO)", "BAD", "PARSE"),
    (b"a SELECT INBOX (QRESYNC (0 1))", "BAD", "PARSE"),
    (b"a SELECT &AGE-", "NO", "CANNOT"),
    (b"a SELECT caf\xc3\xa9", "BAD", "PARSE"),
    (b"a CREATE x (USE (Sent))", "BAD", "PARSE"),
    (b'a LIST (RECURSIVEMATCH) "" *', "BAD", "PARSE"),
    (b'a LIST (BOGUS) "" *', "BAD", "PARSE"),
    (b'a LIST "" * RETURN (FOO)', "BAD", "PARSE"),
    (b"a STATUS INBOX (MESSAGES BOGUS)", "BAD", "PARSE"),
    (b"a STATUS INBOX ()", "BAD", "PARSE"),
    (b"a APPEND INBOX", "BAD", "PARSE"),
    (b"a UID EXPUNGE", "BAD", "PARSE"),
    (b"a SEARCH", "BAD", "PARSE"),
    (b"a SEARCH FOO", "BAD", "PARSE"),
    (b"a SEARCH CHARSET KOI8-R ALL", "NO", "BADCHARSET (UTF-8 US-ASCII)"),
    (b"a SEARCH RETURN (PARTIAL) ALL", "BAD", "PARSE"),
    (b"a SEARCH (ALL", "BAD", "PARSE"),
    (b"a SEARCH ALL)", "BAD", "PARSE"),
    (b"a SEARCH SINCE 32-Jan-2020", "BAD", "PARSE"),
    (b"a SEARCH LARGER 99999999999999999999", "BAD", "PARSE"),
    (b"a SEARCH OR ALL", "BAD", "PARSE"),
    (b"a SORT (FOO) UTF-8 ALL", "BAD", "PARSE"),
    (b"a SORT (REVERSE) UTF-8 ALL", "BAD", "PARSE"),
    (b"a SORT (DATE) ALL", "NO", "BADCHARSET (UTF-8 US-ASCII)"),
    (b"a THREAD BOGUS UTF-8 ALL", "NO", "CANNOT"),
    (b"a FETCH 1", "BAD", "PARSE"),
    (b"a FETCH 0 FLAGS", "BAD", "PARSE"),
    (b"a FETCH 1 BOGUS", "BAD", "PARSE"),
    (b"a FETCH 1 BODY[MIME]", "BAD", "PARSE"),
    (b"a FETCH 1 BINARY[HEADER]", "BAD", "PARSE"),
    (b"a FETCH 1 BODY[1]<1.0>", "BAD", "PARSE"),
    (b"a FETCH 1 (FLAGS", "BAD", "PARSE"),
    (b"a FETCH 1 FLAGS (VANISHED)", "BAD", "PARSE"),
    (b"a UID FETCH 1 FLAGS (VANISHED)", "BAD", "PARSE"),
    (b"a STORE 1 FLAGS \\Recent", "BAD", "PARSE"),
    (b"a STORE 1 LABELS (x)", "BAD", "PARSE"),
    (b"a COPY 1", "BAD", "PARSE"),
    (b'a ID ("a")', "BAD", "PARSE"),
    (b"a COMPRESS GZIP", "BAD", "PARSE"),
]


@pytest.mark.parametrize(
    ("line", "status", "code"), INVALID, ids=[v[0].decode("latin-1") for v in INVALID]
)
def test_invalid(line: bytes, status: str, code: str | None) -> None:
    with pytest.raises(ParseError) as info:
        parse(line)
    assert info.value.status == status
    assert info.value.code == code


def test_search_key_limit_and_depth() -> None:
    many = b"a SEARCH " + b" ".join([b"SEEN"] * 1001)
    with pytest.raises(ParseError) as info:
        parse(many)
    assert info.value.code == "LIMIT"
    deep = b"a SEARCH " + b"(" * 40 + b"ALL" + b")" * 40
    with pytest.raises(ParseError) as info:
        parse(deep)
    assert info.value.code == "LIMIT"
    ok = b"a SEARCH " + b"(" * 10 + b"ALL" + b")" * 10
    assert parse(ok) == Search(False, All())


def test_command_name() -> None:
    assert command_name(b"a1 uid fetch 1 FLAGS") == ("a1", "UID FETCH")
    assert command_name(b"a1 NOOP") == ("a1", "NOOP")
    assert command_name(b"a1") == ("a1", "")  # valid tag, no command
    assert command_name(b"+a NOOP") is None
    assert command_name(b"* NOOP") is None


def test_dates_and_sequence_in_search() -> None:
    cmd = parse(b'a SEARCH SENTBEFORE "1-Feb-2024" 2:* UID 5')
    assert isinstance(cmd, Search)
    assert "date=datetime.date(2024, 2, 1)" in repr(cmd.criteria)
    assert f"(2, {STAR})" in repr(cmd.criteria)
    assert dt.date(2024, 2, 1)


def test_repeated_fetch_item_lists_parse_the_same_each_time() -> None:
    """The remembered FETCH tails give the same commands as a fresh parse."""
    from correo.imap import commands as cmds
    from correo.imap import fetchparse

    fetchparse._FETCH_TAILS.clear()
    first = cmds.parse_command([b"a UID FETCH 7 (BODY.PEEK[] FLAGS)"], [])
    again = cmds.parse_command([b"b UID FETCH 9:12,20 (BODY.PEEK[] FLAGS)"], [])
    assert isinstance(first, cmds.Fetch) and isinstance(again, cmds.Fetch)
    assert first.items == again.items
    assert again.sequence.resolve(100) == [(9, 12), (20, 20)]
    plain = cmds.parse_command([b"c FETCH 9 (BODY.PEEK[] FLAGS)"], [])
    assert isinstance(plain, cmds.Fetch) and not plain.uid  # UID FETCH's tail is its own
    assert all(i.name != "UID" for i in plain.items)
    for _ in range(2):  # a bad tail is never remembered: refused every time
        with pytest.raises(cmds.ParseError):
            cmds.parse_command([b"d FETCH 1 (BODY.PEEK[] BOGUS)"], [])
