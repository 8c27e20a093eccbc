"""The slot ledger: what happened to each slot of one call, safe to update from any thread.

The first outcome a slot gets is final; once fetching is closed, late replies change nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .grid import Slot
from .outcomes import Outcome
from .slot_policy import SlotUse


@dataclass(frozen=True)
class LostSnapshot:
    """A reply that was fetched but could not be stored."""

    slot: Slot
    reason: str


@dataclass(frozen=True)
class LedgerView:
    """A consistent copy of the ledger, for the summary."""

    slots: dict[int, Slot]
    started_at: dict[int, float]
    outcomes: dict[int, Outcome]
    lost: tuple[LostSnapshot, ...]
    throttle_replies: int
    #: What each started slot fetched, for those that were not an ordinary snapshot.
    uses: dict[int, SlotUse]
    #: When the first throttled request started and the last throttling reply came (None when
    #: nothing was throttled): what the back-off after this call is measured from.
    first_throttled_start: float | None = None
    last_throttle_reply: float | None = None


class SlotLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttled = threading.Event()
        self._closed = False
        self._slots: dict[int, Slot] = {}
        self._started_at: dict[int, float] = {}
        self._outcomes: dict[int, Outcome] = {}
        self._writing: set[int] = set()
        self._lost: list[LostSnapshot] = []
        self._throttle_replies = 0
        self._uses: dict[int, SlotUse] = {}
        self._first_throttled_start: float | None = None
        self._last_throttle_reply: float | None = None

    @property
    def throttled(self) -> bool:
        return self._throttled.is_set()

    def started(self, slot: Slot, at: float, use: SlotUse = SlotUse.SNAPSHOT) -> None:
        with self._lock:
            self._slots[slot.number] = slot
            self._started_at[slot.number] = at
            if use is not SlotUse.SNAPSHOT:
                self._uses[slot.number] = use

    def settle(self, slot: Slot, outcome: Outcome, at: float | None = None) -> bool:
        """Give the slot its outcome (its reply came `at`, when known); False when it already
        had one or fetching is closed."""
        if outcome is Outcome.THROTTLED:
            with self._lock:
                self._throttle_replies += 1
                started = self._started_at.get(slot.number)
                if started is not None and (
                    self._first_throttled_start is None or started < self._first_throttled_start
                ):
                    self._first_throttled_start = started
                if at is not None and (
                    self._last_throttle_reply is None or at > self._last_throttle_reply
                ):
                    self._last_throttle_reply = at
            self._throttled.set()
        with self._lock:
            if self._closed or slot.number in self._outcomes or slot.number in self._writing:
                return False
            self._slots[slot.number] = slot
            self._outcomes[slot.number] = outcome
            return True

    def begin_write(self, slot: Slot) -> bool:
        """Mark the slot's reply as being stored; False when the slot is already settled."""
        with self._lock:
            if self._closed or slot.number in self._outcomes or slot.number in self._writing:
                return False
            self._slots[slot.number] = slot
            self._writing.add(slot.number)
            return True

    def end_write(self, slot: Slot, outcome: Outcome, reason: str = "") -> bool:
        """The write ended (written, duplicate or lost); False when it was already given up."""
        with self._lock:
            if slot.number not in self._writing:
                return False
            self._writing.discard(slot.number)
            self._outcomes[slot.number] = outcome
            if outcome is Outcome.LOST:
                self._lost.append(LostSnapshot(slot, reason))
            return True

    def close_fetching(self) -> None:
        """From now on replies are ignored; slots started without an outcome are abandoned."""
        with self._lock:
            self._closed = True
            for number in self._started_at:
                if number not in self._writing:
                    self._outcomes.setdefault(number, Outcome.ABANDONED)

    def view(self) -> LedgerView:
        with self._lock:
            return LedgerView(
                dict(self._slots),
                dict(self._started_at),
                dict(self._outcomes),
                tuple(self._lost),
                self._throttle_replies,
                dict(self._uses),
                self._first_throttled_start,
                self._last_throttle_reply,
            )
