"""A clock whose shift (and speed) a test sets through a file, so a server process's calls land
where the test chooses in a minute (never where the wall clock happens to be).

The file holds a `bitso_testkit.timelapse.Timeline`: `shift` (the real clock moved by that many
seconds), or `shift speed origin [slow_before slow_after]`, a time-lapse.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from bitso_collector.clock import SystemClock
from bitso_testkit.timelapse import Timeline

SHIFT_FILE_ENV = "TEST_CLOCK_SHIFT_FILE"


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
