"""Planning one call (pure): which slots of its minute it requests, by when it stops fetching,
stores and answers, and whether it can serve its minute at all."""

from __future__ import annotations

from dataclasses import dataclass

from bitso_format import MINUTE_MS, iso_minute, seconds_to_ms
from bitso_http import SCHEDULE_HEADER

from .call_options import CallOptions
from .config import Settings
from .grid import Coverage, minute_of, slot_spacing, slots_ahead
from .outcomes import CallStatus

EARLY_TOLERANCE_S = 10.0
#: Fetching stops this long before the minute ends (requests time out `TIMEOUT_HEADROOM_S`
#: earlier). 0.3 s lets the reply of the minute's second-to-last slot (at 57.97 s) take 1.63 s and
#: still be stored, which a slow Bitso (replies of 1.2 +- 0.15 s) needs; the last replies then
#: have 0.25 s to be written before `FINISH_MARGIN_S` (a GCS attempt needs `MIN_ATTEMPT_S`).
FETCH_MARGIN_S = 0.3
#: Snapshot writes are finished (or given up on as lost) this long before the minute ends.
FINISH_MARGIN_S = 0.15
#: The run record is stored and the call answers this long before the minute ends, so calls
#: never overlap.
ANSWER_MARGIN_S = 0.02
#: With `STREAMS`, the call cuts the stream this long before the minute ends (after the last slot
#: has started: at 60 a minute it starts 1 s before the end), so the cut's objects are stored
#: while the last replies come in, with ~0.85 s for the uploads instead of the 0.15 s after
#: fetching. What arrives after the cut is the next call's (or the shutdown's).
STREAMS_MARGIN_S = 1.0
#: With `duration_seconds`, how long after the window replies and writes may still take.
REPLY_GRACE_S = 3.0


@dataclass(frozen=True)
class Refusal:
    """Why a call can serve none of its minute: it claims nothing and requests nothing."""

    status: CallStatus
    reason: str


@dataclass(frozen=True)
class CallPlan:
    minute: int
    minute_start: float
    books: tuple[str, ...]
    coverage: Coverage
    max_late: float
    deadline: float
    finish_by: float
    answer_by: float
    refused: Refusal | None = None
    #: When the call cuts the instance's stream and starts storing the cut.
    streams_until: float = 0.0


def plan_call(
    settings: Settings,
    options: CallOptions,
    now: float,
    period_ms: int = MINUTE_MS,
    requests_per_minute: int | None = None,
) -> CallPlan:
    """Which slots this call requests and by when it must stop fetching and answer, on the grid
    of `requests_per_minute` (the instance's pace; REQUESTS_PER_MINUTE by default)."""
    period = period_ms / 1000
    anchor = options.schedule_time if options.schedule_time is not None else now
    minute = minute_of(anchor, period_ms)
    minute_start = minute * period
    rpm = requests_per_minute or settings.requests_per_minute
    books = options.books or settings.books
    max_late = slot_spacing(rpm, period_ms) / 2
    minute_end = minute_start + period
    scale = period / 60  # margins shrink with a compressed minute (benchmarks, tests)
    deadline = minute_end - FETCH_MARGIN_S * scale
    until = None
    if options.duration_seconds is not None:
        until = max(now, minute_start) + options.duration_seconds
        deadline = min(deadline, until + REPLY_GRACE_S)
    coverage = slots_ahead(minute, now, rpm, books, max_late, until, period_ms)
    finish_by = min(minute_end - FINISH_MARGIN_S * scale, deadline + REPLY_GRACE_S)
    answer_by = min(minute_end - ANSWER_MARGIN_S * scale, finish_by + REPLY_GRACE_S)
    return CallPlan(
        minute,
        minute_start,
        books,
        coverage,
        max_late,
        deadline,
        finish_by,
        answer_by,
        _refusal(minute_start, coverage, max_late, now),
        streams_until=min(deadline, minute_end - STREAMS_MARGIN_S * scale),
    )


def _refusal(
    minute_start: float, coverage: Coverage, max_late: float, now: float
) -> Refusal | None:
    """A minute too far ahead, or one whose every slot is past the latest it could start (a
    minute that is over, or all but over), cannot be served: say so rather than claim it."""
    minute = iso_minute(seconds_to_ms(minute_start))
    ahead = minute_start - now
    if ahead > EARLY_TOLERANCE_S:
        return Refusal(
            CallStatus.TOO_EARLY,
            f"{SCHEDULE_HEADER} names the minute {minute}, {ahead:.0f} s ahead of this "
            f"server's clock; at most {EARLY_TOLERANCE_S:.0f} s ahead is allowed",
        )
    if coverage.missed_late and not coverage.planned and not coverage.outside_window:
        past = now - (coverage.missed_late[-1].at + max_late)
        return Refusal(
            CallStatus.TOO_LATE,
            f"the minute {minute} is over for this call: its last slot could start no later "
            f"than {past:.1f} s before the call arrived",
        )
    return None
