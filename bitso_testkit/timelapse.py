"""A time-lapse of the real clock, shared by the tests' clock control (through a file, so a
server process follows it) and the benchmarks (in process).

From the real instant `origin` on, time runs `speed` times as fast: minutes, their names and
Bitso's one-minute window stay what they are while a run takes a tenth as long. Optionally the
seconds around every minute's start run at the real pace: a call stores its last replies, its
cut and its run record within its last second, and real writes take real time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Timeline:
    """Virtual time that reads `origin + shift` at the real instant `origin` and runs `speed`
    times as fast from then on, except for the last `slow_before` and the first `slow_after`
    seconds of every virtual minute, which run at the real pace."""

    shift: float = 0.0
    speed: float = 1.0
    origin: float = 0.0
    slow_before: float = 0.0
    slow_after: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Timeline:
        parts = [float(part) for part in text.split()] or [0.0]
        return cls(*parts)

    def dump(self) -> str:
        return (
            f"{self.shift!r} {self.speed!r} {self.origin!r} "
            f"{self.slow_before!r} {self.slow_after!r}"
        )

    @property
    def _fast(self) -> float:
        """Virtual seconds of each minute that run `speed` times as fast."""
        return 60.0 - self.slow_before - self.slow_after

    def _cost(self, virtual: float) -> float:
        """Real seconds the timeline takes from virtual 0 to `virtual`."""
        minutes, into = divmod(virtual, 60.0)
        head, fast = self.slow_after, self._fast
        period = self.slow_before + head + fast / self.speed
        if into < head:
            spent = into
        elif into < head + fast:
            spent = head + (into - head) / self.speed
        else:
            spent = head + fast / self.speed + (into - head - fast)
        return minutes * period + spent

    def _reach(self, cost: float) -> float:
        """The virtual instant `_cost` maps to `cost` (its inverse)."""
        head, fast = self.slow_after, self._fast
        period = self.slow_before + head + fast / self.speed
        minutes, spent = divmod(cost, period)
        if spent < head:
            into = spent
        elif spent < head + fast / self.speed:
            into = head + (spent - head) * self.speed
        else:
            into = head + fast + (spent - head - fast / self.speed)
        return minutes * 60.0 + into

    def virtual(self, real: float) -> float:
        start = self.origin + self.shift
        return self._reach(self._cost(start) + real - self.origin)

    def real(self, virtual: float) -> float:
        return self.origin + self._cost(virtual) - self._cost(self.origin + self.shift)


class TimeLapseClock:
    """A collector `Clock` on a fixed timeline."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def now(self) -> float:
        return self.timeline.virtual(time.time())

    def sleep_until(self, when: float) -> None:
        wake = self.timeline.real(when)
        while (left := wake - time.time()) > 0:
            time.sleep(left)
