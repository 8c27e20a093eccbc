"""The book as the tables follow it: price levels of both sides, kept sorted (pure, no I/O).

It holds totals, not orders: what ``book_changes`` records is enough to keep it, so quotes and
snapshots are derived from the very rows a researcher gets, whatever they came from (streams
or REST snapshots).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from decimal import Decimal

from bitso_archive.datasets.source_adapter import ASK, BID, LevelChange


class LevelBook:
    """Levels by side and price; each side's prices ascending. Also the sequence and times of
    the latest change, for the rows built from it."""

    __slots__ = ("_levels", "_prices", "exchange_ms", "local_ms", "sequence")

    def __init__(self) -> None:
        self._levels: dict[str, dict[Decimal, LevelChange]] = {BID: {}, ASK: {}}
        self._prices: dict[str, list[Decimal]] = {BID: [], ASK: []}
        self.sequence = 0
        self.local_ms = 0
        self.exchange_ms: int | None = None

    def reset(self, levels: Iterable[LevelChange]) -> None:
        """Forget everything and hold ``levels``."""
        for side in (BID, ASK):
            self._levels[side].clear()
        for level in levels:
            if level.amount:
                self._levels[level.side][level.price] = level
        for side in (BID, ASK):
            self._prices[side] = sorted(self._levels[side])

    def apply(self, level: LevelChange) -> None:
        """Set one level (an amount of 0 removes it)."""
        held = self._levels[level.side]
        prices = self._prices[level.side]
        if not level.amount:
            if held.pop(level.price, None) is not None:
                del prices[bisect.bisect_left(prices, level.price)]
            return
        if level.price not in held:
            bisect.insort(prices, level.price)
        held[level.price] = level

    def best(self, side: str) -> LevelChange | None:
        prices = self._prices[side]
        if not prices:
            return None
        return self._levels[side][prices[-1] if side == BID else prices[0]]

    def top(self, side: str, depth: int) -> list[LevelChange]:
        """The best ``depth`` levels of ``side``, best first."""
        prices = self._prices[side]
        chosen = prices[: -depth - 1 : -1] if side == BID else prices[:depth]
        held = self._levels[side]
        return [held[price] for price in chosen]
