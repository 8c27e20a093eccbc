"""The one place the datasets read the archive: what the reader knows of a book over a range.

Every table is built from three things this module asks the reader for, per book and range:

- **segments**, in time order and covering the range: each a span of time that is known or
  unknown (with the reader's reason), and, where the book can be followed, the book at the
  segment's first instant (:class:`BookState`) and every change after it, level by level
  (:class:`BookStep`). Hours with diffs follow the streams (an anchor and the diffs its chain
  applies); hours with none fall back to the REST snapshots, one step per snapshot with the
  levels that changed since the one before (their span stays unknown: between two snapshots
  the book is not known).
- **trades**, every trade once (the reader merges streamed and backfilled ones).
- the **books** that have anything recorded in the range.

Only this module imports the reader's stream internals (:mod:`bitso_archive.streams`,
:mod:`bitso_archive.orderbook`, :mod:`bitso_archive.trades`); the tables see the plain types
below, so when the reader changes how it chains the streams, only this module changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from bitso_archive.layout import hours_in_range, minutes_in_range
from bitso_archive.orderbook import BUY, SELL, Diff, KnownSpan, Level, OrderBook
from bitso_archive.snapshots import (
    Corrupt,
    Snapshot,
    iter_snapshots,
    list_snapshot_names,
    price_levels,
)
from bitso_archive.sources import Source
from bitso_archive.streams import BookRecordings
from bitso_archive.trades import TradesResult, iter_trades
from bitso_format import (
    DIFF_ORDERS_CHANNEL,
    HOUR_MS,
    REST_SOURCE,
    STREAM_CHANNELS,
    iso_millis,
    parse_stream_name,
    stream_hour_dir,
)

BID = "bid"
ASK = "ask"
#: `source` of what the streams gave (REST's is bitso_format.REST_SOURCE).
STREAM_SOURCE = "stream"
#: `reason` of a known span: followed from an anchor through the diffs of its chain.
KNOWN_FROM_STREAM = "stream"
#: `reason` of an hour without diffs: only REST snapshots sample the book.
REST_SNAPSHOTS_ONLY = "rest_snapshots"
#: `reason` of an hour with neither diffs nor snapshots of the book.
NOTHING_RECORDED = "not_recorded"

_SIDE_NAMES = {BUY: BID, SELL: ASK}


class LevelChange(NamedTuple):
    """One price level as it is after a change: ``amount`` 0 (and ``orders`` 0) means gone."""

    side: str
    price: Decimal
    amount: Decimal
    orders: int | None  # None: not known (a book Bitso aggregated does not count orders)


class BookStep(NamedTuple):
    """One change of the book: the levels it changed, when it was received and sent."""

    local_ms: int
    exchange_ms: int | None
    sequence: int
    changes: tuple[LevelChange, ...]


@dataclass(frozen=True, slots=True)
class BookState:
    """The whole book at ``local_ms``: every level, bids best first, then asks best first."""

    local_ms: int
    exchange_ms: int | None
    sequence: int
    levels: tuple[LevelChange, ...]


@dataclass(frozen=True, slots=True)
class Span:
    """``[start_ms, end_ms)`` of one book: known, or unknown and why."""

    start_ms: int
    end_ms: int
    known: bool
    reason: str
    detail: str


@dataclass
class Segment:
    """A span, and (when the book can be followed through it) its opening book and steps.

    ``steps`` is lazy: consume it before asking for the next segment."""

    span: Span
    source: str
    opening: BookState | None = None
    steps: Iterable[BookStep] = field(default_factory=tuple)


class TradeRecord(NamedTuple):
    """One trade, exact decimal strings as Bitso sent them."""

    tid: int
    exchange_ms: int
    local_ms: int
    price: str
    amount: str
    value: str | None
    taker_side: str
    maker_order: str | None
    taker_order: str | None
    source: str


def _levels(book: OrderBook) -> tuple[LevelChange, ...]:
    return tuple(
        LevelChange(_SIDE_NAMES[side], level.price, level.amount, level.orders)
        for side in (BUY, SELL)
        for level in book.side(side)
    )


def _change(side: int, price: Decimal, level: Level | None) -> LevelChange:
    if level is None:
        return LevelChange(_SIDE_NAMES[side], price, Decimal(0), 0)
    return LevelChange(_SIDE_NAMES[side], price, level.amount, level.orders)


def _has_diffs(source: Source, book: str, hour_ms: int) -> bool:
    for name in source.list_names(stream_hour_dir(DIFF_ORDERS_CHANNEL, hour_ms)):
        parsed = parse_stream_name(name)
        if parsed is not None and parsed.book == book:
            return True
    return False


def books_with_data(source: Source, start_ms: int, end_ms: int) -> list[str]:
    """Every book with a snapshot, diffs or trades recorded in ``[start_ms, end_ms)``."""
    found = {meta.book for meta in list_snapshot_names(source, start_ms, end_ms)}
    for hour_ms in hours_in_range(start_ms, end_ms):
        for channel in STREAM_CHANNELS:
            for name in source.list_names(stream_hour_dir(channel, hour_ms)):
                parsed = parse_stream_name(name)
                if parsed is not None:
                    found.add(parsed.book)
    return sorted(found)


def book_segments(
    source: Source, book: str, start_ms: int, end_ms: int, corrupt: list[Corrupt] | None = None
) -> Iterator[Segment]:
    """The segments of ``book`` covering ``[start_ms, end_ms)`` in time order, an hour at a
    time: from the streams where the hour has diffs, else from its REST snapshots."""
    recordings = BookRecordings(source, book)
    skipped = corrupt if corrupt is not None else []
    for hour_ms in hours_in_range(start_ms, end_ms):
        lo, hi = max(start_ms, hour_ms), min(end_ms, hour_ms + HOUR_MS)
        if _has_diffs(source, book, hour_ms):
            yield from _stream_segments(recordings, lo, hi, skipped)
        else:
            yield from _rest_segments(source, book, lo, hi, skipped)


def _stream_segments(
    recordings: BookRecordings, lo: int, hi: int, corrupt: list[Corrupt]
) -> Iterator[Segment]:
    for minute_ms in minutes_in_range(lo, hi):
        recorded = recordings.minute(minute_ms)
        corrupt.extend(recorded.corrupt)
        for span in recorded.spans:
            start, end = max(span.start_ms, lo), min(span.end_ms, hi)
            if start >= end:
                continue
            if not isinstance(span, KnownSpan):
                yield Segment(Span(start, end, False, span.reason, span.detail), STREAM_SOURCE)
                continue
            yield _known_segment(span, recorded.minute.diffs, start, end)


def _known_segment(span: KnownSpan, diffs: Sequence[Diff], start: int, end: int) -> Segment:
    """The book at ``start`` (the anchor and the diffs received by then), then every diff of
    the chain received before ``end``, as the levels it changed; when the span ends at its
    chain's last diff, that diff too (received at the first unknown instant, it is no less a
    change: the tables hold every diff the chain applies)."""
    chain = span.chain
    limit = end + 1 if end == span.end_ms == chain.known_until_ms else end
    anchor = chain.anchor
    book = OrderBook(anchor.orders)
    sequence, sent, index = anchor.sequence, None, 0
    while index < chain.end and diffs[index].received_ms <= start:
        diff = diffs[index]
        if diff.sequence > anchor.sequence:
            book.apply(diff)
            sequence, sent = diff.sequence, diff.sent_ms
        index += 1
    opening = BookState(start, sent, sequence, _levels(book))

    def steps(index: int = index) -> Iterator[BookStep]:
        while index < chain.end and diffs[index].received_ms < limit:
            diff = diffs[index]
            index += 1
            if diff.sequence <= anchor.sequence:
                continue  # already in the anchor
            changes = tuple(_change(*touched) for touched in book.apply_levels(diff))
            yield BookStep(diff.received_ms, diff.sent_ms, diff.sequence, changes)

    detail = f"from anchor {anchor.name} (sequence {anchor.sequence}) and the diffs after it"
    known = Span(start, end, True, KNOWN_FROM_STREAM, detail)
    return Segment(known, STREAM_SOURCE, opening, steps())


def _rest_segments(
    source: Source, book: str, lo: int, hi: int, corrupt: list[Corrupt]
) -> Iterator[Segment]:
    """An hour without diffs: its snapshots as one segment, unknown throughout (the book is
    sampled, not followed), each snapshot a step holding the levels that changed."""
    snapshots: list[Snapshot] = []
    for item in iter_snapshots(source, list_snapshot_names(source, lo, hi, [book])):
        if isinstance(item, Corrupt):
            corrupt.append(item)
        else:
            snapshots.append(price_levels(item))
    if not snapshots:
        detail = f"neither {DIFF_ORDERS_CHANNEL} nor snapshots of {book} were recorded"
        yield Segment(Span(lo, hi, False, NOTHING_RECORDED, detail), REST_SOURCE)
        return
    snapshots.sort(key=lambda snap: snap.received_ms)
    detail = (
        f"no {DIFF_ORDERS_CHANNEL} of {book} in this hour: {len(snapshots)} REST snapshots "
        f"sample the book (from {iso_millis(snapshots[0].received_ms)}), nothing follows it "
        "between them"
    )
    first = snapshots[0]
    opening = BookState(first.received_ms, None, first.sequence, _snapshot_levels(first))

    def steps() -> Iterator[BookStep]:
        held = {(c.side, c.price): c for c in opening.levels}
        for snap in snapshots[1:]:
            now = {(c.side, c.price): c for c in _snapshot_levels(snap)}
            gone = [
                LevelChange(side, price, Decimal(0), 0 if c.orders is not None else None)
                for (side, price), c in held.items()
                if (side, price) not in now
            ]
            changed = [c for key, c in now.items() if held.get(key) != c]
            held = now
            if gone or changed:
                yield BookStep(snap.received_ms, None, snap.sequence, (*gone, *changed))

    span = Span(lo, hi, False, REST_SNAPSHOTS_ONLY, detail)
    yield Segment(span, REST_SOURCE, opening, steps())


def _snapshot_levels(snap: Snapshot) -> tuple[LevelChange, ...]:
    return tuple(
        LevelChange(name, Decimal(price), Decimal(amount), orders)
        for name, side in ((BID, snap.bids), (ASK, snap.asks))
        for price, amount, orders in zip(
            side.prices,
            side.amounts,
            side.orders if side.orders is not None else [None] * len(side.prices),
            strict=True,
        )
    )


def book_trades(
    source: Source, book: str, start_ms: int, end_ms: int, corrupt: list[Corrupt] | None = None
) -> list[TradeRecord]:
    """Every trade of ``book`` made in ``[start_ms, end_ms)``, once, in trade id order."""
    read = TradesResult()
    trades = [
        TradeRecord(
            t.tid,
            t.created_ms,
            t.received_ms,
            t.price,
            t.amount,
            t.value,
            t.taker_side,
            t.maker_order,
            t.taker_order,
            t.source,
        )
        for chunk in iter_trades(source, start_ms, end_ms, [book], read)
        for t in chunk
    ]
    if corrupt is not None:
        corrupt.extend(read.corrupt)
    return trades
