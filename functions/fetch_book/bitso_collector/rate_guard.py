"""When a slot's request may start: never before its time, never so late that it is stale, and
never so that any rolling window holds more starts than the budget allows."""

from __future__ import annotations

import threading
from collections import deque


class Pacer:
    """Start times of recent requests, kept per process so the window spans consecutive calls."""

    def __init__(self, limit: int, window_seconds: float = 60.0) -> None:
        self.limit = limit
        self.window = window_seconds
        self._starts: deque[float] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def start_time(self, slot_at: float, now: float, max_late: float) -> float | None:
        """When the slot's request may start, or None when that would be more than `max_late`
        after the slot's time (the slot is then skipped, never started late)."""
        with self._lock:
            window_opens = (
                self._starts[0] + self.window if len(self._starts) == self.limit else slot_at
            )
        when = max(slot_at, window_opens, now)
        return when if when - slot_at <= max_late else None

    def record(self, started_at: float) -> None:
        with self._lock:
            self._starts.append(started_at)

    def starts_between(self, after: float, before: float) -> int:
        """How many of the recent starts lie in `(after, before)`."""
        with self._lock:
            return sum(after < start < before for start in self._starts)
