"""The slot grid and pacing: pure functions, no servers."""

from __future__ import annotations

import itertools

import pytest

from bitso_collector.grid import minute_of, slot_spacing, slots_ahead
from bitso_collector.rate_guard import Pacer
from bitso_format import grid_minute

MINUTE = 29_400_000  # 2025-11-24T00:00Z in minutes since the epoch
BOOKS = ("btc_mxn", "eth_mxn", "xrp_mxn")


def test_slots_are_uniform_and_inside_their_minute() -> None:
    slots = grid_minute(MINUTE, 59, BOOKS)
    assert len(slots) == 59
    start_ms = MINUTE * 60_000
    assert slots[0].at_ms == start_ms
    gaps = {b.at_ms - a.at_ms for a, b in itertools.pairwise(slots)}
    assert gaps <= {1016, 1017}  # 60000 / 59 = 1016.95 ms, integer milliseconds
    assert slots[-1].at_ms < start_ms + 60_000
    assert slot_spacing(59) == pytest.approx(1.01695, abs=1e-5)


def test_the_grid_stays_uniform_across_minute_boundaries() -> None:
    two = grid_minute(MINUTE, 59, BOOKS) + grid_minute(MINUTE + 1, 59, BOOKS)
    gaps = {b.at_ms - a.at_ms for a, b in itertools.pairwise(two)}
    assert gaps <= {1016, 1017}
    # Slot j of one minute and slot j of the next are exactly one minute apart.
    assert all(two[j + 59].at_ms - two[j].at_ms == 60_000 for j in range(59))


def test_books_rotate_evenly_across_minute_boundaries() -> None:
    slots = [s for m in range(MINUTE, MINUTE + 3) for s in grid_minute(m, 59, BOOKS)]
    assert [s.number for s in slots] == list(range(MINUTE * 59, MINUTE * 59 + 177))
    assert all(s.book == BOOKS[s.number % 3] for s in slots)
    # 59 is not a multiple of 3: the minute's first book moves on, none is favoured.
    firsts = [grid_minute(m, 59, BOOKS)[0].book for m in range(MINUTE, MINUTE + 3)]
    assert sorted(firsts) == sorted(BOOKS)
    counts = {book: sum(s.book == book for s in slots) for book in BOOKS}
    assert counts == {"btc_mxn": 59, "eth_mxn": 59, "xrp_mxn": 59}


def test_minute_of_handles_exact_boundaries() -> None:
    assert minute_of(MINUTE * 60.0) == MINUTE
    assert minute_of(MINUTE * 60.0 - 0.001) == MINUTE - 1
    assert minute_of(MINUTE * 60.0 + 59.999) == MINUTE


def test_a_late_call_plans_only_the_slots_still_ahead() -> None:
    start = MINUTE * 60.0
    coverage = slots_ahead(MINUTE, start + 20.3, 59, BOOKS, max_late=0.5)
    assert all(s.at + 0.5 >= start + 20.3 for s in coverage.planned)
    assert all(s.at + 0.5 < start + 20.3 for s in coverage.missed_late)
    assert len(coverage.planned) + len(coverage.missed_late) == 59
    assert len(coverage.missed_late) == 20  # slots 0..19 (slot 20 is at 20.339 s)
    assert coverage.planned[0].at_ms == start * 1000 + 20 * 60_000 // 59


def test_a_window_limits_the_plan() -> None:
    start = MINUTE * 60.0
    coverage = slots_ahead(MINUTE, start, 59, BOOKS, max_late=0.5, until=start + 5)
    assert [s.at_ms - start * 1000 for s in coverage.planned] == [0, 1016, 2033, 3050, 4067]
    assert len(coverage.outside_window) == 54


def test_a_call_after_its_minute_plans_nothing() -> None:
    coverage = slots_ahead(MINUTE, MINUTE * 60.0 + 61, 59, BOOKS, max_late=0.5)
    assert coverage.planned == [] and len(coverage.missed_late) == 59


def test_on_time_starts_never_exceed_the_budget_in_any_window() -> None:
    rpm = 59
    starts = [s.at for m in range(MINUTE, MINUTE + 3) for s in grid_minute(m, rpm, BOOKS)]
    for first in range(len(starts)):
        in_window = [t for t in starts[first:] if t < starts[first] + 60]
        assert len(in_window) <= rpm


def test_the_pacer_holds_back_a_start_that_would_overfill_the_window() -> None:
    on_time, one_late = Pacer(limit=3, window_seconds=60), Pacer(limit=3, window_seconds=60)
    for t in (0.0, 20.0, 40.0):
        on_time.record(t)
    for t in (0.3, 20.0, 40.0):
        one_late.record(t)
    assert on_time.start_time(60.0, 59.9, max_late=0.5) == 60.0
    # The window of the late start closes at 60.3: the next start waits until then ...
    assert one_late.start_time(60.0, 60.0, max_late=0.5) == pytest.approx(60.3)
    # ... or is skipped when that is later than the slot may start.
    assert one_late.start_time(60.0, 60.0, max_late=0.2) is None


def test_the_pacer_never_starts_before_the_slot_or_too_late() -> None:
    pacer = Pacer(limit=59)
    assert pacer.start_time(100.0, 99.0, max_late=0.5) == 100.0
    assert pacer.start_time(100.0, 100.4, max_late=0.5) == 100.4
    assert pacer.start_time(100.0, 100.6, max_late=0.5) is None


def test_paced_starts_hold_the_window_even_when_some_start_late() -> None:
    """Simulate starts that run late by up to max_late: the window still holds at most R."""
    rpm, max_late = 59, slot_spacing(59) / 2
    pacer = Pacer(rpm)
    starts: list[float] = []
    delays = itertools.cycle([0.0, 0.4, 0.0, 0.1, 0.5, 0.0, 0.3])
    for slot in [s for m in range(MINUTE, MINUTE + 4) for s in grid_minute(m, rpm, BOOKS)]:
        when = pacer.start_time(slot.at, slot.at + next(delays), max_late)
        if when is not None:
            pacer.record(when)
            starts.append(when)
    assert len(starts) > 3 * rpm
    for i, first in enumerate(starts):
        assert sum(1 for t in starts[i:] if t < first + 60) <= rpm
