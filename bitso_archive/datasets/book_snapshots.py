"""``book_snapshots``: the top ``depth`` levels a side at every ``every`` instant (whole multiples
of it since the epoch, on the receipt clock, like ``book --at``) that the archive can know: only
inside known spans, so an unknown span has no row. ``level`` 0 is the best."""

from __future__ import annotations

import pyarrow as pa

from bitso_archive.datasets.base import BookTable, column, decimal, timestamp
from bitso_archive.datasets.levelbook import LevelBook
from bitso_archive.datasets.source_adapter import ASK, BID, Segment


class BookSnapshotsTable(BookTable):
    schema = pa.schema(
        [
            timestamp("timestamp"),
            column("sequence", pa.int64()),
            column("side", pa.string()),
            column("level", pa.int32()),
            decimal("price"),
            decimal("amount"),
            column("orders", pa.int32(), nullable=True),
        ]
    )

    def __init__(self, depth: int, every_ms: int) -> None:
        super().__init__()
        self.depth = depth
        self.every_ms = every_ms
        self._next = 0
        self._end = 0  # nothing to take until a known segment opens

    def segment(self, segment: Segment, book: LevelBook) -> None:
        span = segment.span
        if not span.known or segment.opening is None:
            self._end = 0
            return
        self._next = -(-span.start_ms // self.every_ms) * self.every_ms
        self._end = span.end_ms

    def before(self, before_ms: int, book: LevelBook) -> None:
        stop = min(before_ms, self._end)
        add, depth = self.out.add, self.depth
        while self._next < stop:
            at, sequence = self._next, book.sequence
            for side in (BID, ASK):
                for number, level in enumerate(book.top(side, depth)):
                    add((at, sequence, side, number, level.price, level.amount, level.orders))
            self._next += self.every_ms

    def close(self, segment: Segment, book: LevelBook) -> None:
        self.before(self._end, book)
        self._end = 0
