"""A deterministic order-level market per book: what the fake REST server and the fake WebSocket
both serve, so that the two always agree (as Bitso's own REST and socket do).

One `Market` holds every open order of one book (exact `Decimal` prices and amounts, never
floats) and a `sequence` that rises by one per change. `step(at_ms)` makes the next change, drawn
from a seeded generator: a new order, a cancel, a partial fill or a complete fill (a fill also
makes a trade). Each change becomes exactly the messages Bitso's socket sends for it, and the REST
views (`order_book`, `trades`) are computed from the same state, at any sequence:

    market = Market("btc_mxn", seed=1, start_ms=now_ms)
    change = market.step(now_ms + 5)
    change.diff_message()          # {"type": "diff-orders", "book": ..., "sequence": N, ...}
    change.trades_message()        # {"type": "trades", ...} for a fill, else None
    market.order_book(aggregate=False, sequence=N)   # the book just after diff N
    market.trades(sort="desc", limit=100, marker=None)

`Exchange` is the markets of several books behind one lock, the object both fakes share.
Message and reply shapes follow Bitso's docs (WebSocket: Trades and Diff-Orders channels;
REST: `GET /v3/order_book/` and `GET /v3/trades/`).
"""

from __future__ import annotations

import random
import string
import threading
from bisect import bisect_left, insort
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any

#: Mid price, price decimals and amount decimals of the books the fakes know (from Bitso's
#: available books).
BOOKS: dict[str, tuple[str, int, int]] = {
    "btc_mxn": ("1650000.00", 2, 8),
    "eth_mxn": ("62000.00", 2, 8),
    "xrp_mxn": ("11.50", 2, 6),
    "xrp_btc": ("0.00000850", 8, 6),
    "eth_btc": ("0.03600000", 8, 8),
    "btc_usd": ("95000.00", 2, 8),
    "usd_mxn": ("18.50", 2, 2),
    "ltc_mxn": ("1500.00", 2, 8),
    "bch_mxn": ("7200.00", 2, 8),
    "sol_mxn": ("3400.00", 2, 8),
}
#: Levels a side in an aggregated book (Bitso's `aggregate=true`).
AGGREGATED_LEVELS = 50
#: Bitso's `t`: 0 is buy, 1 is sell.
SIDES = ("buy", "sell")
#: The largest page `GET /v3/trades/` serves.
MAX_TRADES_LIMIT = 100
#: Distinct price levels a side the market places orders on (more than AGGREGATED_LEVELS).
PRICE_LEVELS = 80
_OID_ALPHABET = string.ascii_letters + string.digits


class ChangeKind(StrEnum):
    OPEN = "open"
    CANCEL = "cancel"
    PARTIAL_FILL = "partial_fill"
    COMPLETE_FILL = "complete_fill"


@dataclass(frozen=True, slots=True)
class Order:
    """One resting order; `serial` is its place in time priority (lower came first)."""

    oid: str
    side: str
    price: Decimal
    amount: Decimal
    created_ms: int
    serial: int


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill of a resting (maker) order by an incoming (taker) order."""

    tid: int
    price: Decimal
    amount: Decimal
    value: Decimal
    maker_side: str
    maker_oid: str
    taker_oid: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class Change:
    """One step of the market: `order` as it is after the change (for a cancel or a complete
    fill, as it was when it left the book), and the trade a fill made."""

    book: str
    sequence: int
    at_ms: int
    kind: ChangeKind
    order: Order
    trade: Fill | None
    price_places: int

    def diff_message(self) -> dict[str, Any]:
        """The `diff-orders` message Bitso sends for this change.

        Open orders (new or partly filled) carry the remaining `a` and `v` and no `z`; a
        cancelled order has no `a` and `v`; a completed one has `a` and `v` of zero. Both
        removed kinds carry `z`, the time of the change.
        """
        order = self.order
        entry: dict[str, Any] = {
            "o": order.oid,
            "d": order.created_ms,
            "r": _text(order.price),
            "t": SIDES.index(order.side),
        }
        if self.kind is ChangeKind.CANCEL:
            entry.update(s="cancelled", z=self.at_ms)
        elif self.kind is ChangeKind.COMPLETE_FILL:
            nothing_left = _text(Decimal(0).quantize(order.amount))
            nothing_worth = _text(_quantum(self.price_places) * 0)
            entry.update(a=nothing_left, v=nothing_worth, s="completed", z=self.at_ms)
        else:
            value = _value(order.price, order.amount, self.price_places)
            entry.update(a=_text(order.amount), v=_text(value), s="open")
        return {
            "type": "diff-orders",
            "book": self.book,
            "sequence": self.sequence,
            "payload": [entry],
            "sent": self.at_ms,
        }

    def trades_message(self) -> dict[str, Any] | None:
        """The `trades` message Bitso sends for a fill; None for other changes."""
        trade = self.trade
        if trade is None:
            return None
        return {
            "type": "trades",
            "book": self.book,
            "payload": [
                {
                    "i": trade.tid,
                    "a": _text(trade.amount),
                    "r": _text(trade.price),
                    "v": _text(trade.value),
                    "mo": trade.maker_oid,
                    "to": trade.taker_oid,
                    "t": 1 - SIDES.index(trade.maker_side),
                    "x": trade.created_ms,
                }
            ],
            "sent": self.at_ms,
        }

    def messages(self) -> list[dict[str, Any]]:
        """Every socket message of this change, in the order the fake sends them."""
        trades = self.trades_message()
        return [self.diff_message()] if trades is None else [trades, self.diff_message()]


def _text(value: Decimal) -> str:
    """A decimal as Bitso writes it: plain digits, never an exponent."""
    return format(value, "f")


def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def _value(price: Decimal, amount: Decimal, price_places: int) -> Decimal:
    return (price * amount).quantize(_quantum(price_places), rounding=ROUND_HALF_EVEN)


def bitso_time(ms: int) -> str:
    """`2016-04-08T17:52:31.000+00:00`: a trade's `created_at` in `GET /v3/trades/`."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}+00:00"


