"""Build the tables of one book over a range, and write them: the one code path of ``export``
and ``compact``.

The book's segments are walked once and every table asked for is fed from that walk; the trades
are read on their own. The result is one Parquet file per table (none for a table without
rows). Where the files go is the sink's business: ``compact`` creates them in the archive and
never overwrites (:class:`ArchiveSink`), ``export`` replaces them in a local directory, each
file whole or not at all (:class:`DirectorySink`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from bitso_archive.datasets.base import BookTable
from bitso_archive.datasets.book_changes import BookChangesTable
from bitso_archive.datasets.book_snapshots import BookSnapshotsTable
from bitso_archive.datasets.coverage import CoverageTable
from bitso_archive.datasets.levelbook import LevelBook
from bitso_archive.datasets.parquet import ParquetRows
from bitso_archive.datasets.quotes import QuotesTable
from bitso_archive.datasets.source_adapter import Segment, book_segments, book_trades
from bitso_archive.datasets.tables import (
    BOOK_CHANGES,
    BOOK_SNAPSHOTS,
    COVERAGE,
    QUOTES,
    TRADES,
    TableOptions,
    table_object,
)
from bitso_archive.datasets.trades import SCHEMA as TRADES_SCHEMA
from bitso_archive.datasets.trades import trades_file
from bitso_archive.snapshots import Corrupt
from bitso_archive.sources import Source
from bitso_format import iso_hour

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"

_BOOK_TABLES: dict[str, Callable[[TableOptions], BookTable]] = {
    BOOK_CHANGES: lambda _options: BookChangesTable(),
    BOOK_SNAPSHOTS: lambda options: BookSnapshotsTable(options.depth, options.every_ms),
    QUOTES: lambda _options: QuotesTable(),
    COVERAGE: lambda _options: CoverageTable(),
}


#: Each table's columns (``book`` and the time partitions come from the path).
SCHEMAS: dict[str, pa.Schema] = {
    TRADES: TRADES_SCHEMA,
    BOOK_CHANGES: BookChangesTable.schema,
    BOOK_SNAPSHOTS: BookSnapshotsTable.schema,
    QUOTES: QuotesTable.schema,
    COVERAGE: CoverageTable.schema,
}


@dataclass
class Built:
    """The rows of each table asked for, and the objects that could not be read."""

    tables: dict[str, ParquetRows]
    corrupt: list[Corrupt] = field(default_factory=list)


def build_tables(
    source: Source, book: str, start_ms: int, end_ms: int, options: TableOptions
) -> Built:
    """Every table of ``options.tables`` for ``book`` over ``[start_ms, end_ms)``."""
    built = Built({})
    walkers = {name: make(options) for name, make in _BOOK_TABLES.items() if name in options.tables}
    if walkers:
        _walk(book_segments(source, book, start_ms, end_ms, built.corrupt), list(walkers.values()))
    for name in options.tables:
        if name == TRADES:
            built.tables[name] = trades_file(
                book_trades(source, book, start_ms, end_ms, built.corrupt)
            )
        else:
            built.tables[name] = walkers[name].out
    return built


def _walk(segments: Iterable[Segment], tables: list[BookTable]) -> None:
    """Feed every table from one walk through the segments (see :mod:`.base` for the order)."""
    book = LevelBook()
    for segment in segments:
        opening = segment.opening
        if opening is not None:
            book.reset(opening.levels)
            book.local_ms, book.exchange_ms = opening.local_ms, opening.exchange_ms
            book.sequence = opening.sequence
        for table in tables:
            table.segment(segment, book)
        for step in segment.steps:
            for table in tables:
                table.before(step.local_ms, book)
            for change in step.changes:
                book.apply(change)
            book.local_ms, book.exchange_ms, book.sequence = (
                step.local_ms,
                step.exchange_ms,
                step.sequence,
            )
            for table in tables:
                table.step(step, book)
        for table in tables:
            table.close(segment, book)


@dataclass
class TableFile:
    """What became of one table of one book and hour."""

    table: str
    book: str
    hour_ms: int
    object: str
    status: str  # "written", "exists" (left alone) or "empty" (no rows: no file)
    rows: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "book": self.book,
            "hour": iso_hour(self.hour_ms),
            "object": self.object,
            "status": self.status,
            "rows": self.rows,
            "bytes": self.bytes,
        }


class TableSink(Protocol):
    """Where table files go."""

    #: Leave a file that exists alone (and skip building it): create-only.
    keeps_existing: bool

    def exists(self, name: str) -> bool: ...

    def write(self, name: str, data: bytes) -> bool:
        """Store ``data`` as ``name``; False when a create-only write found it there."""
        ...


class ArchiveSink:
    """The archive itself (``compact``): files are created, never replaced."""

    keeps_existing = True

    def __init__(self, source: Source) -> None:
        self.source = source

    def exists(self, name: str) -> bool:
        return bool(self.source.list_names(name))

    def write(self, name: str, data: bytes) -> bool:
        return self.source.write_new(name, data, PARQUET_CONTENT_TYPE)


class DirectorySink:
    """A local directory (``export``): each file is replaced whole (written beside, then
    renamed into place), so a failure never leaves a part of one."""

    keeps_existing = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def write(self, name: str, data: bytes) -> bool:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return True


@dataclass
class BookHourFiles:
    """The files of one book and hour, and what could not be read to make them."""

    files: list[TableFile]
    corrupt: list[Corrupt]


def write_book_hour(
    source: Source,
    book: str,
    hour_ms: int,
    span: tuple[int, int],
    options: TableOptions,
    sink: TableSink,
    root: str = "",
) -> BookHourFiles:
    """Build and write the tables of ``book`` over ``span`` (inside the hour of ``hour_ms``)
    as ``root/<table>/book=.../hour=HH/...``; with a create-only sink, a table whose file
    exists is neither built nor touched."""
    names = {table: table_object(table, book, hour_ms, root) for table in options.tables}
    files: dict[str, TableFile] = {}
    if sink.keeps_existing:
        for table, name in names.items():
            if sink.exists(name):
                files[table] = TableFile(table, book, hour_ms, name, "exists")
    todo = tuple(table for table in options.tables if table not in files)
    corrupt: list[Corrupt] = []
    if todo:
        wanted = TableOptions(todo, options.depth, options.every_ms)
        built = build_tables(source, book, span[0], span[1], wanted)
        corrupt = built.corrupt
        for table, rows in built.tables.items():
            data = rows.finish()
            outcome = TableFile(table, book, hour_ms, names[table], "empty", rows.rows)
            if data is not None:
                outcome.bytes = len(data)
                outcome.status = "written" if sink.write(names[table], data) else "exists"
            files[table] = outcome
    return BookHourFiles([files[table] for table in options.tables], corrupt)
