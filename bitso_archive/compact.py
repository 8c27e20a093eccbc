"""``compact``: one hour of JSON snapshots to one Parquet file per book, and the research tables.

Output, in the same source, with the columns of
:data:`bitso_archive.table.PARQUET_SCHEMA` (zstd)::

    [PREFIX/]compacted/book=B/year=YYYY/month=MM/day=DD/hour=HH/B_YYYYMMDDTHH.parquet

and, for every book recorded in the hour, the tables ``trades``, ``book_changes``,
``book_snapshots``, ``quotes`` and ``coverage`` (:mod:`bitso_archive.datasets`, the same code
as ``export``; ``book`` comes from the path)::

    [PREFIX/]compacted/<table>/book=B/year=YYYY/month=MM/day=DD/hour=HH/B_YYYYMMDDTHH.parquet

 Idempotent: the name depends only on the book and hour, the bytes only
on the input, and the write is create-only (an existing file is left alone and
reported as ``exists``). Only closed hours are compacted, so a file can never
miss snapshots that were still to come.

This module needs pyarrow but not polars (nor duckdb), so the ``compact_hour`` Cloud
Function stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bitso_archive.datasets.export import compact_tables
from bitso_archive.layout import TimeLike, check_books, check_range, hours_in_range, to_ms
from bitso_archive.snapshots import (
    Corrupt,
    Snapshot,
    iter_snapshots,
    list_snapshot_names,
)
from bitso_archive.sources import Source, SourceLike, open_source
from bitso_archive.table import PARQUET_SCHEMA, levels_table
from bitso_format import (
    DEFAULT_COMPACTED_PREFIX,
    HOUR_MS,
    SnapshotName,
    compacted_name,
    floor_hour,
    iso_hour,
)

log = logging.getLogger("bitso_archive")

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
READ_BATCH = 256  # snapshots parsed before they become Arrow: bounds memory for full books
ROW_GROUP_ROWS = 1_000_000
#: `kind` of a book-hour's levels file in the result (a table's file has the table's name).
LEVELS_KIND = "levels"


class HourNotClosedError(ValueError):
    """The hour asked for has not ended yet."""


@dataclass
class CompactedFile:
    """The outcome for one book in one hour: its levels file, or one table's file."""

    book: str
    hour_ms: int
    object: str
    status: str  # "written", "exists" or "empty"
    snapshots: int = 0
    rows: int = 0
    bytes: int = 0
    corrupt: list[Corrupt] = field(default_factory=list)
    kind: str = LEVELS_KIND

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "book": self.book,
            "hour": iso_hour(self.hour_ms),
            "object": self.object,
            "status": self.status,
            "snapshots": self.snapshots,
            "rows": self.rows,
            "bytes": self.bytes,
            "corrupt": len(self.corrupt),
        }


@dataclass
class CompactResult:
    source: str
    outputs: list[CompactedFile] = field(default_factory=list)
    skipped_open_hours: list[int] = field(default_factory=list)

    @property
    def corrupt(self) -> list[Corrupt]:
        """Each object skipped, once (the levels and the tables may both have read it)."""
        found = {(c.name, c.reason): c for out in self.outputs for c in out.corrupt}
        return list(found.values())

    def count(self, status: str) -> int:
        return sum(1 for out in self.outputs if out.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "hours": sorted({iso_hour(o.hour_ms) for o in self.outputs}),
            "written": self.count("written"),
            "existing": self.count("exists"),
            "empty": self.count("empty"),
            "snapshots": sum(o.snapshots for o in self.outputs),
            "rows": sum(o.rows for o in self.outputs),
            "bytes": sum(o.bytes for o in self.outputs),
            "corrupt": [c.as_dict() for c in self.corrupt],
            "skipped_open_hours": [iso_hour(h) for h in self.skipped_open_hours],
            "outputs": [o.as_dict() for o in self.outputs],
        }


