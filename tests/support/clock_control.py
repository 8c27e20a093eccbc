"""A clock whose shift (and speed) a test sets through a file, so a server process's calls land
where the test chooses in a minute (never where the wall clock happens to be).

The file holds `shift` (the real clock moved by that many seconds) or `shift speed origin`: from
the real instant `origin` on, time runs `speed` times as fast, a time-lapse in which minutes,
their names and Bitso's one-minute window stay what they are while a test takes a tenth as long.
`shift speed origin slow_before slow_after` slows the time-lapse to real time for the seconds
around every minute's start, where a call's last uploads and the next call's claim must fit in
margins of a fraction of a second: real uploads take real time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from bitso_collector.clock import SystemClock

SHIFT_FILE_ENV = "TEST_CLOCK_SHIFT_FILE"


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


class FileShiftedClock:
    """The real clock moved (and sped up) as the file at `path` says (read at every use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._system = SystemClock()

    def _timeline(self) -> Timeline:
        return Timeline.parse(self.path.read_text())

    def now(self) -> float:
        return self._timeline().virtual(time.time())

    def sleep_until(self, when: float) -> None:
        self._system.sleep_until(self._timeline().real(when))


class ClockControl:
    """Moves a `FileShiftedClock` forward to just after the start of a fresh minute."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.write_text("0")
        self._last_minute = 0

    def now(self) -> float:
        return Timeline.parse(self.path.read_text()).virtual(time.time())

    def jump_to_minute(
        self,
        seconds_into_minute: float = 0.5,
        speed: float = 1.0,
        slow_before: float = 0.0,
        slow_after: float = 0.0,
    ) -> float:
        """Shift the clock so it reads `seconds_into_minute` into a minute no call has used
        yet, running `speed` times as fast from now on (but at the real pace for `slow_before`
        and `slow_after` seconds around each minute's start); returns that minute's start
        (epoch seconds)."""
        minute = max(math.ceil(self.now() / 60) + 1, self._last_minute + 1)
        self._last_minute = minute
        start = minute * 60.0
        now = time.time()
        timeline = Timeline(start + seconds_into_minute - now, speed, now, slow_before, slow_after)
        self.path.write_text(timeline.dump())
        return start

    def sleep_until(self, when: float) -> None:
        """Wait (on the real clock) until the clock reads `when`."""
        SystemClock().sleep_until(Timeline.parse(self.path.read_text()).real(when))
