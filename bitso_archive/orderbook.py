"""The order book at an instant, rebuilt from an anchor and the diffs after it (pure, no I/O).

Bitso's documented way to keep a book (WebSocket API, "General"): take the whole order-level
book from REST (``aggregate=false``), then apply the ``diff-orders`` messages whose sequence is
above that book's, in order; every message's sequence is the previous one plus one, so any
other value means one was lost and the book is wrong until a new full book is taken. Here the
full book is an *anchor* (a stored snapshot with ``"aggregate": false``). ``open`` sets an
order's amount (at rate ``r``, side ``t``); ``cancelled`` and ``completed`` remove it. Levels
are the orders' totals by price, exact decimals throughout.

This module holds the book and the vocabulary of what can be known: a span of receipt time is
either a :class:`KnownSpan` (rebuilt from an anchor's chain) or an :class:`UnknownSpan` that
names why not; asking for an unknown instant raises :class:`UnknownInstantError`, never a
guess. :mod:`bitso_archive.chain` decides which is which.
"""

from __future__ import annotations

import bisect
import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from bitso_format import (
    CRASH_REASON,
    FROZEN_REASON,
    INSTANCE_START_REASON,
    OUTAGE_REASON,
    iso_millis,
)

#: Bitso's side codes in diff-orders (`t`): 0 buy (a bid), 1 sell (an ask).
BUY = 0
SELL = 1
#: Levels a side of an ``aggregate=true`` REST book: what the self-check compares.
AGGREGATED_DEPTH = 50
#: Exact arithmetic: a sum that would need rounding raises instead.
EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])

# Why an instant is unknown (UnknownSpan.reason and UnknownInstantError.reason).
#: No run record or shutdown record covers it (nothing recorded, a record or object missing,
#: an object lost or unreadable, or after the last cut).
NOT_RECORDED = "not_recorded"
#: Watched, but no anchor was received before it (within MAX_ANCHOR_AGE_MS).
BEFORE_FIRST_ANCHOR = "before_first_anchor"
#: From the receipt of the last diff before a missing sequence until the next anchor.
SEQUENCE_GAP = "sequence_gap"
#: The subscription was down; or the instance did not run (its late messages cannot be
#: placed); or the hole before a new instance after another shut down; or after an
#: instance's last cut when no shutdown record followed (SIGKILL, a crash).
OUTAGE = OUTAGE_REASON
FROZEN = FROZEN_REASON
INSTANCE_START = INSTANCE_START_REASON
CRASH = CRASH_REASON


# The three record types below are NamedTuples, not dataclasses: a minute holds tens of
# thousands of them, and a tuple is several times cheaper to create than a frozen dataclass.
class OrderChange(NamedTuple):
    """One order of a diff-orders message: its new amount, or None when it left the book."""

    oid: str
    side: int
    price: Decimal
    amount: Decimal | None


class Diff(NamedTuple):
    """One diff-orders message as received."""

    sequence: int
    received_ms: int
    changes: tuple[OrderChange, ...]
    sent_ms: int | None = None  # Bitso's own time of the message (`sent`), when it has one


class RestingOrder(NamedTuple):
    """One order of an anchor."""

    oid: str
    side: int
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Anchor:
    """A stored order-level snapshot: the book as of ``sequence``, asked for at its slot and
    received at ``received_ms``."""

    name: str
    sequence: int
    slot_ms: int
    received_ms: int
    orders: tuple[RestingOrder, ...]


@dataclass(frozen=True, slots=True)
class Level:
    """One price of one side: the total amount resting there and how many orders make it."""

    price: Decimal
    amount: Decimal
    orders: int

    def as_dict(self) -> dict[str, Any]:
        price, amount = format(self.price, "f"), format(self.amount, "f")
        return {"price": price, "amount": amount, "orders": self.orders}


