"""Wall-clock access behind one small interface, so tests and benchmarks can inject time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""

    def sleep_until(self, when: float) -> None:
        """Block until `now() >= when` (returns at once when it already is)."""


class SystemClock:
    """The real clock. Sleeps in short steps at the end so starts land within a millisecond."""

    def now(self) -> float:
        return time.time()

    def sleep_until(self, when: float) -> None:
        while True:
            left = when - time.time()
            if left <= 0:
                return
            time.sleep(left - 0.002 if left > 0.004 else left / 2)


class ShiftedClock(SystemClock):
    """The real clock moved by a fixed shift; lets a test choose where in a minute it is."""

    def __init__(self, shift_seconds: float) -> None:
        self.shift = shift_seconds

    def now(self) -> float:
        return time.time() + self.shift

    def sleep_until(self, when: float) -> None:
        super().sleep_until(when - self.shift)
