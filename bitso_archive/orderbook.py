"""The order book at an instant, rebuilt from an anchor and the diffs after it (pure, no I/O).

Bitso's documented way to keep a book (WebSocket API, "General"): take the whole order-level
book from REST (``aggregate=false``), then apply the ``diff-orders`` messages whose sequence is
above that book's, in order; every message's sequence is the previous one plus one, so any
other value means one was lost and the book is wrong until a new full book is taken. Here the
full book is an *anchor* (a stored snapshot with ``"aggregate": false``) and "in order" is the
order of receipt. ``open`` sets an order's amount (at rate ``r``, side ``t``); ``cancelled``
and ``completed`` remove it. Levels are the orders' totals by price, exact decimals throughout.

One call records one minute, so a minute is rebuilt on its own: its anchors and its diffs. The
book is known from an anchor's receipt until the receipt of the last diff its chain applies.
The chain stops at the first diff whose sequence is not the next one (a sequence gap), at the
socket's first disconnect after the anchor (an outage: the run record names it), or at the last
diff of the minute (after it the socket closed, or was about to). Every other instant of the
minute is an :class:`UnknownSpan`, and asking for it raises :class:`UnknownInstantError`: never
a guess.
"""

from __future__ import annotations

import bisect
import decimal
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from bitso_format import MINUTE_MS, iso_millis, iso_minute

#: Bitso's side codes in diff-orders (`t`): 0 buy (a bid), 1 sell (an ask).
BUY = 0
SELL = 1
#: Levels a side of an ``aggregate=true`` REST book: what the self-check compares.
AGGREGATED_DEPTH = 50
#: Exact arithmetic: a sum that would need rounding raises instead.
EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])

# Why an instant is unknown (UnknownSpan.reason and UnknownInstantError.reason).
NOT_RECORDED = "not_recorded"
NO_ANCHOR = "no_anchor"
BEFORE_FIRST_ANCHOR = "before_first_anchor"
SEQUENCE_GAP = "sequence_gap"
OUTAGE = "outage"
AFTER_LAST_DIFF = "after_last_diff"


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
    """A stored order-level snapshot: the book as of ``sequence``, received at ``received_ms``."""

    name: str
    sequence: int
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
class SequenceGap:
    """Two diffs received one after the other whose sequences do not follow."""

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


def sequence_gaps(diffs: Sequence[Diff]) -> list[SequenceGap]:
    """Every pair of consecutive diffs (in order of receipt) whose sequence is not previous + 1."""
    return [
        SequenceGap(prev.sequence, diff.sequence, prev.received_ms, diff.received_ms)
        for prev, diff in itertools.pairwise(diffs)
        if diff.sequence != prev.sequence + 1
    ]


@dataclass(frozen=True, slots=True)
class Chain:
    """What an anchor can rebuild: the diffs before ``end`` whose sequence is above its own."""

    anchor: Anchor
    end: int  # index of the first diff the chain cannot apply (len(diffs) when none)
    last_sequence: int
    known_until_ms: int  # receipt of the last diff applied (the anchor's receipt if none)
    gap: SequenceGap | None  # the break, when a diff broke the chain
    outage_ms: int | None = None  # the disconnect that cut the chain, when one did


def chain_of(anchor: Anchor, diffs: Sequence[Diff], cut_ms: int | None = None) -> Chain:
    """Follow the anchor's sequence through the diffs (skipping those it already holds); with
    ``cut_ms`` (a disconnect), stop before the first diff received after it."""
    expected = anchor.sequence + 1
    last_ms: int | None = None
    for index, diff in enumerate(diffs):
        if cut_ms is not None and diff.received_ms > cut_ms:
            return Chain(anchor, index, expected - 1, _until(anchor, last_ms), None, cut_ms)
        if diff.sequence == expected:
            expected += 1
            last_ms = diff.received_ms
        elif diff.sequence > anchor.sequence:
            gap = SequenceGap(expected - 1, diff.sequence, last_ms, diff.received_ms)
            return Chain(anchor, index, expected - 1, _until(anchor, last_ms), gap)
    return Chain(anchor, len(diffs), expected - 1, _until(anchor, last_ms), None, cut_ms)


