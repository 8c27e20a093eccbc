"""Stores snapshots on a small writer pool, so storage never holds up the next request."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

from bitso_format import iso_millis, snapshot_name
from bitso_logs import JsonLogger

from .clock import Clock
from .errors import StorageError
from .grid import Slot
from .ledger import SlotLedger
from .outcomes import Outcome
from .sinks.base import Sink


@dataclass(frozen=True)
class StorageOptions:
    prefix: str
    compression: str
    aggregate: bool


class SnapshotWriter:
    def __init__(
        self,
        sink: Sink,
        storage: StorageOptions,
        ledger: SlotLedger,
        clock: Clock,
        log: JsonLogger,
        writers: int = 4,
        finish_by: float | None = None,
    ) -> None:
        self._sink = sink
        self._storage = storage
        self._ledger = ledger
        self._clock = clock
        self._log = log
        self._pool = ThreadPoolExecutor(writers, thread_name_prefix="write")
        self._writes: dict[Future[None], Slot] = {}
        #: Writes give up by then (the sink's `deadline`); `finish` may set it later.
        self._finish_by = finish_by

    def submit(self, slot: Slot, data: bytes) -> None:
        """Store one encoded snapshot, unless the slot already has an outcome."""
        if self._ledger.begin_write(slot):
            self._writes[self._pool.submit(self._write, slot, data)] = slot

    def finish(self, finish_by: float) -> None:
        """Wait for the writes until `finish_by`; whatever is not stored by then is lost."""
        self._finish_by = finish_by
        pending = dict(self._writes)
        _, not_done = wait_for(pending, timeout=max(0.0, finish_by - self._clock.now()))
        for future in not_done:
            future.cancel()
            self._lose(pending[future], "storage: not stored before the call's deadline")
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _write(self, slot: Slot, data: bytes) -> None:
        storage = self._storage
        key = snapshot_name(storage.prefix, slot.book, slot.at_ms, storage.compression)
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
        self._ledger.end_write(slot, Outcome.WRITTEN if created else Outcome.DUPLICATE)

    def _lose(self, slot: Slot, reason: str) -> None:
        if self._ledger.end_write(slot, Outcome.LOST, reason):
            stamp = iso_millis(slot.at_ms)
            self._log.error("snapshot lost", book=slot.book, slot=stamp, reason=reason)