@dataclass(frozen=True, slots=True)
class BookView:
    """The aggregated book at an instant, best levels first."""

    book: str
    at_ms: int
    sequence: int
    anchor: str
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "book": self.book,
            "at": iso_millis(self.at_ms),
            "sequence": self.sequence,
            "bids": [level.as_dict() for level in self.bids],
            "asks": [level.as_dict() for level in self.asks],
        }


class _Level:
    __slots__ = ("amount", "orders")

    def __init__(self, amount: Decimal) -> None:
        self.amount = amount
        self.orders = 1


class OrderBook:
    """Orders by id and their totals by price, each side's prices kept sorted (ascending)."""

    __slots__ = ("_levels", "_orders", "_prices")

    def __init__(self, orders: Iterable[RestingOrder] = ()) -> None:
        self._orders: dict[str, tuple[int, Decimal, Decimal]] = {}
        self._levels: tuple[dict[Decimal, _Level], dict[Decimal, _Level]] = ({}, {})
        self._prices: tuple[list[Decimal], list[Decimal]] = ([], [])
        held, levels, add = self._orders, self._levels, EXACT.add
        for oid, side, price, amount in orders:
            if oid in held:  # the same order twice: the later one counts
                old_side, old_price, old_amount = held[oid]
                old_level = levels[old_side][old_price]
                old_level.orders -= 1
                old_level.amount = EXACT.subtract(old_level.amount, old_amount)
                if not old_level.orders:
                    del levels[old_side][old_price]
            held[oid] = (side, price, amount)
            level = levels[side].get(price)
            if level is None:
                levels[side][price] = _Level(amount)
            else:
                level.amount = add(level.amount, amount)
                level.orders += 1
        self._prices = (sorted(levels[BUY]), sorted(levels[SELL]))

    def __len__(self) -> int:
        return len(self._orders)

    def apply(self, diff: Diff) -> None:
        for change in diff.changes:
            self.change(change)

    def apply_levels(self, diff: Diff) -> list[tuple[int, Decimal, Level | None]]:
        """Apply ``diff`` and return each price level it changed, as it is now (None: gone),
        in the order first touched: what a level-by-level feed of the book records."""
        before: dict[tuple[int, Decimal], tuple[Decimal, int] | None] = {}
        for change in diff.changes:
            old = self._orders.get(change.oid)
            if old is not None:
                before.setdefault((old[0], old[1]), self._level_state(old[0], old[1]))
            where = (change.side, change.price)
            before.setdefault(where, self._level_state(*where))
            self.change(change)
        changed = []
        for (side, price), was in before.items():
            now = self._level_state(side, price)
            if now != was:
                level = Level(price, now[0], now[1]) if now is not None else None
                changed.append((side, price, level))
        return changed

    def _level_state(self, side: int, price: Decimal) -> tuple[Decimal, int] | None:
        held = self._levels[side].get(price)
        return (held.amount, held.orders) if held is not None else None

    def change(self, change: OrderChange) -> None:
        """``open`` (an amount) sets the order; ``cancelled``/``completed`` (None) remove it."""
        old = self._orders.get(change.oid)
        if change.amount is None:
            if old is not None:
                del self._orders[change.oid]
                self._take(*old)
            return
        new = (change.side, change.price, change.amount)
        self._orders[change.oid] = new
        if old is not None and old[0] == change.side and old[1] == change.price:
            level = self._levels[change.side][change.price]
            level.amount = EXACT.add(EXACT.subtract(level.amount, old[2]), change.amount)
            return
        if old is not None:
            self._take(*old)
        self._put(*new)

    def _put(self, side: int, price: Decimal, amount: Decimal) -> None:
        levels = self._levels[side]
        level = levels.get(price)
        if level is None:
            levels[price] = _Level(amount)
            bisect.insort(self._prices[side], price)
        else:
            level.amount = EXACT.add(level.amount, amount)
            level.orders += 1

    def _take(self, side: int, price: Decimal, amount: Decimal) -> None:
        levels = self._levels[side]
        level = levels[price]
        level.orders -= 1
        if level.orders:
            level.amount = EXACT.subtract(level.amount, amount)
            return
        del levels[price]
        prices = self._prices[side]
        del prices[bisect.bisect_left(prices, price)]

    def side(self, side: int, depth: int | None = None) -> tuple[Level, ...]:
        """The best ``depth`` levels of one side (all when None), best first."""
        prices = self._prices[side]
        if side == BUY:
            chosen = prices[::-1] if depth is None else prices[: -depth - 1 : -1]
        else:
            chosen = prices if depth is None else prices[:depth]
        levels = self._levels[side]
        return tuple(Level(p, levels[p].amount, levels[p].orders) for p in chosen)


