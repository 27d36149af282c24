"""Email/query kept between requests and brought up to date after each change (the
mailbox's rows catch up from its changes, the query's order takes the new Emails in by
bisection) answers what a fresh sort does: over real TLS, with messages appended over
IMAP out of date order, flags changed and messages expunged in between."""

from __future__ import annotations

import random

from tests.conftest import Server
from tests.server.imap_helpers import imap, message
from tests.server.jmap_helpers import Jmap


def _date(day: int) -> str:
    return f'"{day:02d}-Mar-2024 10:00:00 +0000"'


def test_kept_query_orders_follow_every_change(server: Server) -> None:
    jmap = Jmap(server)
    client = imap(server)
    days = list(range(1, 29))
    random.Random(7).shuffle(days)
    subjects: dict[str, int] = {}  # subject -> day of March
    newest = [{"property": "receivedAt", "isAscending": False}]
    by_size = [{"property": "size", "isAscending": True}, {"property": "id"}]

    def expect_orders() -> None:
        got = jmap.call("Email/query", sort=newest, calculateTotal=True)
        ids = got["ids"]
        assert got["total"] == len(subjects)
        listed = jmap.call("Email/get", ids=ids, properties=["subject", "receivedAt", "size"])
        by_id = {e["id"]: e for e in listed["list"]}
        days_seen = [subjects[by_id[i]["subject"]] for i in ids]
        assert days_seen == sorted(days_seen, reverse=True), days_seen
        sized = jmap.call("Email/query", sort=by_size)["ids"]
        assert sorted(sized) == sorted(ids)
        keys = [(by_id[i]["size"], i) for i in sized]
        assert keys == sorted(keys), keys

    for n, day in enumerate(days[:10]):  # the first query lists; later ones catch up
        subject = f"day {day} " + "x" * (1 + n * 37 % 200)
        client.append("INBOX", "", _date(day), message(subject))
        subjects[subject] = day
        expect_orders()
    client.select("INBOX")
    client.store("1:3", "+FLAGS", "(\\Seen)")  # changed flags: the same places
    expect_orders()
    client.store("4", "+FLAGS", "(\\Deleted)")
    _, found = client.fetch("4", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    gone = found[0][1].decode().split(":", 1)[1].strip()  # type: ignore[index,union-attr]
    client.expunge()
    del subjects[gone]
    expect_orders()
    for day in days[10:14]:
        subject = f"day {day}"
        client.append("INBOX", "", _date(day), message(subject))
        subjects[subject] = day
    expect_orders()
    client.logout()
