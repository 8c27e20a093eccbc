"""``book_changes``: the book level by level, incremental. A segment that can be followed opens
with an ``is_snapshot`` block (the whole book at its first instant, one row a level), then one row
per level each change touched, ``amount`` the level's new total (0 removes it). Applying the rows
in order (``local_timestamp``, ``sequence``) from the block up to a time inside a known span gives
the book at that time. ``source`` says whether the streams or REST snapshots gave the rows."""

from __future__ import annotations

import pyarrow as pa

from bitso_archive.datasets.base import BookTable, column, decimal, timestamp
from bitso_archive.datasets.levelbook import LevelBook
from bitso_archive.datasets.source_adapter import BookStep, Segment


class BookChangesTable(BookTable):
    schema = pa.schema(
        [
            timestamp("timestamp", nullable=True),
            timestamp("local_timestamp"),
            column("sequence", pa.int64()),
            column("is_snapshot", pa.bool_()),
            column("side", pa.string()),
            decimal("price"),
            decimal("amount"),
            column("orders", pa.int32(), nullable=True),
            column("source", pa.string()),
        ]
    )

    def __init__(self) -> None:
        super().__init__()
        self._source = ""

    def segment(self, segment: Segment, book: LevelBook) -> None:
        self._source = segment.source
        opening = segment.opening
        if opening is None:
            return
        add, source = self.out.add, segment.source
        for level in opening.levels:
            add(
                (
                    opening.exchange_ms,
                    opening.local_ms,
                    opening.sequence,
                    True,
                    level.side,
                    level.price,
                    level.amount,
                    level.orders,
                    source,
                )
            )

    def step(self, step: BookStep, book: LevelBook) -> None:
        add, source = self.out.add, self._source
        for level in step.changes:
            add(
                (
                    step.exchange_ms,
                    step.local_ms,
                    step.sequence,
                    False,
                    level.side,
                    level.price,
                    level.amount,
                    level.orders,
                    source,
                )
            )
