"""A clock whose shift a test sets through a file, so a server process's calls land where the
test chooses in a minute (never where the wall clock happens to be)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from bitso_collector.clock import SystemClock

SHIFT_FILE_ENV = "TEST_CLOCK_SHIFT_FILE"


class FileShiftedClock:
    """The real clock moved by the number of seconds written in `path` (read at every use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._system = SystemClock()

    def _shift(self) -> float:
        return float(self.path.read_text() or 0)

    def now(self) -> float:
        return time.time() + self._shift()

    def sleep_until(self, when: float) -> None:
        self._system.sleep_until(when - self._shift())


class ClockControl:
    """Moves a `FileShiftedClock` forward to just after the start of a fresh minute."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.write_text("0")
        self._last_minute = 0

    def now(self) -> float:
        return time.time() + float(self.path.read_text())

    def jump_to_minute(self, seconds_into_minute: float = 0.5) -> float:
        """Shift the clock so it reads `seconds_into_minute` into a minute no call has used
        yet; returns that minute's start (epoch seconds)."""
        minute = max(math.ceil(self.now() / 60) + 1, self._last_minute + 1)
        self._last_minute = minute
        start = minute * 60.0
        self.path.write_text(repr(start + seconds_into_minute - time.time()))
        return start
