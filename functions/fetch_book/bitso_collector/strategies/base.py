"""What every strategy shares: the job it is given and the decision of when a slot may start.

Strategies differ only in how a request is waited on; the pacing rules live here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..clock import Clock
from ..grid import Slot
from ..outcomes import Outcome
from ..rate_guard import Pacer
from ..recorder import CallRecorder, SlotStart

#: A request times out this long before the deadline, so a hung reply is counted as a timeout
#: and only a request that could not even be timed out is counted as abandoned.
TIMEOUT_HEADROOM_S = 0.1


@dataclass(frozen=True)
class FetchJob:
    slots: Sequence[Slot]
    clock: Clock
    pacer: Pacer
    max_late: float
    deadline: float
    aggregate: bool
    recorder: CallRecorder
    #: Seconds between consecutive slots (a request's reply timeout is counted in them).
    slot_spacing: float
    #: `TIMEOUT_HEADROOM_S`, scaled by the runner like its other margins when a "minute" is
    #: compressed (`Collector(period_ms=...)`).
    timeout_headroom: float = TIMEOUT_HEADROOM_S


class Strategy(Protocol):
    name: str

    def run(self, job: FetchJob) -> None:
        """Request every slot of the job at its time; return by `job.deadline`."""

    def close(self) -> None:
        """Release connections (at instance shutdown; strategies are reused across calls)."""


def next_start(job: FetchJob, slot: Slot) -> float | None:
    """When to start the slot's request, or None (recorded) when it must be skipped."""
    if job.recorder.throttled:
        job.recorder.skipped(slot, Outcome.AFTER_THROTTLE)
        return None
    when = job.pacer.start_time(slot.at, job.clock.now(), job.max_late)
    if when is None:
        job.recorder.skipped(slot, Outcome.LATE)
        return None
    if when >= job.deadline:
        job.recorder.skipped(slot, Outcome.DEADLINE)
        return None
    return when


def begin(job: FetchJob, slot: Slot, room: bool = True) -> SlotStart | None:
    """Called at the start time: records the start and returns what to fetch, or None when the
    slot must be skipped after all (throttled meanwhile, or no room for another request)."""
    if job.recorder.throttled:
        job.recorder.skipped(slot, Outcome.AFTER_THROTTLE)
        return None
    if not room:
        job.recorder.skipped(slot, Outcome.IN_FLIGHT_LIMIT)
        return None
    started = job.clock.now()
    job.pacer.record(started)
    return job.recorder.start(slot, started)


def request_timeout(job: FetchJob, started: float, max_in_flight: int | None = None) -> float:
    """Seconds a request started at `started` may wait for its reply: never past the deadline.

    A strategy that keeps up to `max_in_flight` requests open also gives each at most
    `max_in_flight - 1` slot spacings (7.1 s at 59 a minute with 8): by the time a slot starts,
    the request started `max_in_flight` slots before it has ended, so hung replies can never
    fill the in-flight limit and each costs only its own slot. (The client's own read timeout
    bounds a request of the one-at-a-time `sequential`.)
    """
    left = job.deadline - started - job.timeout_headroom
    if max_in_flight is None:
        return left
    return min(left, (max_in_flight - 1) * job.slot_spacing)