def _until(anchor: Anchor, last_ms: int | None) -> int:
    return anchor.received_ms if last_ms is None else max(anchor.received_ms, last_ms)


@dataclass(frozen=True, slots=True)
class KnownSpan:
    """``[start_ms, end_ms)``: rebuilt from ``chain``."""

    start_ms: int
    end_ms: int
    chain: Chain


@dataclass(frozen=True, slots=True)
class UnknownSpan:
    """``[start_ms, end_ms)``: what the archive cannot know, and why."""

    start_ms: int
    end_ms: int
    reason: str
    detail: str
    gap: SequenceGap | None = None

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


@dataclass(frozen=True, slots=True)
class Minute:
    """What one call recorded of one book: its anchors and diffs, both in order of receipt,
    and when the call's socket was lost (its outages, from the run record)."""

    book: str
    minute_ms: int
    diffs: Sequence[Diff]
    anchors: Sequence[Anchor]
    disconnects: Sequence[int] = ()


def not_recorded(minute_ms: int, detail: str) -> UnknownSpan:
    """The whole minute unknown (no diffs object, or one that cannot be read)."""
    return UnknownSpan(minute_ms, minute_ms + MINUTE_MS, NOT_RECORDED, detail)


def coverage(minute: Minute) -> list[Span]:
    """The minute cut into known and unknown spans, in time order, covering all of it.

    At any instant the minute's latest anchor received by then is the one to rebuild from.
    """
    start, end = minute.minute_ms, minute.minute_ms + MINUTE_MS
    anchors = sorted(minute.anchors, key=lambda a: a.received_ms)
    if not anchors:
        detail = f"no anchor (aggregate=false snapshot) of {minute.book} in {iso_minute(start)}"
        return [UnknownSpan(start, end, NO_ANCHOR, detail)]
    spans: list[Span] = []
    first = anchors[0]
    if first.received_ms > start:
        detail = (
            f"before the minute's first anchor ({first.name}, sequence {first.sequence}, "
            f"received {iso_millis(first.received_ms)})"
        )
        spans.append(UnknownSpan(start, min(first.received_ms, end), BEFORE_FIRST_ANCHOR, detail))
    for index, anchor in enumerate(anchors):
        window_start = max(anchor.received_ms, start)
        following = anchors[index + 1] if index + 1 < len(anchors) else None
        window_end = min(following.received_ms, end) if following else end
        if window_end <= window_start:
            continue
        cut = next((d for d in sorted(minute.disconnects) if window_start <= d < window_end), None)
        chain = chain_of(anchor, minute.diffs, cut)
        known_end = min(max(chain.known_until_ms, window_start), window_end)
        if known_end > window_start:
            spans.append(KnownSpan(window_start, known_end, chain))
        if known_end < window_end:
            spans.append(_hole(chain, known_end, window_end, following))
    return spans


def _hole(chain: Chain, start: int, end: int, following: Anchor | None) -> UnknownSpan:
    then = (
        f"known again from the next anchor, received {iso_millis(following.received_ms)}"
        if following
        else "no later anchor in this minute"
    )
    gap = chain.gap
    if gap is not None:
        after = (
            f"received {iso_millis(gap.after_ms)}"
            if gap.after_ms is not None
            else f"the sequence of anchor {chain.anchor.name}"
        )
        detail = (
            f"sequence gap after {gap.after} ({after}), next {gap.next} "
            f"(received {iso_millis(gap.next_ms)}); {then}"
        )
        return UnknownSpan(start, end, SEQUENCE_GAP, detail, gap)
    if chain.outage_ms is not None:
        detail = (
            f"the socket was lost at {iso_millis(chain.outage_ms)}, after the diff of sequence "
            f"{chain.last_sequence} (received {iso_millis(chain.known_until_ms)}): diffs may "
            f"have been missed; {then}"
        )
        return UnknownSpan(start, end, OUTAGE, detail)
    detail = (
        f"after the last diff recorded (sequence {chain.last_sequence}, received "
        f"{iso_millis(chain.known_until_ms)}): nothing after it shows whether the book "
        f"changed (the socket closed or went quiet); {then}"
    )
    return UnknownSpan(start, end, AFTER_LAST_DIFF, detail)


