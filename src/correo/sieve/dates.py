"""The date and index extensions (RFC 5260): date parsing and date-parts."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["DATE_PARTS", "date_part", "parse_date_header", "parse_zone", "zone_string"]

# RFC 5260 §4.2
DATE_PARTS = frozenset(
    {
        "year",
        "month",
        "day",
        "date",
        "julian",
        "hour",
        "minute",
        "second",
        "time",
        "iso8601",
        "std11",
        "zone",
        "weekday",
    }
)
_ZONE = re.compile(r"([+-])([0-9]{2})([0-9]{2})\Z")
_MJD_EPOCH = date(1858, 11, 17)  # RFC 5260 §4.2: julian is the Modified Julian Day


def parse_zone(value: str) -> timezone | None:
    """``+hhmm``/``-hhmm`` (RFC 5260 §4.1 :zone); None if malformed."""
    m = _ZONE.match(value.strip())
    if m is None:
        return None
    hours, minutes = int(m.group(2)), int(m.group(3))
    if hours > 23 or minutes > 59:  # timezone() rejects offsets of a day or more
        return None
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if m.group(1) == "-" else offset)


def parse_date_header(value: str) -> datetime | None:
    """An RFC 5322 date-time, or None when unparseable (the test then fails)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except Exception:
        return None
    if parsed.tzinfo is None:  # "-0000": RFC 5322 §3.3 says UTC, zone unknown
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def zone_string(dt: datetime) -> str:
    """The numeric zone of ``dt`` as ``+hhmm``."""
    offset = dt.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def date_part(dt: datetime, part: str) -> str:
    """Render one RFC 5260 §4.2 date-part of ``dt`` (already in its zone)."""
    if part == "year":
        return f"{dt.year:04d}"
    if part == "month":
        return f"{dt.month:02d}"
    if part == "day":
        return f"{dt.day:02d}"
    if part == "date":
        return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
    if part == "julian":
        return str((dt.date() - _MJD_EPOCH).days)
    if part == "hour":
        return f"{dt.hour:02d}"
    if part == "minute":
        return f"{dt.minute:02d}"
    if part == "second":
        return f"{dt.second:02d}"
    if part == "time":
        return f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if part == "iso8601":
        zone = zone_string(dt)
        stamp = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}"
        return f"{stamp}:{dt.second:02d}{zone[:3]}:{zone[3:]}"
    if part == "std11":
        return email.utils.format_datetime(dt)
    if part == "zone":
        return zone_string(dt)
    if part == "weekday":
        return str((dt.weekday() + 1) % 7)  # RFC 5260 §4.2: 0 is Sunday
    raise ValueError(f"unknown date-part {part!r}")
