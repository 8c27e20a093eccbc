"""The research tables: their names, the options that shape them, and where their files go.

One Parquet file per table, book and hour, hive-partitioned like the compacted snapshots::

    <root>/<table>/book=B/year=YYYY/month=MM/day=DD/hour=HH/B_YYYYMMDDTHH.parquet

where ``<root>`` is the ``export`` directory, or ``compacted/`` (``COMPACTED_PREFIX``) in the
archive for ``compact``. ``book`` and the time partitions come from the path, as in BigQuery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bitso_format import HOUR_MS, compacted_name

TRADES = "trades"
BOOK_CHANGES = "book_changes"
BOOK_SNAPSHOTS = "book_snapshots"
QUOTES = "quotes"
COVERAGE = "coverage"
#: Every table, in the order they are written and listed.
TABLES = (TRADES, BOOK_CHANGES, BOOK_SNAPSHOTS, QUOTES, COVERAGE)
#: The hive partition columns every table gains from its path.
PARTITIONS = ("book", "year", "month", "day", "hour")

DEFAULT_DEPTH = 25
MAX_DEPTH = 1000
DEFAULT_EVERY_MS = 1000
#: book_snapshots at most ten times a second (36,000 instants a book-hour), at least hourly.
MIN_EVERY_MS = 100
MAX_EVERY_MS = HOUR_MS


class TableOptionError(ValueError):
    """A table name, depth or interval that is not allowed; the message says what is."""


def check_tables(names: Iterable[str]) -> tuple[str, ...]:
    """The tables asked for, in :data:`TABLES` order; an unknown name is refused."""
    asked = [name.strip() for name in names if name.strip()]
    unknown = [name for name in asked if name not in TABLES]
    if unknown:
        named = ", ".join(repr(name) for name in unknown)
        verb = "is not a table" if len(unknown) == 1 else "are not tables"
        raise TableOptionError(f"{named} {verb}; choose from {', '.join(TABLES)}")
    if not asked:
        raise TableOptionError(f"give at least one table: {', '.join(TABLES)}")
    return tuple(name for name in TABLES if name in asked)


def check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise TableOptionError(
            f"depth {depth!r} is out of range; use a whole number of levels a side "
            f"from 1 to {MAX_DEPTH}"
        )
    return depth


def check_every(every_ms: int) -> int:
    if (
        isinstance(every_ms, bool)
        or not isinstance(every_ms, int)
        or not MIN_EVERY_MS <= every_ms <= MAX_EVERY_MS
    ):
        raise TableOptionError(
            f"interval {every_ms!r} ms is out of range; book_snapshots are taken from every "
            f"{MIN_EVERY_MS} ms to every hour ({MAX_EVERY_MS:,} ms)"
        )
    return every_ms


@dataclass(frozen=True, slots=True)
class TableOptions:
    """Which tables to build, and the shape of ``book_snapshots``."""

    tables: tuple[str, ...] = TABLES
    depth: int = DEFAULT_DEPTH
    every_ms: int = DEFAULT_EVERY_MS

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", check_tables(self.tables))  # in TABLES order
        check_depth(self.depth)
        check_every(self.every_ms)


def table_object(table: str, book: str, hour_ms: int, root: str = "") -> str:
    """The file of one table, book and hour, under ``root``."""
    return compacted_name(book, hour_ms, root, table)