def compact_book_hour(
    src: Source, book: str, hour_ms: int, metas: Sequence[SnapshotName], out_name: str
) -> CompactedFile:
    """Write the Parquet file of one book-hour unless it exists already."""
    result = CompactedFile(book, hour_ms, out_name, "empty")
    if src.list_names(out_name):
        result.status = "exists"
        return result
    sink = pa.BufferOutputStream()
    writer: pq.ParquetWriter | None = None
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if writer is not None and pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
        pending, pending_rows = [], 0

    batch: list[Snapshot] = []

    def convert() -> None:
        nonlocal writer, pending_rows
        if not batch:
            return
        if writer is None:
            writer = pq.ParquetWriter(
                sink,
                PARQUET_SCHEMA,
                compression="zstd",
                use_dictionary=True,
                write_statistics=True,
            )
        table = levels_table(batch, with_book=False)
        result.snapshots += len(batch)
        result.rows += table.num_rows
        pending.append(table)
        pending_rows += table.num_rows
        batch.clear()
        if pending_rows >= ROW_GROUP_ROWS:
            flush()

    try:
        for item in iter_snapshots(src, metas):
            if isinstance(item, Corrupt):
                result.corrupt.append(item)
                continue
            batch.append(item)
            if len(batch) >= READ_BATCH:
                convert()
        convert()
        flush()
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        return result  # nothing readable: write nothing
    data = sink.getvalue().to_pybytes()
    result.bytes = len(data)
    result.status = "written" if src.write_new(out_name, data, PARQUET_CONTENT_TYPE) else "exists"
    return result


def compact_hour(
    source: SourceLike,
    hour: TimeLike,
    books: Iterable[str] | None = None,
    *,
    compacted_prefix: str = DEFAULT_COMPACTED_PREFIX,
    now: TimeLike | None = None,
) -> CompactResult:
    """Compact the hour containing ``hour``; raises :class:`HourNotClosedError` if still open."""
    src = open_source(source)
    hour_ms = floor_hour(to_ms(hour))
    now_ms = to_ms(now) if now is not None else int(time.time() * 1000)
    if hour_ms + HOUR_MS > now_ms:
        raise HourNotClosedError(f"hour {iso_hour(hour_ms)} has not ended yet")
    result = CompactResult(src.url)
    _compact_one(src, hour_ms, check_books(books), compacted_prefix, result)
    return result


def compact_range(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    books: Iterable[str] | None = None,
    *,
    compacted_prefix: str = DEFAULT_COMPACTED_PREFIX,
    now: TimeLike | None = None,
) -> CompactResult:
    """Compact, whole, every hour that overlaps ``[start, end)`` and has ended."""
    src = open_source(source)
    start_ms, end_ms = check_range(start, end)
    wanted = check_books(books)
    now_ms = to_ms(now) if now is not None else int(time.time() * 1000)
    result = CompactResult(src.url)
    for hour_ms in hours_in_range(start_ms, end_ms):
        if hour_ms + HOUR_MS > now_ms:
            log.warning("not compacting %s: the hour has not ended yet", iso_hour(hour_ms))
            result.skipped_open_hours.append(hour_ms)
            continue
        _compact_one(src, hour_ms, wanted, compacted_prefix, result)
    return result


def _compact_one(
    src: Source,
    hour_ms: int,
    wanted: list[str] | None,
    compacted_prefix: str,
    result: CompactResult,
) -> None:
    metas = list_snapshot_names(src, hour_ms, hour_ms + HOUR_MS, wanted)
    by_book: dict[str, list[SnapshotName]] = {}
    for meta in metas:
        by_book.setdefault(meta.book, []).append(meta)
    for book in wanted or []:
        by_book.setdefault(book, [])
    for book in sorted(by_book):
        out_name = compacted_name(book, hour_ms, compacted_prefix)
        outcome = compact_book_hour(src, book, hour_ms, by_book[book], out_name)
        _log_outcome(outcome, f"{outcome.snapshots} snapshots, ")
        result.outputs.append(outcome)
    for book, (files, corrupt) in compact_tables(src, hour_ms, wanted, compacted_prefix).items():
        for number, table in enumerate(files):
            outcome = CompactedFile(
                book,
                hour_ms,
                table.object,
                table.status,
                rows=table.rows,
                bytes=table.bytes,
                corrupt=corrupt if number == 0 else [],  # once per book-hour
                kind=table.table,
            )
            _log_outcome(outcome, f"{table.table}: ")
            result.outputs.append(outcome)


def _log_outcome(outcome: CompactedFile, what: str) -> None:
    log.info(
        "%s %s: %s (%s%d rows, %d corrupt)",
        outcome.book,
        iso_hour(outcome.hour_ms),
        outcome.status,
        what,
        outcome.rows,
        len(outcome.corrupt),
    )