def bitso_seconds(ms: int) -> str:
    """`2017-08-01T21:07:54+00:00`: an order book's `updated_at`."""
    return f"{datetime.fromtimestamp(ms // 1000, UTC):%Y-%m-%dT%H:%M:%S}+00:00"


class _Side:
    """The open orders of one side by price level, each level in time priority."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.levels: dict[Decimal, list[str]] = {}
        self.prices: list[Decimal] = []  # ascending

    def add(self, order: Order) -> None:
        level = self.levels.get(order.price)
        if level is None:
            self.levels[order.price] = [order.oid]
            insort(self.prices, order.price)
        else:
            level.append(order.oid)

    def remove(self, order: Order) -> None:
        level = self.levels[order.price]
        level.remove(order.oid)
        if not level:
            del self.levels[order.price]
            del self.prices[bisect_left(self.prices, order.price)]

    def best(self) -> str | None:
        """The oid first in line at the best price (highest bid, lowest ask)."""
        if not self.prices:
            return None
        price = self.prices[-1] if self.side == "buy" else self.prices[0]
        return self.levels[price][0]


class Market:
    """The order-level market of one book. Pure and deterministic: the same `book`, `seed`,
    `start_ms` and the same `step` times give the same orders, messages and replies. Not
    thread-safe (`Exchange` adds the lock)."""

    def __init__(
        self,
        book: str,
        seed: int = 0,
        *,
        start_ms: int = 1_795_515_300_000,
        depth: int = 300,
        first_sequence: int | None = None,
        first_tid: int | None = None,
    ) -> None:
        if book not in BOOKS:
            raise ValueError(f"unknown book {book!r}; the fake knows {', '.join(BOOKS)}")
        if depth < 2:
            raise ValueError(f"depth must be at least 2 orders, not {depth}")
        mid, price_places, amount_places = BOOKS[book]
        self.book = book
        self.depth = depth
        self.price_places = price_places
        self._mid = Decimal(mid)
        price_step = _quantum(price_places)
        self._level_step = max(price_step, (self._mid * Decimal("0.0005")).quantize(price_step))
        self._amount_quantum = _quantum(amount_places)
        self._rng = random.Random(f"{book}:{seed}")
        #: The diff sequence of the current state (a REST reply's `sequence`).
        self.sequence = 18_805_917 + 1_000 * seed if first_sequence is None else first_sequence
        self._next_tid = 55_845 + 10_000_000 * seed if first_tid is None else first_tid
        self.updated_ms = self._start_ms = start_ms
        self._serial = 0
        self._orders: dict[str, Order] = {}
        self._oids: list[str] = []  # for drawing a random order in O(1)
        self._index: dict[str, int] = {}
        self._sides = {side: _Side(side) for side in SIDES}
        for _ in range(depth):
            self._open(self._new_order(start_ms))
        self._initial = dict(self._orders)
        self._initial_sequence = self.sequence
        #: Every change since the start, in sequence order.
        self.changes: list[Change] = []
        #: Every trade since the start, in tid order.
        self.trade_log: list[Fill] = []

    # -- making changes -------------------------------------------------------------------
    def step(self, at_ms: int) -> Change:
        """The next change, made at `at_ms` (epoch ms, not before the previous change)."""
        at_ms = max(at_ms, self.updated_ms)
        count = len(self._orders)
        weights = {
            ChangeKind.OPEN: 4.0 if count < self.depth * 1.2 else 1.0,
            ChangeKind.CANCEL: 3.0 if count > self.depth * 0.8 else 0.5,
            ChangeKind.PARTIAL_FILL: 1.5,
            ChangeKind.COMPLETE_FILL: 1.5,
        }
        kind = self._rng.choices(list(weights), list(weights.values()))[0]
        if kind is not ChangeKind.OPEN and count <= 2:
            kind = ChangeKind.OPEN
        trade = None
        if kind is ChangeKind.OPEN:
            order = self._new_order(at_ms)
            self._open(order)
        elif kind is ChangeKind.CANCEL:
            order = self._orders[self._oids[self._rng.randrange(count)]]
            self._close(order)
        else:
            order, trade, kind = self._fill(kind, at_ms)
        self.sequence += 1
        self.updated_ms = at_ms
        change = Change(self.book, self.sequence, at_ms, kind, order, trade, self.price_places)
        self.changes.append(change)
        if trade is not None:
            self.trade_log.append(trade)
        return change

    def _fill(self, kind: ChangeKind, at_ms: int) -> tuple[Order, Fill, ChangeKind]:
        """A taker hits the best order of a random side (the other side when that one is
        empty): part of it, or all of it."""
        side = self._rng.choice(SIDES)
        maker_oid = self._sides[side].best()
        if maker_oid is None:
            side = SIDES[1 - SIDES.index(side)]
            maker_oid = self._sides[side].best()
        assert maker_oid is not None  # the market always keeps more than two orders
        maker = self._orders[maker_oid]
        if kind is ChangeKind.PARTIAL_FILL and maker.amount > self._amount_quantum:
            units = int(maker.amount / self._amount_quantum)
            filled = self._rng.randint(1, units - 1) * self._amount_quantum
            after = replace(maker, amount=maker.amount - filled)
            self._orders[maker.oid] = after
        else:
            kind, filled, after = ChangeKind.COMPLETE_FILL, maker.amount, maker
            self._close(maker)
        trade = Fill(
            tid=self._next_tid,
            price=maker.price,
            amount=filled,
            value=_value(maker.price, filled, self.price_places),
            maker_side=side,
            maker_oid=maker.oid,
            taker_oid=self._oid(),
            created_ms=at_ms,
        )
        self._next_tid += 1
        return after, trade, kind

    def _oid(self) -> str:
        return "".join(self._rng.choices(_OID_ALPHABET, k=16))

    def _new_order(self, at_ms: int) -> Order:
        side = self._rng.choice(SIDES)
        distance = self._level_step * self._rng.randint(1, PRICE_LEVELS)
        price = self._mid - distance if side == "buy" else self._mid + distance
        amount = self._rng.randint(1, 5_000_000) * self._amount_quantum
        self._serial += 1
        return Order(self._oid(), side, price, amount, at_ms, self._serial)

    def _open(self, order: Order) -> None:
        self._orders[order.oid] = order
        self._index[order.oid] = len(self._oids)
        self._oids.append(order.oid)
        self._sides[order.side].add(order)

    def _close(self, order: Order) -> None:
        del self._orders[order.oid]
        position = self._index.pop(order.oid)
        last = self._oids.pop()
        if last != order.oid:
            self._oids[position] = last
            self._index[last] = position
        self._sides[order.side].remove(order)

    # -- REST views -----------------------------------------------------------------------
    def orders(self, sequence: int | None = None) -> list[Order]:
        """The open orders just after diff `sequence` (default: now), in time priority."""
        if sequence is None or sequence == self.sequence:
            return sorted(self._orders.values(), key=lambda order: order.serial)
        if not self._initial_sequence <= sequence <= self.sequence:
            raise ValueError(
                f"sequence {sequence} is outside {self._initial_sequence} to {self.sequence}"
            )
        book = dict(self._initial)
        for change in self.changes[: sequence - self._initial_sequence]:
            if change.kind in (ChangeKind.CANCEL, ChangeKind.COMPLETE_FILL):
                del book[change.order.oid]
            else:
                book[change.order.oid] = change.order
        return sorted(book.values(), key=lambda order: order.serial)

    def order_book(self, aggregate: bool = True, sequence: int | None = None) -> dict[str, Any]:
        """The `payload` of `GET /v3/order_book/` just after diff `sequence` (default: now):
        with `aggregate` the top 50 price levels a side, amounts summed; without, every order
        with its `oid`. Bids best (highest) first, asks lowest first; within a price, time
        priority."""
        orders = self.orders(sequence)
        at = self.sequence if sequence is None else sequence
        updated_ms = self.updated_ms if at == self.sequence else self._updated_at(at)
        sides = {}
        for side in SIDES:
            mine = [order for order in orders if order.side == side]
            mine.sort(key=lambda order: order.price, reverse=side == "buy")  # stable: by serial
            sides[side] = (
                self._aggregated(mine) if aggregate else [self._order_entry(o) for o in mine]
            )
        return {
            "updated_at": bitso_seconds(updated_ms),
            "bids": sides["buy"],
            "asks": sides["sell"],
            "sequence": str(at),
        }

    def _updated_at(self, sequence: int) -> int:
        index = sequence - self._initial_sequence
        return self.changes[index - 1].at_ms if index > 0 else self._start_ms

    def _order_entry(self, order: Order) -> dict[str, str]:
        return {
            "book": self.book,
            "price": _text(order.price),
            "amount": _text(order.amount),
            "oid": order.oid,
        }

    def _aggregated(self, ordered: list[Order]) -> list[dict[str, str]]:
        levels: dict[Decimal, Decimal] = {}
        for order in ordered:
            if order.price not in levels and len(levels) == AGGREGATED_LEVELS:
                break
            levels[order.price] = levels.get(order.price, Decimal(0)) + order.amount
        return [
            {"book": self.book, "price": _text(price), "amount": _text(amount)}
            for price, amount in levels.items()
        ]

    def trades(
        self, sort: str = "desc", limit: int = 25, marker: int | None = None
    ) -> list[dict[str, Any]]:
        """The `payload` of `GET /v3/trades/?book=B&sort=S&limit=L[&marker=M]`: newest first
        (`desc`, trades older than `marker`) or oldest first (`asc`, newer than `marker`)."""
        if sort not in ("asc", "desc"):
            raise ValueError(f"sort={sort!r} is not allowed; allowed: asc, desc")
        if not 1 <= limit <= MAX_TRADES_LIMIT:
            raise ValueError(f"limit={limit} is outside 1 to {MAX_TRADES_LIMIT}")
        log = self.trade_log
        if sort == "desc":
            end = len(log) if marker is None else bisect_left(log, marker, key=_tid)
            chosen = log[max(0, end - limit) : end][::-1]
        else:
            start = 0 if marker is None else bisect_left(log, marker + 1, key=_tid)
            chosen = log[start : start + limit]
        return [self.trade_entry(trade) for trade in chosen]

    def trade_entry(self, trade: Fill) -> dict[str, Any]:
        """One trade as `GET /v3/trades/` gives it."""
        return {
            "book": self.book,
            "created_at": bitso_time(trade.created_ms),
            "amount": _text(trade.amount),
            "maker_side": trade.maker_side,
            "price": _text(trade.price),
            "tid": trade.tid,
        }


def _tid(trade: Fill) -> int:
    return trade.tid


class Exchange:
    """The markets of several books behind one lock: the one object the fake REST server
    (request threads) and the fake socket (its event loop thread) share."""

    def __init__(
        self,
        books: Iterable[str],
        seed: int = 0,
        *,
        start_ms: int | None = None,
        depth: int = 300,
        first_sequence: int | None = None,
        first_tid: int | None = None,
    ) -> None:
        names = list(books)
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {
            "depth": depth,
            "first_sequence": first_sequence,
            "first_tid": first_tid,
        }
        if start_ms is not None:
            kwargs["start_ms"] = start_ms
        self.markets = {
            name: Market(name, seed + index, **kwargs) for index, name in enumerate(names)
        }

    def knows(self, book: str) -> bool:
        return book in self.markets

    def step(self, book: str, at_ms: int) -> Change:
        with self.lock:
            return self.markets[book].step(at_ms)

    def order_book(
        self, book: str, aggregate: bool = True, sequence: int | None = None
    ) -> dict[str, Any]:
        with self.lock:
            return self.markets[book].order_book(aggregate, sequence)

    def trades(
        self, book: str, sort: str = "desc", limit: int = 25, marker: int | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            return self.markets[book].trades(sort, limit, marker)
