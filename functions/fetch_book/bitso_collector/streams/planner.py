"""What each grid slot of a book is used for, with streams on (pure; one per instance, so a
chain runs on across calls).

- **Anchor**: with `diff-orders`, a book whose subscription is acknowledged but whose chain has
  no anchor (the instance's first subscription, and after a sequence gap or a lost connection)
  fetches `aggregate=false` at its next slot; so does a chain whose anchor is
  `anchor_every_ms` old, so a reader never walks back further. An anchor counts only if no
  break came between its request and its reply; otherwise the book's next slot anchors again.
- **Trades backfill**: with `trades`, only after a break. The instance's first subscription
  owes the trades of the minute before it (`NEW_CHAIN_LOOKBACK_MS`: the hole since the previous
  instance); a lost subscription owes those since the last trade held. The book's next slot
  whose trades subscription is live (after its anchor) fetches a `GET /v3/trades/` page, and the
  next ones do too while a full page says older trades may be missing.
- Every other slot is an ordinary snapshot: an unbroken chain spends no slot. A failed anchor or
  backfill request is owed again at the book's next slot: one request per slot, always.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..rest_trades import TradesWindow
from ..slot_policy import PlannedUse, SlotUse
from .backfill import LOOKBACK_MS, NEW_CHAIN_LOOKBACK_MS, BackfillPage
from .protocol import DIFF_ORDERS, TRADES


@dataclass
class _Book:
    diffs_live: bool = False
    trades_live: bool = False
    #: When the chain's anchor was received (None: the chain has none).
    anchored_ms: int | None = None
    anchor_in_flight: bool = False
    #: Bumped by every sequence gap or lost diff subscription.
    diff_epoch: int = 0
    #: Bumped by every lost trades subscription.
    trades_epoch: int = 0
    trades_subscribed: bool = False
    owed: TradesWindow | None = None
    marker: int | None = None
    backfill_in_flight: bool = False
    held: set[int] = field(default_factory=set)
    last_tid: int | None = None
    #: The newest trade id the socket delivered: backfilled trades after it may still come.
    streamed_tid: int | None = None


class SlotPlanner:
    def __init__(self, books: Iterable[str], channels: Iterable[str], anchor_every_ms: int) -> None:
        chosen = set(channels)
        self.diffs = DIFF_ORDERS in chosen
        self.trades = TRADES in chosen
        self.anchor_every_ms = anchor_every_ms
        self._books = {book: _Book() for book in books}

    # -- what the socket reports ----------------------------------------------------------
    def live(self, book: str, channel: str, at_ms: int) -> None:
        """The subscription of (book, channel) is acknowledged at `at_ms`."""
        state = self._books[book]
        if channel == DIFF_ORDERS:
            state.diffs_live = True
        elif channel == TRADES:
            state.trades_live = True
            if not state.trades_subscribed:
                state.trades_subscribed = True
                self._owe(state, TradesWindow(at_ms - NEW_CHAIN_LOOKBACK_MS))

    def down(self, book: str, channel: str, at_ms: int) -> None:
        """The subscription of (book, channel) is lost at `at_ms` (closed or silent)."""
        state = self._books[book]
        if channel == DIFF_ORDERS and state.diffs_live:
            state.diffs_live = False
            self._unanchor(state)
        elif channel == TRADES and state.trades_live:
            state.trades_live = False
            self._owe(state, TradesWindow(at_ms - LOOKBACK_MS, state.last_tid))
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

    def streamed(self, book: str, tids: tuple[int, ...]) -> bool:
        """Trades the socket delivered; False when a backfill already stored every one of them
        (its REST page came before the socket's message), so the message is not stored again."""
        state = self._books[book]
        newest = max(tids)
        if state.streamed_tid is None or newest > state.streamed_tid:
            state.streamed_tid = newest
        if all(tid in state.held for tid in tids):
            return False
        self.held(book, tids)
        return True

    def forget_held(self) -> None:
        """At a cut: a book that owes no backfill keeps only its newest trade id (the next
        window starts after it) and the backfilled ones the socket has not passed yet, so memory
        stays bounded however long the instance lives."""
        for state in self._books.values():
            if state.owed is None and not state.backfill_in_flight:
                passed = -1 if state.streamed_tid is None else state.streamed_tid
                state.held = {tid for tid in state.held if tid > passed}
                if state.last_tid is not None:
                    state.held.add(state.last_tid)

    @staticmethod
    def _owe(state: _Book, window: TradesWindow) -> None:
        state.owed = window if state.owed is None else state.owed.wider(window)

    @staticmethod
    def _unanchor(state: _Book) -> None:
        state.anchored_ms = None
        state.diff_epoch += 1

    # -- what a slot does -----------------------------------------------------------------
    def use_for(self, book: str, now_ms: int) -> PlannedUse:
        """Decide the use of `book`'s slot that starts at `now_ms`."""
        state = self._books.get(book)
        if state is None:  # a book the stream does not follow (a call's own book list)
            return PlannedUse(book, SlotUse.SNAPSHOT)
        if self.diffs and state.diffs_live and not state.anchor_in_flight:
            due = state.anchored_ms is None or now_ms - state.anchored_ms >= self.anchor_every_ms
            if due:
                state.anchor_in_flight = True
                return PlannedUse(book, SlotUse.ANCHOR, state.diff_epoch)
        if state.trades_live and state.owed is not None and not state.backfill_in_flight:
            state.backfill_in_flight = True
            return PlannedUse(
                book, SlotUse.TRADES_BACKFILL, state.trades_epoch, state.owed, state.marker
            )
        return PlannedUse(book, SlotUse.SNAPSHOT)

    def anchored(self, planned: PlannedUse, stored: bool, at_ms: int) -> None:
        """The anchor's reply is in (and stored) or not; it counts only if nothing broke since."""
        state = self._books[planned.book]
        state.anchor_in_flight = False
        if stored and planned.epoch == state.diff_epoch:
            state.anchored_ms = at_ms

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
        return [book for book, state in self._books.items() if state.anchored_ms is None]

    def owing(self) -> list[str]:
        """Books still owed a backfill."""
        return [book for book, state in self._books.items() if state.owed is not None]
