"""What happened to each slot of a call, and the run record built from it.

Fetching threads report replies here; normalising is cheap and done on the reporting thread, the
write goes to a small writer pool so storage never holds up the next request.
"""

from __future__ import annotations

import statistics
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .errors import BitsoError, MalformedReply, StorageError, Throttled
from .grid import Slot
from .keys import snapshot_key
from .logs import JsonLogger
from .sinks.base import Sink
from .snapshot import encode, normalise
from .timefmt import iso_millis

WRITTEN = "written"
DUPLICATE = "duplicate"
LOST = "lost"
AFTER_THROTTLE = "after_throttle"
ABANDONED = "abandoned"


@dataclass(frozen=True)
class StorageOptions:
    prefix: str
    compression: str
    aggregate: bool


class CallRecorder:
    def __init__(
        self,
        sink: Sink,
        storage: StorageOptions,
        clock: Clock,
        log: JsonLogger,
        writers: int = 4,
        finish_by: float | None = None,
    ) -> None:
        self._sink = sink
        self._storage = storage
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._throttled = threading.Event()
        self._fetching_closed = False
        self._writer = ThreadPoolExecutor(writers, thread_name_prefix="write")
        self._writes: dict[Future[None], Slot] = {}
        #: Writes give up by then (the sink's `deadline`); `finish_writes` may set it later.
        self._finish_by: float | None = finish_by
        self.started_at: dict[int, float] = {}
        self.outcome: dict[int, str] = {}
        self.slot_of: dict[int, Slot] = {}
        self.lost: list[dict[str, str]] = []
        self.throttle_replies = 0

    # -- reported by strategies -------------------------------------------------------------
    @property
    def throttled(self) -> bool:
        return self._throttled.is_set()

    def started(self, slot: Slot, at: float) -> None:
        with self._lock:
            self.slot_of[slot.number] = slot
            self.started_at[slot.number] = at

    def skipped(self, slot: Slot, reason: str) -> None:
        self._settle(slot, reason)

    def failed(self, slot: Slot, error: BitsoError) -> None:
        if isinstance(error, Throttled):
            with self._lock:
                self.throttle_replies += 1
            self._throttled.set()
        if self._settle(slot, error.reason):
            self._log.warning(
                "slot failed",
                book=slot.book,
                slot=iso_millis(slot.at),
                reason=error.reason,
                detail=str(error),
            )

    def replied(
        self, slot: Slot, requested_at: float, received_at: float, payload: dict[str, Any]
    ) -> None:
        try:
            document = normalise(
                slot.book, slot.at, requested_at, received_at, payload, self._storage.aggregate
            )
        except MalformedReply as error:
            self.failed(slot, error)
            return
        data = encode(document, self._storage.compression)
        with self._lock:
            if self._fetching_closed or slot.number in self.outcome:
                return
            self.outcome[slot.number] = "writing"
            self.slot_of[slot.number] = slot
            future = self._writer.submit(self._write, slot, data)
            self._writes[future] = slot

    # -- driven by the runner ---------------------------------------------------------------
    def close_fetching(self) -> None:
        """From now on replies are ignored; slots started without an outcome are abandoned."""
        with self._lock:
            self._fetching_closed = True
            for number in self.started_at:
                self.outcome.setdefault(number, ABANDONED)

    def finish_writes(self, finish_by: float) -> None:
        """Wait for the writes until `finish_by`; whatever is not stored by then is lost."""
        self._finish_by = finish_by
        with self._lock:
            pending = dict(self._writes)
        _, not_done = wait_for(pending, timeout=max(0.0, finish_by - self._clock.now()))
        for future in not_done:
            future.cancel()
            self._lose(pending[future], "storage: not stored before the call's deadline")
        self._writer.shutdown(wait=False, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------
    def _settle(self, slot: Slot, outcome: str) -> bool:
        with self._lock:
            if self._fetching_closed or slot.number in self.outcome:
                return False
            self.slot_of[slot.number] = slot
            self.outcome[slot.number] = outcome
            return True

    def _write(self, slot: Slot, data: bytes) -> None:
        storage = self._storage
        key = snapshot_key(storage.prefix, slot.book, slot.at_ms, storage.compression)
        try:
            created = self._sink.create(
                key,
                data,
                content_type="application/json",
                content_encoding="gzip" if storage.compression == "gzip" else None,
                deadline=self._finish_by,
            )
        except StorageError as error:
            self._lose(slot, f"storage: {error}")
            return
        except Exception as error:  # an adapter bug must not lose the rest of the call
            self._lose(slot, f"storage: {type(error).__name__}: {error}")
            return
        with self._lock:
            if self.outcome.get(slot.number) == "writing":
                self.outcome[slot.number] = WRITTEN if created else DUPLICATE

    def _lose(self, slot: Slot, reason: str) -> None:
        with self._lock:
            if self.outcome.get(slot.number) != "writing":
                return
            self.outcome[slot.number] = LOST
            self.lost.append({"book": slot.book, "slot": iso_millis(slot.at), "reason": reason})
        self._log.error("snapshot lost", book=slot.book, slot=iso_millis(slot.at), reason=reason)

    # -- the record -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts for the run record; the runner adds identity and planning fields."""
        with self._lock:
            outcomes = dict(self.outcome)
            lateness = sorted(
                (at - self.slot_of[number].at) * 1000 for number, at in self.started_at.items()
            )
            lost = list(self.lost)
        counts = Counter(outcomes.values())
        failed = {
            reason: count
            for reason, count in sorted(counts.items())
            if reason not in (WRITTEN, DUPLICATE, LOST)
        }
        failures = [
            {"book": self.slot_of[n].book, "slot": iso_millis(self.slot_of[n].at), "reason": r}
            for n, r in sorted(outcomes.items())
            if r not in (WRITTEN, DUPLICATE, LOST)
        ]
        per_book: dict[str, dict[str, int]] = {}
        for number, outcome in outcomes.items():
            entry = per_book.setdefault(self.slot_of[number].book, {"planned": 0, "written": 0})
            entry["planned"] += 1
            entry["written"] += outcome == WRITTEN
        return {
            "requests_sent": len(lateness),
            "written": counts[WRITTEN],
            "duplicates": counts[DUPLICATE],
            "failed": failed,
            "throttled": self.throttle_replies,
            "skipped_after_throttle": counts[AFTER_THROTTLE],
            "abandoned": counts[ABANDONED],
            "lost": lost,
            "failures": failures,
            "lateness_ms": _lateness(lateness),
            "per_book": dict(sorted(per_book.items())),
        }


def _lateness(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    p99 = (
        statistics.quantiles(values, n=100, method="inclusive")[98]
        if len(values) > 1
        else values[0]
    )
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(p99, 2),
        "max": round(values[-1], 2),
    }
