"""``book`` and ``replay``: one book rebuilt from its streams at an instant, or at an interval.

Both walk one book forward through the continuous stream (:mod:`bitso_archive.chain`): from
the latest anchor before the first instant (found by walking back through the run records'
slot uses), through the diffs of every cut and instance merged by sequence, reading a few
objects at a time, so memory is bounded by one anchor's book and a minute or two of diffs
however long the range. An instant the archive cannot know is never guessed:
:func:`book_at` raises :class:`~bitso_archive.orderbook.UnknownInstantError`, and
:func:`replay` yields the instant with the span that explains it and no book.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitso_archive.chain import ANCHOR_LOOKBACK_MS, AnchorFeed, BookWalker, ChainObserver
from bitso_archive.cut_records import RecordIndex
from bitso_archive.layout import TimeLike, check_books, check_range, to_ms
from bitso_archive.orderbook import (
    AGGREGATED_DEPTH,
    BookView,
    Diff,
    UnknownInstantError,
    UnknownSpan,
)
from bitso_archive.output import TableOut, csv_rows, is_parquet
from bitso_archive.sources import Source, SourceLike, open_source
from bitso_archive.stream_reader import BookStream
from bitso_archive.watched import watched_time
from bitso_format import DIFF_ORDERS_CHANNEL, HOUR_MS, MINUTE_MS, floor_minute, iso_millis

#: One row per level: what ``replay`` writes, as CSV or Parquet.
REPLAY_COLUMNS = ("book", "at", "sequence", "side", "level", "price", "amount", "orders")
_PARQUET_BATCH_ROWS = 10_000  # rows held before they go out as one row group
#: Records read around a range to name its holes (the cut before a hole and the one after).
RECORD_MARGIN_MS = 5 * MINUTE_MS
#: How far past a range the next diff and the next anchor are looked for.
LOOKAHEAD_MS = HOUR_MS


def _book(book: str) -> str:
    checked = check_books([book])
    assert checked is not None
    return checked[0]


def book_walker(
    source: Source,
    book: str,
    start_ms: int,
    end_ms: int,
    *,
    checked: bool = False,
    margin_ms: int = RECORD_MARGIN_MS,
    watch: Callable[[Iterator[Diff]], Iterator[Diff]] | None = None,
    observer: ChainObserver | None = None,
) -> tuple[BookWalker, BookStream]:
    """A walker of ``book`` over ``[start_ms, end_ms)``, starting from the latest anchor
    received at or before ``start_ms``; ``checked``: with the aggregated snapshots to check;
    ``watch`` sees every merged diff the walker takes, ``observer`` every change it makes to
    the book."""
    records = RecordIndex(source)
    stream = BookStream(source, book, records)
    first = stream.find_anchor(start_ms)
    lo = (first.slot_ms if first is not None else start_ms) - ANCHOR_LOOKBACK_MS
    read = records.read(floor_minute(lo) - margin_ms, end_ms + margin_ms)
    watched = watched_time(
        read, book, DIFF_ORDERS_CHANNEL, lo, end_ms + margin_ms, present=stream.present
    )
    # Every later anchor, those asked for before start_ms but received after it included.
    since = first.slot_ms + 1 if first is not None else start_ms - ANCHOR_LOOKBACK_MS
    slots = [first.slot_ms] if first is not None else []
    slots += stream.anchor_slots(since, end_ms + LOOKAHEAD_MS)
    diffs = stream.diffs(lo, end_ms + LOOKAHEAD_MS, watched)
    walker = BookWalker(
        book,
        watch(diffs) if watch is not None else diffs,
        AnchorFeed(slots, stream.anchor),
        watched,
        start_ms,
        end_ms,
        stream.aggregated(start_ms, end_ms) if checked else (),
        observer,
    )
    return walker, stream


def book_at(
    source: SourceLike, book: str, at: TimeLike, depth: int | None = AGGREGATED_DEPTH
) -> BookView:
    """The book at ``at``, ``depth`` levels a side (all when None), best first."""
    src, name, at_ms = open_source(source), _book(book), to_ms(at)
    walker, _stream = book_walker(src, name, at_ms, at_ms + 1)
    found = walker.at(at_ms, depth)
    if isinstance(found, UnknownSpan) and found.detail.startswith("after the last cut"):
        # Whether a later instance took over (a crash) shows only in later records.
        walker, _stream = book_walker(src, name, at_ms, at_ms + 1, margin_ms=LOOKAHEAD_MS)
        found = walker.at(at_ms, depth)
    if isinstance(found, UnknownSpan):
        raise UnknownInstantError(name, at_ms, found)
    return found


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
    """The book at ``start``, ``start + every``, ... before ``end``, walking forward once; from
    ``FIRST_KNOWN_FROM_MS`` up, at the first known instant of each interval instead."""
    if every_ms <= 0:
        raise ValueError(f"the interval must be positive, not {every_ms} ms")
    start_ms, end_ms = check_range(start, end)
    walker, _stream = book_walker(open_source(source), _book(book), start_ms, end_ms)

    def instant(at_ms: int) -> Instant:
        found = walker.at(at_ms, depth)
        if isinstance(found, UnknownSpan):
            return Instant(at_ms, None, found)
        return Instant(at_ms, found, None)

    for at_ms in range(start_ms, end_ms, every_ms):
        first = sample = instant(at_ms)
        if every_ms >= FIRST_KNOWN_FROM_MS:
            # The first instant of the interval that can be known: past each unknown span.
            interval_end = min(at_ms + every_ms, end_ms)
            while sample.unknown is not None:
                later = max(sample.unknown.end_ms, sample.at_ms + 1)
                if later >= interval_end:
                    sample = first
                    break
                sample = instant(later)
        yield sample


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
