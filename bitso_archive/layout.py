"""Pure helpers for the archive layout: times, object names and the slot grid.

Everything here is standard library only and does no I/O, so the deployable
``compact_hour`` function can import it without pulling in anything heavy.
All times are handled as integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DEFAULT_RPM = 59
MAX_RPM = 60

BOOK_RE = re.compile(r"^[a-z0-9]+_[a-z0-9]+$")
SNAPSHOT_NAME_RE = re.compile(
    r"^(?P<book>[a-z0-9]+_[a-z0-9]+)_(?P<ts>[0-9]{8}T[0-9]{6}\.[0-9]{3})Z\.json(?P<gz>\.gz)?$"
)
RUN_NAME_RE = re.compile(r"^(?P<ts>[0-9]{8}T[0-9]{4})Z\.json$")
UTC_MILLIS_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
RUNS_DIR = "_runs"
DEFAULT_COMPACTED_PREFIX = "compacted"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


TimeLike = int | str | datetime


class TimeError(ValueError):
    """A time given by the user could not be understood."""


def parse_time(text: str) -> int:
    """Parse an ISO 8601 time (UTC unless it carries an offset) into epoch milliseconds.

    Accepts ``2026-11-24``, ``2026-11-24T14``, ``2026-11-24T14:00``,
    ``2026-11-24T14:00:00Z``, ``2026-11-24T14:00:00.123+00:00`` and the like.
    """
    raw = text.strip()
    if not raw or not raw[0].isdigit():
        raise TimeError(f"{text!r} is not an ISO 8601 time")
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise TimeError(f"{text!r} is not an ISO 8601 time") from None
    return datetime_to_ms(dt)


def datetime_to_ms(dt: datetime) -> int:
    """Epoch milliseconds of ``dt`` (a naive datetime is taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_ms(value: int | str | datetime) -> int:
    """Epoch milliseconds from an int (taken as ms), an ISO string or a datetime."""
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    return parse_time(value)


def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def iso_ms(ms: int) -> str:
    """``2026-11-24T10:15:07.118Z``: the format snapshots use."""
    dt = ms_to_datetime(ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def iso_minute(ms: int) -> str:
    """``2026-11-24T10:15:00Z``: the format run records use for their minute."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_hour(ms: int) -> str:
    """``2026-11-24T10``: the hour format the compact function takes."""
    return ms_to_datetime(ms).strftime("%Y-%m-%dT%H")


_COMPACT_TS_RE = re.compile(
    r"^([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})(?:([0-9]{2})\.([0-9]{3}))?$"
)


def parse_compact_ts(text: str) -> int:
    """Epoch ms of ``YYYYMMDDTHHMMSS.mmm`` or ``YYYYMMDDTHHMM`` (as used in object names)."""
    m = _COMPACT_TS_RE.match(text)
    if m is None:
        raise ValueError(f"bad timestamp in object name: {text!r}")
    year, month, day, hour, minute, sec, milli = m.groups()
    dt = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(sec or 0), tzinfo=UTC
    )
    return datetime_to_ms(dt) + int(milli or 0)


def parse_utc_millis(text: str) -> int:
    """Epoch ms of ``2026-11-24T10:15:07.118Z`` (the exact snapshot format)."""
    dt = datetime(
        int(text[0:4]),
        int(text[5:7]),
        int(text[8:10]),
        int(text[11:13]),
        int(text[14:16]),
        int(text[17:19]),
        tzinfo=UTC,
    )
    return datetime_to_ms(dt) + int(text[20:23])


def floor_hour(ms: int) -> int:
    return ms - ms % HOUR_MS


def floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def hours_in_range(start_ms: int, end_ms: int) -> list[int]:
    """Start of every hour that overlaps ``[start_ms, end_ms)``."""
    return list(range(floor_hour(start_ms), end_ms, HOUR_MS))


def minutes_in_range(start_ms: int, end_ms: int) -> list[int]:
    """Start of every minute that overlaps ``[start_ms, end_ms)``."""
    return list(range(floor_minute(start_ms), end_ms, MINUTE_MS))


def with_slash(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def hour_dir(hour_ms: int) -> str:
    """``YYYY/MM/DD/HH/``: the prefix of one hour of snapshots."""
    return ms_to_datetime(hour_ms).strftime("%Y/%m/%d/%H/")


def runs_hour_dir(hour_ms: int) -> str:
    return f"{RUNS_DIR}/{hour_dir(hour_ms)}"


def compacted_name(
    book: str, hour_ms: int, compacted_prefix: str = DEFAULT_COMPACTED_PREFIX
) -> str:
    """Hive-partitioned name of the Parquet file of one book-hour."""
    dt = ms_to_datetime(hour_ms)
    return (
        f"{with_slash(compacted_prefix)}book={book}/year={dt:%Y}/month={dt:%m}/day={dt:%d}/"
        f"hour={dt:%H}/{book}_{dt:%Y%m%dT%H}.parquet"
    )


@dataclass(frozen=True, slots=True)
class SnapshotName:
    """What an object name says about the snapshot it holds."""

    name: str
    book: str
    slot_ms: int


def parse_snapshot_name(name: str) -> SnapshotName | None:
    """Parse ``.../<book>_<YYYYMMDD>T<HHMMSS>.<mmm>Z.json[.gz]``; None if it is not one."""
    base = name.rsplit("/", 1)[-1]
    m = SNAPSHOT_NAME_RE.match(base)
    if m is None:
        return None
    try:
        slot_ms = parse_compact_ts(m.group("ts"))
    except ValueError:
        return None
    return SnapshotName(name, m.group("book"), slot_ms)


def parse_run_name(name: str) -> int | None:
    """Minute (epoch ms) of a run record name ``.../<YYYYMMDD>T<HHMM>Z.json``; None otherwise."""
    m = RUN_NAME_RE.match(name.rsplit("/", 1)[-1])
    if m is None:
        return None
    try:
        return parse_compact_ts(m.group("ts"))
    except ValueError:
        return None


def grid_slots(minute_ms: int, rpm: int, books: list[str], book: str) -> Iterator[int]:
    """Slot times (epoch ms) of ``book`` in the minute starting at ``minute_ms``.

    Slot j of minute m is at ``minute_start + j * 60000 // R``; global slot
    ``g = m * R + j`` goes to ``books[g % len(books)]``.
    """
    if book not in books or rpm <= 0:
        return
    minute = minute_ms // MINUTE_MS
    n = len(books)
    for j in range(rpm):
        if books[(minute * rpm + j) % n] == book:
            yield minute_ms + j * MINUTE_MS // rpm


def check_range(start: TimeLike, end: TimeLike) -> tuple[int, int]:
    """Epoch-ms bounds; raises ValueError unless ``start < end``."""
    start_ms, end_ms = to_ms(start), to_ms(end)
    if end_ms <= start_ms:
        raise ValueError("the end must be after the start (the end is excluded)")
    return start_ms, end_ms


def check_books(books: Iterable[str] | None) -> list[str] | None:
    if books is None:
        return None
    books = list(books)
    for book in books:
        if not BOOK_RE.match(book):
            raise ValueError(f"{book!r} is not a book name (like btc_mxn: [a-z0-9]+_[a-z0-9]+)")
    return books
