"""The slot grid: how a minute's request budget is laid out in time and shared among books.

A minute holds R slots at `minute_start + j * 60000 // R` milliseconds (j = 0..R-1). Global slot
number `g = minute * R + j` goes to `books[g % len(books)]`, so books rotate evenly across minute
boundaries. Times are integer milliseconds so every part of the project computes the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Slot:
    number: int
    at_ms: int
    book: str

    @property
    def at(self) -> float:
        """Scheduled start, seconds since the epoch."""
        return self.at_ms / 1000


def minute_of(epoch_seconds: float, period_ms: int = MINUTE_MS) -> int:
    """Index of the minute (of `period_ms`) that holds the given instant."""
    return int(epoch_seconds * 1000 + 1e-6) // period_ms


def slot_offset_ms(j: int, requests_per_minute: int, period_ms: int = MINUTE_MS) -> int:
    return j * period_ms // requests_per_minute


def minute_slots(
    minute: int, requests_per_minute: int, books: Sequence[str], period_ms: int = MINUTE_MS
) -> list[Slot]:
    """Every slot of one minute, in time order, each with its book."""
    start_ms = minute * period_ms
    first = minute * requests_per_minute
    return [
        Slot(
            number=first + j,
            at_ms=start_ms + slot_offset_ms(j, requests_per_minute, period_ms),
            book=books[(first + j) % len(books)],
        )
        for j in range(requests_per_minute)
    ]


def slot_spacing(requests_per_minute: int, period_ms: int = MINUTE_MS) -> float:
    """Seconds between consecutive slots."""
    return period_ms / 1000 / requests_per_minute


@dataclass(frozen=True)
class Coverage:
    """Which of a minute's slots one call requests, and which it had to leave."""

    planned: list[Slot]
    missed_late: list[Slot]
    outside_window: list[Slot]


def slots_ahead(
    minute: int,
    now: float,
    requests_per_minute: int,
    books: Sequence[str],
    max_late: float,
    until: float | None = None,
    period_ms: int = MINUTE_MS,
) -> Coverage:
    """The slots of `minute` a call arriving at `now` can still start (at most `max_late` after
    their time), limited to those before `until` when a caller asks for a shorter window."""
    planned: list[Slot] = []
    missed: list[Slot] = []
    outside: list[Slot] = []
    for slot in minute_slots(minute, requests_per_minute, books, period_ms):
        if slot.at + max_late < now:
            missed.append(slot)
        elif until is not None and slot.at >= until:
            outside.append(slot)
        else:
            planned.append(slot)
    return Coverage(planned, missed, outside)