def span_at(spans: Sequence[Span], at_ms: int) -> Span | None:
    """The span holding ``at_ms`` (None outside them)."""
    index = bisect.bisect_right([s.start_ms for s in spans], at_ms) - 1
    if index < 0 or at_ms >= spans[index].end_ms:
        return None
    return spans[index]


class MinuteBooks:
    """The books of one minute at instants asked in increasing order, one book advanced as
    it goes (a step back, or a later anchor, starts again from that anchor)."""

    def __init__(self, minute: Minute, spans: Sequence[Span] | None = None) -> None:
        self.minute = minute
        self.spans = list(spans) if spans is not None else coverage(minute)
        self._starts = [s.start_ms for s in self.spans]
        self._chain: Chain | None = None
        self._book = OrderBook()
        self._next = 0
        self._sequence = 0
        self._at = 0

    def at(self, at_ms: int, depth: int | None = AGGREGATED_DEPTH) -> BookView:
        """The book at ``at_ms``: raises :class:`UnknownInstantError` when it cannot be known."""
        index = bisect.bisect_right(self._starts, at_ms) - 1
        span = self.spans[index] if index >= 0 else None
        if span is None or at_ms >= span.end_ms:
            raise ValueError(
                f"{iso_millis(at_ms)} is outside minute {iso_minute(self.minute.minute_ms)}"
            )
        if isinstance(span, UnknownSpan):
            raise UnknownInstantError(self.minute.book, at_ms, span)
        chain = span.chain
        if chain is not self._chain or at_ms < self._at:
            self._chain = chain
            self._book = OrderBook(chain.anchor.orders)
            self._next = 0
            self._sequence = chain.anchor.sequence
        self._at = at_ms
        diffs = self.minute.diffs
        while self._next < chain.end and diffs[self._next].received_ms <= at_ms:
            diff = diffs[self._next]
            if diff.sequence > chain.anchor.sequence:
                self._book.apply(diff)
                self._sequence = diff.sequence
            self._next += 1
        return BookView(
            self.minute.book,
            at_ms,
            self._sequence,
            chain.anchor.name,
            self._book.side(BUY, depth),
            self._book.side(SELL, depth),
        )


@dataclass(frozen=True, slots=True)
class AggregatedSnapshot:
    """A stored ``aggregate=true`` snapshot: the top levels a side as of ``sequence``."""

    name: str
    sequence: int
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


def check_drift(
    minute: Minute, snapshots: Iterable[AggregatedSnapshot], depth: int = AGGREGATED_DEPTH
) -> list[DriftCheck]:
    """Compare each snapshot with the book rebuilt at its sequence, from the latest anchor
    of the minute whose chain reaches it; one it reaches none of is UNCHECKED."""
    chains = [
        chain_of(a, minute.diffs) for a in sorted(minute.anchors, key=lambda a: a.received_ms)
    ]
    by_chain: dict[int, list[AggregatedSnapshot]] = {}
    results: dict[str, DriftCheck] = {}
    order: list[str] = []
    for snap in snapshots:
        order.append(snap.name)
        for index in range(len(chains) - 1, -1, -1):
            chain = chains[index]
            if chain.anchor.sequence <= snap.sequence <= chain.last_sequence:
                by_chain.setdefault(index, []).append(snap)
                break
        else:
            detail = (
                f"no anchor of {iso_minute(minute.minute_ms)} rebuilds sequence {snap.sequence}"
            )
            results[snap.name] = DriftCheck(snap.name, snap.sequence, UNCHECKED, detail)
    for index, targets in by_chain.items():
        chain = chains[index]
        targets.sort(key=lambda s: s.sequence)
        book = OrderBook(chain.anchor.orders)
        sequence = chain.anchor.sequence
        position = 0
        for snap in targets:
            while sequence < snap.sequence:
                diff = minute.diffs[position]
                position += 1
                if diff.sequence > chain.anchor.sequence:
                    book.apply(diff)
                    sequence = diff.sequence
            difference = _first_difference(book, snap, depth)
            status = DRIFT if difference else MATCH
            results[snap.name] = DriftCheck(snap.name, snap.sequence, status, difference)
    return [results[name] for name in order]


def _first_difference(book: OrderBook, snap: AggregatedSnapshot, depth: int) -> str:
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
