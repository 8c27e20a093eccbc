"""``coverage``: the known and unknown spans of each book and hour, so that no query mistakes a
hole for a quiet market. Known spans are followed from the streams; an unknown one says why
(the reader's reason: before the first anchor, a sequence gap, an outage, nothing recorded,
only REST snapshots, ...) and ``detail`` explains it in words."""

from __future__ import annotations

import pyarrow as pa

from bitso_archive.datasets.base import BookTable, column, timestamp
from bitso_archive.datasets.levelbook import LevelBook
from bitso_archive.datasets.source_adapter import Segment


class CoverageTable(BookTable):
    schema = pa.schema(
        [
            timestamp("start"),
            timestamp("end"),
            column("known", pa.bool_()),
            column("reason", pa.string()),
            column("detail", pa.string()),
        ]
    )

    def segment(self, segment: Segment, book: LevelBook) -> None:
        span = segment.span
        self.out.add((span.start_ms, span.end_ms, span.known, span.reason, span.detail))
