"""Read the Bitso order book archive back: load, gaps, compact; from streams book, replay, trades.

The public API is imported lazily, so ``import bitso_archive`` stays cheap and the
``compact_hour`` Cloud Function needs neither polars nor matplotlib::

    from bitso_archive import load_levels, top_of_book, gaps_report, compact_hour
    from bitso_archive import book_at, replay, iter_trades
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bitso_archive.compact import CompactResult, compact_hour, compact_range
    from bitso_archive.gaps import GapReport, gaps_report
    from bitso_archive.loader import LoadResult, load, load_levels, top_of_book
    from bitso_archive.orderbook import BookView, UnknownInstantError
    from bitso_archive.replay import book_at, replay
    from bitso_archive.sources import GcsSource, LocalSource, Source, open_source
    from bitso_archive.table import PARQUET_SCHEMA, DecimalRangeError
    from bitso_archive.trades import Trade, iter_trades

_EXPORTS = {
    "load": "bitso_archive.loader",
    "load_levels": "bitso_archive.loader",
    "top_of_book": "bitso_archive.loader",
    "LoadResult": "bitso_archive.loader",
    "gaps_report": "bitso_archive.gaps",
    "GapReport": "bitso_archive.gaps",
    "compact_hour": "bitso_archive.compact",
    "compact_range": "bitso_archive.compact",
    "CompactResult": "bitso_archive.compact",
    "Source": "bitso_archive.sources",
    "LocalSource": "bitso_archive.sources",
    "GcsSource": "bitso_archive.sources",
    "open_source": "bitso_archive.sources",
    "PARQUET_SCHEMA": "bitso_archive.table",
    "DecimalRangeError": "bitso_archive.table",
    "book_at": "bitso_archive.replay",
    "replay": "bitso_archive.replay",
    "BookView": "bitso_archive.orderbook",
    "UnknownInstantError": "bitso_archive.orderbook",
    "iter_trades": "bitso_archive.trades",
    "Trade": "bitso_archive.trades",
}

__all__ = [
    "PARQUET_SCHEMA",
    "BookView",
    "CompactResult",
    "DecimalRangeError",
    "GapReport",
    "GcsSource",
    "LoadResult",
    "LocalSource",
    "Source",
    "Trade",
    "UnknownInstantError",
    "book_at",
    "compact_hour",
    "compact_range",
    "gaps_report",
    "iter_trades",
    "load",
    "load_levels",
    "open_source",
    "replay",
    "top_of_book",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bitso_archive' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
