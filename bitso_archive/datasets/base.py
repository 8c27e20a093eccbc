"""What every book table is: rows in a Parquet file, fed one segment and step at a time.

The driver (:mod:`bitso_archive.datasets.build`) walks a book's segments once and tells every
table what happens, in this order: a segment opens (its opening book already held), the book is
about to change at ``before_ms`` (so the book held until then is the book of every instant
before it), it changed (a step, already applied), the segment closes.
"""

from __future__ import annotations

import pyarrow as pa

from bitso_archive.datasets.levelbook import LevelBook
from bitso_archive.datasets.parquet import ParquetRows
from bitso_archive.datasets.source_adapter import BookStep, Segment
from bitso_archive.table import DECIMAL, TIMESTAMP


def column(name: str, kind: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable)


def decimal(name: str, nullable: bool = False) -> pa.Field:
    return column(name, DECIMAL, nullable)


def timestamp(name: str, nullable: bool = False) -> pa.Field:
    return column(name, TIMESTAMP, nullable)


class BookTable:
    """A table built from a book's segments; subclasses fill the hooks they need."""

    schema: pa.Schema

    def __init__(self) -> None:
        self.out = ParquetRows(self.schema)

    def segment(self, segment: Segment, book: LevelBook) -> None:
        """A segment opens; with an opening book, ``book`` holds it already."""

    def before(self, before_ms: int, book: LevelBook) -> None:
        """``book`` is the book of every instant of the segment before ``before_ms``."""

    def step(self, step: BookStep, book: LevelBook) -> None:
        """``book`` changed: ``step`` is applied."""

    def close(self, segment: Segment, book: LevelBook) -> None:
        """The segment ends."""
