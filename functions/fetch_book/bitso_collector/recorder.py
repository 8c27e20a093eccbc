"""What the strategies report to: each slot's start, skip, failure or reply.

Normalising is cheap and done on the reporting thread; the write goes to the snapshot writer so
storage never holds up the next request. What happened is kept in the slot ledger.
"""

from __future__ import annotations

from typing import Any

from bitso_format import iso_millis
from bitso_logs import JsonLogger

from .clock import Clock
from .errors import BitsoError, MalformedReply
from .grid import Slot
from .ledger import SlotLedger
from .outcomes import Outcome
from .snapshot import encode, normalise
from .snapshot_writer import SnapshotWriter, StorageOptions


class CallRecorder:
    def __init__(
        self,
        ledger: SlotLedger,
        writer: SnapshotWriter,
        storage: StorageOptions,
        log: JsonLogger,
        clock: Clock,
    ) -> None:
        self.ledger = ledger
        self._writer = writer
        self._storage = storage
        self._log = log
        self._clock = clock

    @property
    def throttled(self) -> bool:
        return self.ledger.throttled

    def started(self, slot: Slot, at: float) -> None:
        self.ledger.started(slot, at)

    def skipped(self, slot: Slot, reason: Outcome) -> None:
        self.ledger.settle(slot, reason)

    def failed(self, slot: Slot, error: BitsoError) -> None:
        if self.ledger.settle(slot, error.reason, at=self._clock.now()):
            self._log.warning(
                "slot failed",
                book=slot.book,
                slot=iso_millis(slot.at_ms),
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
        self._writer.submit(slot, encode(document, self._storage.compression))
