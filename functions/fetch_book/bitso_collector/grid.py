"""Which of a minute's slots one call can still serve.

The grid itself (slot times, which book a slot belongs to) is part of the archive format and
lives in `bitso_format`; this module adds what only the collector needs: arrival and lateness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bitso_format import MINUTE_MS, GridSlot, grid_minute, seconds_to_ms

#: A slot of the grid, as the collector schedules it.
Slot = GridSlot


def minute_of(epoch_seconds: float, period_ms: int = MINUTE_MS) -> int:
    """Index of the minute (of `period_ms`) that holds the given instant."""
    return seconds_to_ms(epoch_seconds) // period_ms


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
    for slot in grid_minute(minute, requests_per_minute, tuple(books), period_ms):
        if slot.at + max_late < now:
            missed.append(slot)
        elif until is not None and slot.at >= until:
            outside.append(slot)
        else:
            planned.append(slot)
    return Coverage(planned, missed, outside)
