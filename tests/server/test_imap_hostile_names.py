"""Hostile mailbox names and LIST patterns over real sockets.

Wildcards are matched in linear time, LIST over thousands of folders never holds the
event loop (the server's watchdog logs ``event=loop.blocked`` past 100 ms, and the
fixtures fail on it), the number of mailboxes per account is bounded, and hierarchy
operations (RENAME, DELETE) see exactly, case-sensitively, the names below a name.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from correo.store.sqlite import SqliteStore
from tests.conftest import Server, make_data_dir
from tests.server.imap_helpers import RawImap, message

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"

# An adversarial pattern and names that almost match it: as a backtracking regular
# expression, one such name took seconds; the matcher must take one pass per name.
PATTERN = "*a" * 400 + "*b"
ADVERSARIAL = [f"adv/{'a' * 470}{i:04d}" for i in range(1500)]
MATCHING = "adv/" + "a" * 470 + "b"
TREE = [f"tree/t{i // 50:03d}/b{i:04d}" for i in range(4000)]


async def _populate(store_dir: Path, boxes: dict[str, list[tuple[str, bool]]]) -> None:
    """Create mailboxes straight in the store, many per group commit."""
    store = SqliteStore(store_dir)
    await store.open()
    for account, names in boxes.items():
        await store.create_account(account)
        for start in range(0, len(names), 500):
            await asyncio.gather(
                *(
                    store.create_mailbox(account, name, subscribe=subscribe)
                    for name, subscribe in names[start : start + 500]
                )
            )
    await store.close()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Alice holds thousands of folders; Carol holds names that differ only in case."""
    data = tmp_path_factory.mktemp("names") / "data"
    make_data_dir(data)
    carol = ["proj/a", "PROJ/secret", "pro_j/x", "pro%/y", "prXj/z", "lone", "LONE/child"]
    asyncio.run(
        _populate(
            data / "store",
            {
                ALICE: [(n, False) for n in [*ADVERSARIAL, MATCHING]] + [(n, True) for n in TREE],
                CAROL: [(n, False) for n in carol],
            },
        )
    )
    srv = Server(data)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


def client(srv: Server, user: str = ALICE) -> RawImap:
    imap = RawImap(srv.ports["imaps"], timeout=30)
    imap.login(user)
    return imap


def listed(lines: list[bytes]) -> dict[str, bytes]:
    """LIST/LSUB lines by mailbox name (quoted or atom), with their attributes."""
    out = {}
    for line in lines:
        m = re.match(rb'\* (?:LIST|LSUB) \(([^)]*)\) "/" (?:"((?:[^"\\]|\\.)*)"|(\S+))', line)
        if m:
            name = (m.group(2) if m.group(2) is not None else m.group(3)).decode()
            out[name] = m.group(1)
    return out


def test_adversarial_pattern_lists_promptly_and_others_are_served(big: Server) -> None:
    a, b = client(big), client(big)
    b.sock.settimeout(10)  # the NOOP must not wait for the LIST
    a.send(f'A LIST "" "{PATTERN}"\r\n'.encode())
    assert b.cmd("B", "NOOP")[-1].startswith(b"B OK")
    out = a.until(b"A")
    assert out[-1].startswith(b"A OK"), out[-1]
    assert set(listed(out)) == {MATCHING}
    # LSUB and several patterns at once (RFC 5258) go through the same matcher
    out = a.cmd("C", f'LIST "" ("{PATTERN}" "%x*y%" "tree/t000/%")')
    names = set(listed(out))
    assert names == {MATCHING, *TREE[:50]}
    out = a.cmd("D", f'LSUB "" "{"*t" * 300}*b"')
    assert out[-1].startswith(b"D OK") and not listed(out)
    assert b.cmd("E", "NOOP")[-1].startswith(b"E OK")
    a.close()
    b.close()
    big.assert_loop_never_blocked()


def test_over_long_patterns_get_no_limit_and_the_session_goes_on(big: Server) -> None:
    a = client(big)
    out = a.cmd("A", f'LIST "" "{"x" * 1001}"')
    assert out[-1].startswith(b"A NO [LIMIT]"), out
    out = a.cmd("B", f'LIST "{"r" * 600}" "{"x" * 500}"')  # joined to the reference
    assert out[-1].startswith(b"B NO [LIMIT]"), out
    patterns = " ".join(f'"{c * 900}"' for c in "vwxyz")
    out = a.cmd("C", f'LIST "" ({patterns})')
    assert out[-1].startswith(b"C NO [LIMIT]"), out
    out = a.cmd("D", f'LSUB "" "{"x" * 1001}"')
    assert out[-1].startswith(b"D NO [LIMIT]"), out
    assert a.cmd("E", "NOOP")[-1].startswith(b"E OK")
    a.close()


