"""The reader's own helpers: times and ranges as a user gives them, and book lists.

Everything the writer and the reader must agree on (object names, stamps, the slot grid) is in
`bitso_format`; this module only turns what a user types into epoch milliseconds and ranges.
Standard library only, so the deployable ``compact_hour`` function can import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bitso_format import BOOK_PATTERN, HOUR_MS, MINUTE_MS, datetime_to_ms, floor_hour, floor_minute

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
        return datetime_to_ms(datetime.fromisoformat(raw))
    except (ValueError, OverflowError):
        raise TimeError(f"{text!r} is not an ISO 8601 time") from None


def to_ms(value: int | str | datetime) -> int:
    """Epoch milliseconds from an int (taken as ms), an ISO string or a datetime."""
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return datetime_to_ms(value)
    return parse_time(value)


def hours_in_range(start_ms: int, end_ms: int) -> list[int]:
    """Start of every hour that overlaps ``[start_ms, end_ms)``."""
    return list(range(floor_hour(start_ms), end_ms, HOUR_MS))


def minutes_in_range(start_ms: int, end_ms: int) -> list[int]:
    """Start of every minute that overlaps ``[start_ms, end_ms)``."""
    return list(range(floor_minute(start_ms), end_ms, MINUTE_MS))


def with_slash(prefix: str) -> str:
    """A listing prefix: ``prefix/``, or empty for the root."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


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
        if not BOOK_PATTERN.fullmatch(book):
            raise ValueError(f"{book!r} is not a book name (like btc_mxn: [a-z0-9]+_[a-z0-9]+)")
    return books
