"""``load``: snapshots of some books between two UTC times, as polars DataFrames.

Only the hour prefixes in range are listed. Prices, amounts, mid and spread are
exact ``Decimal(38, 9)`` columns; times are ``Datetime("ms", "UTC")``.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl
import pyarrow as pa

from bitso_archive.layout import TimeLike, check_books, check_range
from bitso_archive.snapshots import (
    Corrupt,
    Snapshot,
    iter_snapshots,
    list_snapshot_names,
    price_levels,
)
from bitso_archive.sources import SourceLike, open_source
from bitso_archive.table import (
    DECIMAL,
    SCALE,
    TIMESTAMP,
    DecimalRangeError,
    levels_table,
    to_decimal,
)

BATCH = 2048  # snapshots parsed before they become Arrow tables
_QUANTUM = Decimal(1).scaleb(-SCALE)
_EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])


@dataclass
class LoadResult:
    """What ``load`` read: the level table, the top-of-book table and what was skipped."""

    levels: pl.DataFrame
    top: pl.DataFrame
    snapshots: int
    corrupt: list[Corrupt] = field(default_factory=list)
    books: list[str] = field(default_factory=list)


def load(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    books: Iterable[str] | None = None,
    *,
    progress: bool = False,
    levels: bool = True,
    top: bool = True,
) -> LoadResult:
    """Read the range once and build both views (``levels=False`` or ``top=False``
    leaves that one empty). Rows are sorted by book, then slot."""
    src = open_source(source)
    start_ms, end_ms = check_range(start, end)
    metas = list_snapshot_names(src, start_ms, end_ms, check_books(books))
    level_tables: list[pa.Table] = []
    top_tables: list[pa.Table] = []
    batch: list[Snapshot] = []
    corrupt: list[Corrupt] = []
    count = 0
    found: set[str] = set()

    def flush() -> None:
        # Arrow tables are far smaller than the parsed JSON: convert as we go.
        if levels:
            level_tables.append(levels_table(batch, with_book=True))
        if top:
            top_tables.append(top_table(batch))
        batch.clear()

    for item in iter_snapshots(src, metas, progress=progress):
        if isinstance(item, Corrupt):
            corrupt.append(item)
            continue
        batch.append(item)
        count += 1
        found.add(item.book)
        if len(batch) >= BATCH:
            flush()
    flush()
    return LoadResult(
        levels=_frame(level_tables or [levels_table([], with_book=True)]),
        top=_frame(top_tables or [top_table([])]),
        snapshots=count,
        corrupt=corrupt,
        books=sorted(found),
    )


def _frame(tables: list[pa.Table]) -> pl.DataFrame:
    frame = pl.from_arrow(pa.concat_tables(tables) if len(tables) > 1 else tables[0])
    assert isinstance(frame, pl.DataFrame)
    return frame


def load_levels(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    books: Iterable[str] | None = None,
    *,
    progress: bool = False,
) -> pl.DataFrame:
    """One row per price level: book, slot, received_at, sequence, side, level, price, amount,
    orders (order-level books are summed by price)."""
    return load(source, start, end, books, progress=progress, top=False).levels


def top_of_book(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    books: Iterable[str] | None = None,
    *,
    progress: bool = False,
) -> pl.DataFrame:
    """One row per snapshot: best bid and ask (with amounts), mid and spread."""
    return load(source, start, end, books, progress=progress, levels=False).top


def _mid(bid: str | None, ask: str | None) -> str | None:
    if bid is None or ask is None:
        return None
    try:
        value = _EXACT.divide(_EXACT.add(Decimal(bid), Decimal(ask)), 2)
        return format(value.quantize(_QUANTUM, context=_EXACT), "f")
    except (decimal.Inexact, decimal.InvalidOperation):
        raise DecimalRangeError(
            f"the mid of {bid} and {ask} needs more than {SCALE} decimals"
        ) from None


def _spread(bid: str | None, ask: str | None) -> str | None:
    if bid is None or ask is None:
        return None
    return format(_EXACT.subtract(Decimal(ask), Decimal(bid)), "f")


TOP_SCHEMA = pa.schema(
    [
        pa.field("book", pa.string(), nullable=False),
        pa.field("slot", TIMESTAMP, nullable=False),
        pa.field("received_at", TIMESTAMP, nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("best_bid", DECIMAL),
        pa.field("best_bid_amount", DECIMAL),
        pa.field("best_ask", DECIMAL),
        pa.field("best_ask_amount", DECIMAL),
        pa.field("mid", DECIMAL),
        pa.field("spread", DECIMAL),
    ]
)


def top_table(snapshots: Sequence[Snapshot]) -> pa.Table:
    """One row per snapshot: best bid and ask with their amounts (the level's total, order-level
    books summed by price), exact mid and spread."""
    snapshots = [price_levels(snap) for snap in snapshots]
    bids = [s.bids.prices[0] if s.bids.prices else None for s in snapshots]
    asks = [s.asks.prices[0] if s.asks.prices else None for s in snapshots]
    bid_amounts = [s.bids.amounts[0] if s.bids.amounts else None for s in snapshots]
    ask_amounts = [s.asks.amounts[0] if s.asks.amounts else None for s in snapshots]
    names = [s.name for s in snapshots]
    columns = [
        pa.array([s.book for s in snapshots], pa.string()),
        pa.array([s.slot_ms for s in snapshots], TIMESTAMP),
        pa.array([s.received_ms for s in snapshots], TIMESTAMP),
        pa.array([s.sequence for s in snapshots], pa.int64()),
        to_decimal(bids, "price", names),
        to_decimal(bid_amounts, "amount", names),
        to_decimal(asks, "price", names),
        to_decimal(ask_amounts, "amount", names),
        to_decimal([_mid(b, a) for b, a in zip(bids, asks, strict=True)], "mid", names),
        to_decimal([_spread(b, a) for b, a in zip(bids, asks, strict=True)], "spread", names),
    ]
    return pa.Table.from_arrays(columns, schema=TOP_SCHEMA)