def test_list_over_thousands_of_folders_keeps_the_loop_free(big: Server) -> None:
    a, b = client(big), client(big)
    b.sock.settimeout(10)
    a.send(b'A LIST "" "*"\r\n')
    assert b.cmd("B", "NOOP")[-1].startswith(b"B OK")
    boxes = listed(a.until(b"A"))
    assert len(boxes) >= len(TREE) + len(ADVERSARIAL) + 80
    assert b"\\HasChildren" in boxes["tree"] and b"\\HasChildren" in boxes["tree/t079"]
    assert b"\\HasNoChildren" in boxes["tree/t079/b3999"]
    assert b"\\HasChildren" in boxes["adv"] and b"\\HasNoChildren" in boxes[MATCHING]
    # LIST-STATUS (RFC 5819), LIST (SUBSCRIBED RECURSIVEMATCH) and LSUB over all of them
    out = a.cmd("C", 'LIST "" "tree/*" RETURN (CHILDREN STATUS (MESSAGES UNSEEN))')
    assert out[-1].startswith(b"C OK")
    assert sum(line.startswith(b"* STATUS ") for line in out) == len(TREE) + 80
    out = a.cmd("D", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "tree/%"')
    subs = listed(out)
    assert len(subs) == 80 and all(b"\\Subscribed" not in f for f in subs.values())
    assert len(listed(a.cmd("E", 'LSUB "" "tree/*"'))) == len(TREE)
    lsub = listed(a.cmd("F", 'LSUB "" "tree/%"'))
    assert len(lsub) == 80 and all(f == b"\\Noselect" for f in lsub.values())
    a.close()
    b.close()
    big.assert_loop_never_blocked()


def test_rename_moves_exactly_the_names_below_it(big: Server) -> None:
    c = client(big, CAROL)
    assert c.cmd("A", "RENAME proj done")[-1].startswith(b"A OK")
    boxes = listed(c.cmd("B", 'LIST "" "*"'))
    assert {"done", "done/a", "PROJ", "PROJ/secret"} <= set(boxes)
    assert "proj" not in boxes and "done/secret" not in boxes
    # LIKE's wildcards in a name are plain characters, not patterns
    assert c.cmd("C", "RENAME pro_j under")[-1].startswith(b"C OK")
    assert c.cmd("D", 'RENAME "pro%" pct')[-1].startswith(b"D OK")
    boxes = listed(c.cmd("E", 'LIST "" "*"'))
    assert {"under/x", "pct/y", "prXj", "prXj/z", "PROJ/secret"} <= set(boxes)
    # DELETE sees no children where only a name differing in case has some
    assert c.cmd("F", "DELETE lone")[-1].startswith(b"F OK")
    out = c.cmd("G", "DELETE LONE")
    assert out[-1].startswith(b"G NO [HASCHILDREN]"), out
    c.close()


def test_rename_keeps_names_valid(big: Server) -> None:
    c = client(big, BOB)
    assert c.cmd("A", "CREATE deep/child")[-1].startswith(b"A OK")
    out = c.cmd("B", "RENAME deep deep/inner")
    assert out[-1].startswith(b"B NO [CANNOT]"), out
    long = "/".join(["l"] * 32)  # 32 levels: valid alone, too deep with a child below
    out = c.cmd("C", f"RENAME deep {long}")
    assert out[-1].startswith(b"C NO [CANNOT]"), out
    out = c.cmd("D", f"RENAME deep {'n' * 510}")  # valid alone, too long with /child
    assert out[-1].startswith(b"D NO [CANNOT]"), out
    # RFC 9051 §6.3.6: the superior names a RENAME needs are created
    assert c.cmd("E", "RENAME deep upper/middle/deep")[-1].startswith(b"E OK")
    boxes = listed(c.cmd("F", 'LIST "" "upper*"'))
    assert set(boxes) == {"upper", "upper/middle", "upper/middle/deep", "upper/middle/deep/child"}
    assert b"\\HasChildren" in boxes["upper/middle"]
    c.close()


def test_seen_and_deleted_counts_see_whole_flags(big: Server) -> None:
    c = client(big, BOB)
    data = message("flags")
    out = c.cmd("A", b"APPEND INBOX (\\SeenBy \\DeletedLater) {%d+}\r\n" % len(data) + data)
    assert out[-1].startswith(b"A OK"), out
    out = c.cmd("B", "STATUS INBOX (MESSAGES UNSEEN DELETED)")
    status = re.search(rb"MESSAGES (\d+) UNSEEN (\d+) DELETED (\d+)", b"\n".join(out))
    assert status is not None
    messages, unseen, deleted = (int(g) for g in status.groups())
    assert messages >= 1 and unseen == messages and deleted == 0
    c.close()


def test_mailboxes_per_account_is_bounded(start_server: Callable[..., Server]) -> None:
    srv = start_server({"mailboxes_per_account": "10"})
    c = client(srv)  # login made INBOX and five special-use folders: 6
    assert c.cmd("A", "CREATE one")[-1].startswith(b"A OK")
    assert c.cmd("B", "CREATE two/three")[-1].startswith(b"B OK")  # 9
    out = c.cmd("C", "CREATE four/five")  # would be 11: nothing is created
    assert out[-1].startswith(b"C NO [LIMIT]"), out
    assert c.cmd("D", "CREATE four")[-1].startswith(b"D OK")  # 10
    out = c.cmd("E", "CREATE five")
    assert out[-1].startswith(b"E NO [LIMIT]"), out
    out = c.cmd("F", "RENAME one six/seven")  # would create "six" too
    assert out[-1].startswith(b"F NO [LIMIT]"), out
    assert c.cmd("G", "RENAME one uno")[-1].startswith(b"G OK")  # no new mailbox
    boxes = set(listed(c.cmd("H", 'LIST "" "*"')))
    assert len(boxes) == 10 and "four" in boxes and not {"five", "six", "one"} & boxes
    assert c.cmd("I", "DELETE four")[-1].startswith(b"I OK")
    assert c.cmd("J", "CREATE five")[-1].startswith(b"J OK")
    # subscriptions are names without a mailbox: they are bounded by the same number
    for i in range(10):
        out = c.cmd("K", f"SUBSCRIBE s{i}")
    assert out[-1].startswith(b"K NO [LIMIT]"), out
    assert c.cmd("L", "SUBSCRIBE Sent")[-1].startswith(b"L OK")  # already subscribed
    assert c.cmd("M", "UNSUBSCRIBE s0")[-1].startswith(b"M OK")
    assert c.cmd("N", "SUBSCRIBE s9")[-1].startswith(b"N OK")
    c.close()
