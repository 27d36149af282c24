"""The one-line FETCH fast lane gives exactly what the full parser gives, or steps aside."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correo.imap.commands import Fetch, ParseOptions, parse_command, quick_fetch
from correo.imap.errors import ParseError
from correo.imap.server import CommandEvent, ImapConnection, Respond

ITEM_LISTS = [
    b"BODY.PEEK[]",
    b"(UID FLAGS)",
    b"(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject)])",
    b"(FLAGS) (CHANGEDSINCE 12)",
    b"ENVELOPE",
    b"(BODY[1.2]<0.100>)",
]
SETS = st.one_of(
    st.integers(0, 2**33).map(lambda n: str(n).encode()),
    st.sampled_from([b"1:*", b"*", b"1,3:5,9", b"0", b"1:0", b"01", b"$", b"4294967295"]),
    st.text("0123456789:*,", min_size=1, max_size=12).map(str.encode),
)


def _full(line: bytes) -> Fetch | None:
    try:
        command = parse_command([line], [], options=ParseOptions())
    except ParseError:
        return None
    assert isinstance(command, Fetch)
    return command


@settings(max_examples=400, deadline=None)
@given(
    tag=st.sampled_from([b"a", b"A001", b"x.y"]),
    uid=st.booleans(),
    name=st.sampled_from([b"FETCH", b"fetch", b"Fetch"]),
    seq=SETS,
    items=st.sampled_from(ITEM_LISTS),
)
def test_fast_lane_agrees_with_the_parser(
    tag: bytes, uid: bool, name: bytes, seq: bytes, items: bytes
) -> None:
    line = tag + (b" UID " if uid else b" ") + name + b" " + seq + b" " + items
    options = ParseOptions()
    full = _full(line)  # also teaches the parser this item list, as a first command would
    quick = quick_fetch(line, options)
    if quick is None:
        return  # stepping aside is always allowed: the full parser answers
    assert full is not None, line  # never accepts what the parser rejects
    assert quick == (tag.decode(), full)


def test_unknown_item_lists_and_literals_take_the_full_parser() -> None:
    options = ParseOptions()
    assert quick_fetch(b"a FETCH 1 (BODY.PEEK[TEXT]<7.13>)", options) is None  # not seen yet
    assert _full(b"a FETCH 1 (BODY.PEEK[TEXT]<7.13>)") is not None
    assert quick_fetch(b"b FETCH 2 (BODY.PEEK[TEXT]<7.13>)", options) is not None
    assert quick_fetch(b"c FETCH 1 {5}", options) is None
    assert quick_fetch(b"c FETCH 0 (BODY.PEEK[TEXT]<7.13>)", options) is None  # invalid set


def _events(conn: ImapConnection, line: bytes) -> object:
    conn.receive_data(line)
    return conn.next_event()


def test_fetch_outside_selected_state_is_still_refused() -> None:
    conn = ImapConnection(tls_active=True)
    assert isinstance(_events(conn, b"a FETCH 1 (UID FLAGS)\r\n"), Respond)  # not logged in
    conn.authenticated()
    _full(b"x FETCH 1 (UID FLAGS)")  # the item list is known to the fast lane
    event = _events(conn, b"b FETCH 1 (UID FLAGS)\r\n")
    assert isinstance(event, Respond) and event.data.startswith(b"b BAD")
    conn.selected(read_only=True)
    event = _events(conn, b"c FETCH 1 (UID FLAGS)\r\n")
    assert isinstance(event, CommandEvent) and event.tag == "c"
    event = _events(conn, b"d FETCH 0 (UID FLAGS)\r\n")  # the parser's BAD, not the lane's
    assert isinstance(event, Respond) and event.data.startswith(b"d BAD")
