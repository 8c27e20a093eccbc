"""``book`` and ``replay``: one book rebuilt from its streams at an instant, or at an interval.

Both read a minute at a time (its diffs object, anchors and snapshots), so memory is bounded by
one minute of diffs however long the range. An instant the archive cannot know is never
guessed: :func:`book_at` raises :class:`~bitso_archive.orderbook.UnknownInstantError`, and
:func:`replay` yields the instant with the span that explains it and no book.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitso_archive.layout import TimeLike, check_books, check_range, to_ms
from bitso_archive.orderbook import (
    AGGREGATED_DEPTH,
    BookView,
    MinuteBooks,
    UnknownInstantError,
    UnknownSpan,
)
from bitso_archive.output import TableOut, csv_rows, is_parquet
from bitso_archive.sources import SourceLike, open_source
from bitso_archive.streams import BookRecordings
from bitso_format import MINUTE_MS, floor_minute, iso_millis

#: One row per level: what ``replay`` writes, as CSV or Parquet.
REPLAY_COLUMNS = ("book", "at", "sequence", "side", "level", "price", "amount", "orders")
_PARQUET_BATCH_ROWS = 10_000  # rows held before they go out as one row group


def _book(book: str) -> str:
    checked = check_books([book])
    assert checked is not None
    return checked[0]


def book_at(
    source: SourceLike, book: str, at: TimeLike, depth: int | None = AGGREGATED_DEPTH
) -> BookView:
    """The book at ``at``, ``depth`` levels a side (all when None), best first."""
    recordings = BookRecordings(open_source(source), _book(book))
    at_ms = to_ms(at)
    recorded = recordings.minute(floor_minute(at_ms))
    return MinuteBooks(recorded.minute, recorded.spans).at(at_ms, depth)


@dataclass(frozen=True, slots=True)
class Instant:
    """One instant of a replay: its book, or the span that says why it is unknown."""

    at_ms: int
    view: BookView | None
    unknown: UnknownSpan | None


#: From this interval up, each row of a replay is the first instant of its interval that can be
#: known rather than the interval's start: a minute's start comes before the minute's first
#: anchor, so whole minutes alone would never be known.
FIRST_KNOWN_FROM_MS = MINUTE_MS


def replay(
    source: SourceLike,
    book: str,
    start: TimeLike,
    end: TimeLike,
    every_ms: int,
    depth: int | None = AGGREGATED_DEPTH,
) -> Iterator[Instant]:
    """The book at ``start``, ``start + every``, ... before ``end``, one minute read at a time;
    from ``FIRST_KNOWN_FROM_MS`` up, at the first known instant of each interval instead."""
    if every_ms <= 0:
        raise ValueError(f"the interval must be positive, not {every_ms} ms")
    minutes = _Minutes(BookRecordings(open_source(source), _book(book)), depth)
    start_ms, end_ms = check_range(start, end)
    for at_ms in range(start_ms, end_ms, every_ms):
        if every_ms < FIRST_KNOWN_FROM_MS:
            yield minutes.instant(at_ms)
        else:
            yield minutes.first_known(at_ms, min(at_ms + every_ms, end_ms))


class _Minutes:
    """The book at instants asked in increasing order, reading the minute that holds each."""

    def __init__(self, recordings: BookRecordings, depth: int | None) -> None:
        self._recordings = recordings
        self._depth = depth
        self._minute_ms: int | None = None
        self._books: MinuteBooks | None = None

    def instant(self, at_ms: int) -> Instant:
        minute_ms = floor_minute(at_ms)
        if self._books is None or minute_ms != self._minute_ms:
            recorded = self._recordings.minute(minute_ms)
            self._minute_ms, self._books = minute_ms, MinuteBooks(recorded.minute, recorded.spans)
        try:
            return Instant(at_ms, self._books.at(at_ms, self._depth), None)
        except UnknownInstantError as exc:
            return Instant(at_ms, None, exc.span)

    def first_known(self, start_ms: int, end_ms: int) -> Instant:
        """The book at the first instant of ``[start_ms, end_ms)`` that can be known; when none
        can, the unknown ``start_ms`` with the span that explains it."""
        first = instant = self.instant(start_ms)
        while instant.unknown is not None:
            at_ms = max(instant.unknown.end_ms, instant.at_ms + 1)  # past the unknown span
            if at_ms >= end_ms:
                return first
            instant = self.instant(at_ms)
        return instant


@dataclass
class ReplaySummary:
    """What a replay wrote, and the spans that held its unknown instants."""

    instants: int = 0
    known: int = 0
    rows: int = 0
    unknown: dict[UnknownSpan, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "instants": self.instants,
            "known": self.known,
            "unknown": self.instants - self.known,
            "rows": self.rows,
            "unknown_spans": [
                {**span.as_dict(), "instants": count} for span, count in self.unknown.items()
            ],
        }


Row = tuple[str, int, int, str, int, str, str, int]


def _rows(view: BookView) -> Iterator[Row]:
    for side, levels in (("bid", view.bids), ("ask", view.asks)):
        for number, level in enumerate(levels):
            price, amount = format(level.price, "f"), format(level.amount, "f")
            yield view.book, view.at_ms, view.sequence, side, number, price, amount, level.orders


def write_replay(instants: Iterable[Instant], out: TableOut) -> ReplaySummary:
    """Write every known instant's levels to ``out`` (a ``.csv`` or ``.parquet`` file, or CSV
    on a text stream)."""
    summary = ReplaySummary()

    def rows() -> Iterator[Row]:
        for instant in instants:
            summary.instants += 1
            if instant.view is None:
                assert instant.unknown is not None
                summary.unknown[instant.unknown] = summary.unknown.get(instant.unknown, 0) + 1
                continue
            summary.known += 1
            for row in _rows(instant.view):
                summary.rows += 1
                yield row

    if is_parquet(out):
        _write_parquet(rows(), out)
    else:
        with csv_rows(out) as writer:
            writer.writerow(REPLAY_COLUMNS)
            writer.writerows((r[0], iso_millis(r[1]), *r[2:]) for r in rows())
    return summary


def _write_parquet(rows: Iterator[Row], path: Path) -> None:
    import pyarrow as pa  # noqa: PLC0415 - only Parquet needs it
    import pyarrow.parquet as pq  # noqa: PLC0415

    from bitso_archive.table import DECIMAL, TIMESTAMP, to_decimal  # noqa: PLC0415

    schema = pa.schema(
        [
            pa.field("book", pa.string(), nullable=False),
            pa.field("at", TIMESTAMP, nullable=False),
            pa.field("sequence", pa.int64(), nullable=False),
            pa.field("side", pa.string(), nullable=False),
            pa.field("level", pa.int32(), nullable=False),
            pa.field("price", DECIMAL, nullable=False),
            pa.field("amount", DECIMAL, nullable=False),
            pa.field("orders", pa.int32(), nullable=False),
        ]
    )
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        batch: list[Row] = []

        def flush() -> None:
            columns: list[tuple[Any, ...]] = (
                list(zip(*batch, strict=True)) if batch else [() for _ in REPLAY_COLUMNS]
            )
            arrays = [
                pa.array(columns[0], pa.string()),
                pa.array(columns[1], TIMESTAMP),
                pa.array(columns[2], pa.int64()),
                pa.array(columns[3], pa.string()),
                pa.array(columns[4], pa.int32()),
                to_decimal(columns[5], "price"),
                to_decimal(columns[6], "amount"),
                pa.array(columns[7], pa.int32()),
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            batch.clear()

        for row in rows:
            batch.append(row)
            if len(batch) >= _PARQUET_BATCH_ROWS:
                flush()
        flush()