@dataclass(frozen=True, slots=True)
class MissingSequence:
    """A missing sequence: the diff (or anchor) before it and the next diff received."""

    after: int
    next: int
    after_ms: int | None  # receipt of the diff before the gap (None: the anchor's sequence)
    next_ms: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "after": self.after,
            "next": self.next,
            "after_received_at": iso_millis(self.after_ms) if self.after_ms is not None else None,
            "next_received_at": iso_millis(self.next_ms),
        }


@dataclass(frozen=True, slots=True)
class KnownSpan:
    """``[start_ms, end_ms)``: rebuilt from the chain of ``anchor`` (its name and sequence)."""

    start_ms: int
    end_ms: int
    anchor: str
    anchor_sequence: int


@dataclass(frozen=True, slots=True)
class UnknownSpan:
    """``[start_ms, end_ms)``: what the archive cannot know, and why."""

    start_ms: int
    end_ms: int
    reason: str
    detail: str
    gap: MissingSequence | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": iso_millis(self.start_ms),
            "to": iso_millis(self.end_ms),
            "ms": self.end_ms - self.start_ms,
            "reason": self.reason,
            "detail": self.detail,
            "gap": self.gap.as_dict() if self.gap else None,
        }


Span = KnownSpan | UnknownSpan


class UnknownInstantError(ValueError):
    """The archive cannot know the book at this instant; ``reason`` names the kind of hole."""

    def __init__(self, book: str, at_ms: int, span: UnknownSpan) -> None:
        super().__init__(f"{book} at {iso_millis(at_ms)} is unknown: {span.detail}")
        self.reason = span.reason
        self.book = book
        self.at_ms = at_ms
        self.span = span


def span_at(spans: Sequence[Span], at_ms: int) -> Span | None:
    """The span holding ``at_ms`` (None outside them); ``spans`` sorted and disjoint."""
    index = bisect.bisect_right([s.start_ms for s in spans], at_ms) - 1
    if index < 0 or at_ms >= spans[index].end_ms:
        return None
    return spans[index]


@dataclass(frozen=True, slots=True)
class AggregatedSnapshot:
    """A stored ``aggregate=true`` snapshot: the top levels a side as of ``sequence``."""

    name: str
    sequence: int
    slot_ms: int
    received_ms: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]


MATCH = "match"
DRIFT = "drift"
UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """One aggregated snapshot against the book rebuilt at its sequence."""

    snapshot: str
    sequence: int
    status: str  # MATCH, DRIFT or UNCHECKED
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "sequence": self.sequence,
            "status": self.status,
            "detail": self.detail,
        }


def first_difference(
    book: OrderBook, snap: AggregatedSnapshot, depth: int = AGGREGATED_DEPTH
) -> str:
    """The first level where the rebuilt book and the snapshot differ ("" when none does)."""
    for label, side, stored in (("bid", BUY, snap.bids), ("ask", SELL, snap.asks)):
        rebuilt = book.side(side, depth)
        expected = stored[:depth]
        for number, (level, (price, amount)) in enumerate(zip(rebuilt, expected, strict=False)):
            if level.price != price or level.amount != amount:
                return (
                    f"{label} level {number}: rebuilt {level.price} x {level.amount}, "
                    f"snapshot {price} x {amount}"
                )
        if len(rebuilt) != len(expected):
            return f"{label}s: rebuilt {len(rebuilt)} levels, snapshot {len(expected)}"
    return ""
