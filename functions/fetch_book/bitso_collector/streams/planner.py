"""What each grid slot of a book is used for, with streams on (pure; one instance per call).

- **Anchor**: with `diff-orders`, a book whose subscription is acknowledged but that has no
  anchor yet (its first slot after the ack, and its next slot after a sequence gap or a lost
  connection) fetches `aggregate=false`. An anchor counts only if no gap or outage came between
  its request and its reply; otherwise the book's next slot anchors again.
- **Trades backfill**: with `trades`, each book starts the minute owing the trades since one
  second before the minute; a lost connection adds those since its last trade held. The book's
  next slot whose trades subscription is live (after its anchor) fetches a `GET /v3/trades/`
  page instead, and the next ones do too while a full page says older trades may be missing.
- Every other slot is an ordinary snapshot. A failed anchor or backfill request is simply owed
  again at the book's next slot: the budget is the grid's, one request per slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from bitso_format import SLOT_USES

from .backfill import LOOKBACK_MS, BackfillPage, TradesWindow
from .protocol import DIFF_ORDERS, TRADES


class SlotUse(StrEnum):
    SNAPSHOT = "snapshot"
    ANCHOR = "anchor"
    TRADES_BACKFILL = "trades_backfill"


assert tuple(SlotUse) == SLOT_USES, "the run record's slot uses are defined in bitso_format"


@dataclass(frozen=True, slots=True)
class PlannedUse:
    """A slot's use, decided when it starts; handed back with its result."""

    book: str
    use: SlotUse
    #: The book's outage count when decided: a result from before an outage is stale.
    epoch: int = 0
    window: TradesWindow | None = None
    marker: int | None = None


@dataclass
class _Book:
    diffs_live: bool = False
    trades_live: bool = False
    anchored: bool = False
    anchor_in_flight: bool = False
    #: Bumped by every sequence gap or lost diff subscription.
    diff_epoch: int = 0
    #: Bumped by every lost trades subscription.
    trades_epoch: int = 0
    owed: TradesWindow | None = None
    marker: int | None = None
    backfill_in_flight: bool = False
    held: set[int] = field(default_factory=set)
    last_tid: int | None = None


class SlotPlanner:
    def __init__(self, books: Iterable[str], channels: Iterable[str], minute_start_ms: int) -> None:
        chosen = set(channels)
        self.diffs = DIFF_ORDERS in chosen
        self.trades = TRADES in chosen
        self.minute_window = TradesWindow(minute_start_ms - LOOKBACK_MS)
        self._books = {
            book: _Book(owed=self.minute_window if self.trades else None) for book in books
        }

    # -- what the socket reports ----------------------------------------------------------
    def live(self, book: str, channel: str) -> None:
        """The subscription of (book, channel) is acknowledged."""
        state = self._books[book]
        if channel == DIFF_ORDERS:
            state.diffs_live = True
        elif channel == TRADES:
            state.trades_live = True

    def down(self, book: str, channel: str) -> None:
        """The subscription of (book, channel) is lost (its connection closed or went silent)."""
        state = self._books[book]
        if channel == DIFF_ORDERS and state.diffs_live:
            state.diffs_live = False
            self._unanchor(state)
        elif channel == TRADES and state.trades_live:
            state.trades_live = False
            since_last = TradesWindow(self.minute_window.since_ms, state.last_tid)
            state.owed = since_last if state.owed is None else state.owed.wider(since_last)
            state.marker = None
            state.trades_epoch += 1

    def gap(self, book: str) -> None:
        """A diff of `book` did not follow the previous one: the book needs a new anchor."""
        self._unanchor(self._books[book])

    def held(self, book: str, tids: Iterable[int]) -> None:
        """Trades of `book` that are in the archive (streamed or backfilled)."""
        state = self._books[book]
        state.held.update(tids)
        if state.held:
            state.last_tid = max(state.held)

    @staticmethod
    def _unanchor(state: _Book) -> None:
        state.anchored = False
        state.diff_epoch += 1

    # -- what a slot does -----------------------------------------------------------------
    def use_for(self, book: str) -> PlannedUse:
        """Decide the use of `book`'s slot that starts now."""
        state = self._books[book]
        if self.diffs and state.diffs_live and not state.anchored and not state.anchor_in_flight:
            state.anchor_in_flight = True
            return PlannedUse(book, SlotUse.ANCHOR, state.diff_epoch)
        if state.trades_live and state.owed is not None and not state.backfill_in_flight:
            state.backfill_in_flight = True
            return PlannedUse(
                book, SlotUse.TRADES_BACKFILL, state.trades_epoch, state.owed, state.marker
            )
        return PlannedUse(book, SlotUse.SNAPSHOT)

    def anchored(self, planned: PlannedUse, stored: bool) -> None:
        """The anchor's reply is in (and stored) or not; it counts only if nothing broke since."""
        state = self._books[planned.book]
        state.anchor_in_flight = False
        if stored and planned.epoch == state.diff_epoch:
            state.anchored = True

    def backfilled(self, planned: PlannedUse, page: BackfillPage | None) -> None:
        """A backfill page's outcome (None: the request failed, the window is owed still)."""
        state = self._books[planned.book]
        state.backfill_in_flight = False
        if page is None:
            return
        self.held(planned.book, (trade.tid for trade in page.chosen))
        if planned.epoch != state.trades_epoch:
            return  # an outage since: the next page starts again from the newest trades
        if page.next_marker is not None:
            state.marker = page.next_marker
        else:
            state.owed, state.marker = None, None

    def held_tids(self, book: str) -> set[int]:
        return set(self._books[book].held)

    def unanchored(self) -> list[str]:
        """Books whose diffs have no valid anchor now (with diff-orders recorded)."""
        if not self.diffs:
            return []
        return [book for book, state in self._books.items() if not state.anchored]

    def owing(self) -> list[str]:
        """Books still owed a backfill."""
        return [book for book, state in self._books.items() if state.owed is not None]
