"""Wall-clock access behind one small interface, so tests and benchmarks can inject time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""

    def sleep_until(self, when: float) -> None:
        """Block until `now() >= when` (returns at once when it already is)."""


#: The last stretch of a wait is spun rather than slept: `time.sleep` wakes ~0.1 ms late, and
#: with a strict rolling window a start's lateness carries over to the same slot a minute later.
SPIN_SECONDS = 0.0015


class SystemClock:
    """The real clock; waits wake within a few microseconds of their time."""

    def now(self) -> float:
        return time.time()

    def sleep_until(self, when: float) -> None:
        left = when - time.time()
        if left > SPIN_SECONDS:
            time.sleep(left - SPIN_SECONDS)
        while time.time() < when:
            pass


class ShiftedClock(SystemClock):
    """The real clock moved by a fixed shift; lets a test choose where in a minute it is."""

    def __init__(self, shift_seconds: float) -> None:
        self.shift = shift_seconds

    def now(self) -> float:
        return time.time() + self.shift

    def sleep_until(self, when: float) -> None:
        super().sleep_until(when - self.shift)
