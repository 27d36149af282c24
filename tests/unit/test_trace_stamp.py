"""The Received: field's date, formatted once per second, matches the standard form."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from correo.delivery import trace


def test_now_stamp_is_rfc5322_date_of_this_second() -> None:
    before = int(time.time())
    stamp = trace._now_stamp()
    after = int(time.time())
    when = parsedate_to_datetime(stamp)
    assert before <= when.timestamp() <= after
    assert stamp == format_datetime(datetime.fromtimestamp(when.timestamp(), UTC))


def test_received_field_carries_the_stamp() -> None:
    field = trace.received_field(
        helo="client.example",
        peer_ip="192.0.2.1",
        hostname="mx.example",
        protocol="ESMTP",
        queue_id="Q1",
    )
    date = field.decode().rsplit(";", 1)[1].strip()
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5
