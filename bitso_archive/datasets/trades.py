"""``trades``: every trade once (streamed and backfilled merged by trade id), in trade id order:
``timestamp`` the exchange's time of the trade, ``local_timestamp`` when it was received (for a
trade backfilled from REST, when the page came), ``source`` ``stream`` or ``rest``. Backfilled
trades have no ``value`` nor order ids (REST does not give them)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import pyarrow as pa

from bitso_archive.datasets.base import column, decimal, timestamp
from bitso_archive.datasets.parquet import ParquetRows
from bitso_archive.datasets.source_adapter import TradeRecord

SCHEMA = pa.schema(
    [
        column("tid", pa.int64()),
        timestamp("timestamp"),
        timestamp("local_timestamp"),
        decimal("price"),
        decimal("amount"),
        decimal("value", nullable=True),
        column("taker_side", pa.string()),
        column("maker_order", pa.string(), nullable=True),
        column("taker_order", pa.string(), nullable=True),
        column("source", pa.string()),
    ]
)


def trades_file(trades: Iterable[TradeRecord]) -> ParquetRows:
    out = ParquetRows(SCHEMA)
    for t in trades:
        out.add(
            (
                t.tid,
                t.exchange_ms,
                t.local_ms,
                Decimal(t.price),
                Decimal(t.amount),
                Decimal(t.value) if t.value is not None else None,
                t.taker_side,
                t.maker_order,
                t.taker_order,
                t.source,
            )
        )
    return out
