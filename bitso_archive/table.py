"""Snapshots to an Arrow table of levels, with exact decimal128(38, 9) columns.

This is the one place strings become decimals, for ``load`` (via polars) and for
``compact`` (Parquet) alike. Arrow's string-to-decimal cast is strict: a value
with more than 9 decimals or more than 29 integer digits raises
:class:`DecimalRangeError` instead of being rounded.

Rows are price levels: an order-level book (an anchor, or any ``"aggregate": false``
snapshot) is summed by price first, with each level's order count
(:func:`~bitso_archive.snapshots.price_levels`), so ``level`` never ranks single orders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from bitso_archive.snapshots import Snapshot, price_levels

PRECISION = 38
SCALE = 9
DECIMAL = pa.decimal128(PRECISION, SCALE)
TIMESTAMP = pa.timestamp("ms", tz="UTC")
_TOO_MANY_DIGITS = rf"^[-+]?0*[1-9][0-9]{{{PRECISION - SCALE},}}"

#: The Parquet contract shared with the BigQuery external table. ``book`` and the
#: time partitions come from the hive path, so they are not columns.
PARQUET_SCHEMA = pa.schema(
    [
        pa.field("slot", TIMESTAMP, nullable=False),
        pa.field("received_at", TIMESTAMP, nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("level", pa.int32(), nullable=False),
        pa.field("price", DECIMAL, nullable=False),
        pa.field("amount", DECIMAL, nullable=False),
        # Orders at the level; null for a book Bitso aggregated (it does not say).
        pa.field("orders", pa.int32(), nullable=True),
    ]
)
LEVELS_SCHEMA = pa.schema([pa.field("book", pa.string(), nullable=False), *PARQUET_SCHEMA])


class DecimalRangeError(ValueError):
    """A price or amount does not fit DECIMAL(38, 9) exactly."""


def to_decimal(
    values: Sequence[str | None], column: str, names: Sequence[str] | None = None
) -> pa.Array:
    """Exact decimal128(38, 9) array of decimal strings; raises on any loss."""
    strings = pa.array(values, pa.string())
    try:
        result = strings.cast(DECIMAL)
        # Arrow's cast wraps around silently for 22 to 38 integer digits (the int128
        # overflows while rescaling), so the integer digits are checked here.
        if not pc.any(pc.match_substring_regex(strings, _TOO_MANY_DIGITS)).as_py():
            return result
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for i, value in enumerate(values):
        try:
            if value is not None and re.match(_TOO_MANY_DIGITS, value):
                raise pa.ArrowInvalid(f"more than {PRECISION - SCALE} integer digits")
            pa.array([value], pa.string()).cast(DECIMAL)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            where = f" in {names[i]}" if names is not None else ""
            raise DecimalRangeError(
                f"{column} {value!r}{where} does not fit DECIMAL({PRECISION},{SCALE}) "
                f"exactly ({exc})"
            ) from None
    raise DecimalRangeError(f"{column}: a value does not fit DECIMAL({PRECISION},{SCALE})")


def levels_table(snapshots: Sequence[Snapshot], *, with_book: bool = True) -> pa.Table:
    """One row per level: bids (best first) then asks (best first) of each snapshot, in order."""
    books: list[str] = []
    slots: list[int] = []
    received: list[int] = []
    sequences: list[int] = []
    sides: list[str] = []
    levels: list[int] = []
    prices: list[str] = []
    amounts: list[str] = []
    orders: list[int | None] = []
    origin: list[int] = []  # snapshot index of each row, for error messages only
    snapshots = [price_levels(snap) for snap in snapshots]  # anchors summed by price
    for index, snap in enumerate(snapshots):
        for side_name, side in (("bid", snap.bids), ("ask", snap.asks)):
            n = len(side.prices)
            if n == 0:
                continue
            books += [snap.book] * n
            slots += [snap.slot_ms] * n
            received += [snap.received_ms] * n
            sequences += [snap.sequence] * n
            sides += [side_name] * n
            levels += range(n)
            prices += side.prices
            amounts += side.amounts
            orders += side.orders if side.orders is not None else [None] * n
            origin += [index] * n

    def row_names() -> list[str]:
        return [snapshots[i].name for i in origin]

    try:
        price_array = to_decimal(prices, "price")
        amount_array = to_decimal(amounts, "amount")
    except DecimalRangeError:
        # Redo slowly to name the object that holds the value.
        names = row_names()
        price_array = to_decimal(prices, "price", names)
        amount_array = to_decimal(amounts, "amount", names)
    columns = [
        pa.array(slots, TIMESTAMP),
        pa.array(received, TIMESTAMP),
        pa.array(sequences, pa.int64()),
        pa.array(sides, pa.string()),
        pa.array(levels, pa.int32()),
        price_array,
        amount_array,
        pa.array(orders, pa.int32()),
    ]
    if with_book:
        return pa.Table.from_arrays([pa.array(books, pa.string()), *columns], schema=LEVELS_SCHEMA)
    return pa.Table.from_arrays(columns, schema=PARQUET_SCHEMA)
