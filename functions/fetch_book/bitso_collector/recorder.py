"""What the strategies report to: each slot's start, skip, failure or reply.

Normalising is cheap and done on the reporting thread; the write goes to the snapshot writer so
storage never holds up the next request. What happened is kept in the slot ledger. The slot
policy decides what each slot fetches (a snapshot, an anchor, a trades page) and hears how it
went.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitso_format import iso_millis
from bitso_logs import JsonLogger

from .clock import Clock
from .errors import BitsoError, MalformedReply
from .grid import Slot
from .ledger import SlotLedger
from .outcomes import Outcome
from .rest_trades import RestTrade
from .slot_policy import SNAPSHOTS_ONLY, PlannedUse, SlotPolicy, SlotUse
from .snapshot import encode, normalise
from .snapshot_writer import SnapshotWriter, StorageOptions


@dataclass(frozen=True)
class SlotStart:
    """A slot's request as it starts: when, what it fetches, and with which aggregation."""

    at: float
    use: PlannedUse
    aggregate: bool

    @property
    def backfill(self) -> bool:
        return self.use.use is SlotUse.TRADES_BACKFILL


class CallRecorder:
    def __init__(
        self,
        ledger: SlotLedger,
        writer: SnapshotWriter,
        storage: StorageOptions,
        log: JsonLogger,
        clock: Clock,
        policy: SlotPolicy = SNAPSHOTS_ONLY,
    ) -> None:
        self.ledger = ledger
        self._writer = writer
        self._storage = storage
        self._log = log
        self._clock = clock
        self._policy = policy

    @property
    def throttled(self) -> bool:
        return self.ledger.throttled

    def start(self, slot: Slot, at: float) -> SlotStart:
        """Record that the slot's request starts now, and what it fetches."""
        use = self._policy.use_for(slot.book)
        start = SlotStart(at, use, self._storage.aggregate and use.use is not SlotUse.ANCHOR)
        self.ledger.started(slot, at, start.use.use)
        return start

    def skipped(self, slot: Slot, reason: Outcome) -> None:
        self.ledger.settle(slot, reason)

    def failed(self, slot: Slot, error: BitsoError, start: SlotStart | None = None) -> None:
        if self.ledger.settle(slot, error.reason, at=self._clock.now()):
            self._log.warning(
                "slot failed",
                book=slot.book,
                slot=iso_millis(slot.at_ms),
                reason=error.reason,
                detail=str(error),
            )
        if start is None:
            return
        if start.use.use is SlotUse.ANCHOR:
            self._policy.anchored(start.use, stored=False)
        elif start.backfill:
            self._policy.backfilled(start.use, None, start.at)

    def replied(
        self, slot: Slot, start: SlotStart, received_at: float, payload: dict[str, Any]
    ) -> None:
        try:
            document = normalise(
                slot.book, slot.at, start.at, received_at, payload, start.aggregate
            )
        except MalformedReply as error:
            self.failed(slot, error, start)
            return
        self._writer.submit(slot, encode(document, self._storage.compression))
        if start.use.use is SlotUse.ANCHOR:
            self._policy.anchored(start.use, stored=True)

    def backfilled(
        self, slot: Slot, start: SlotStart, received_at: float, trades: list[RestTrade]
    ) -> None:
        """A trades page is in: the policy keeps the trades the socket missed."""
        if self.ledger.settle(slot, Outcome.BACKFILLED):
            self._policy.backfilled(start.use, trades, received_at)
