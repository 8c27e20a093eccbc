"""The one place the datasets read the archive: what the reader knows of a book over a range.

Every table is built from three things this module asks the reader for, per book and range:

- **segments**, in time order and covering the range: each a span of time that is known or
  unknown (with the reader's reason), and, where the book can be followed, the book at the
  segment's first instant (:class:`BookState`) and every change after it, level by level
  (:class:`BookStep`). Hours the diffs tell (some were received, or a cut watched the
  channel) follow the continuous stream: the reader's walker
  (:func:`bitso_archive.replay.book_walker`) names the spans, and tells each change it makes to
  the book (:class:`bitso_archive.chain.ChainObserver`): each anchor's book as its chain starts,
  then each diff the chain applies. Other hours (streams off) fall back to the REST snapshots, one
  step per snapshot with the levels that changed since the one before (their span stays unknown:
  between two snapshots the book is not known).
- **trades**, every trade once (the reader merges streamed and backfilled ones).
- the **books** that have anything recorded in the range.

Only this module imports the reader's stream internals (:mod:`bitso_archive.chain`,
:mod:`bitso_archive.replay`, :mod:`bitso_archive.orderbook`, :mod:`bitso_archive.cut_records`,
:mod:`bitso_archive.trades`); the tables see the plain types below, so when the reader changes
how it chains the streams, only this module changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from bitso_archive.chain import Chain
from bitso_archive.cut_records import RecordIndex
from bitso_archive.layout import hours_in_range
from bitso_archive.orderbook import (
    BUY,
    NOT_RECORDED,
    SELL,
    SEQUENCE_GAP,
    Diff,
    KnownSpan,
    Level,
    OrderBook,
    UnknownSpan,
)
from bitso_archive.replay import book_walker
from bitso_archive.snapshots import (
    Corrupt,
    Snapshot,
    iter_snapshots,
    list_snapshot_names,
    price_levels,
)
from bitso_archive.sources import Source
from bitso_archive.trades import TradesResult, iter_trades
from bitso_format import (
    DIFF_ORDERS_CHANNEL,
    HOUR_MS,
    MINUTE_MS,
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
#: `reason` of a known span: followed from an anchor through the diffs of its chain. An
#: unknown span of an hour with diffs has the reader's reason (bitso_archive.orderbook:
#: before_first_anchor, sequence_gap, outage, frozen, instance_start, crash, not_recorded).
KNOWN_FROM_STREAM = "stream"
#: `reason` of an hour the diffs do not tell: only REST snapshots sample the book.
REST_SNAPSHOTS_ONLY = "rest_snapshots"
#: `reason` of an hour with neither diffs nor snapshots of the book (the reader's word for it).
NOTHING_RECORDED = NOT_RECORDED

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


def _change(side: int, price: Decimal, level: Level | None) -> LevelChange:
    if level is None:
        return LevelChange(_SIDE_NAMES[side], price, Decimal(0), 0)
    return LevelChange(_SIDE_NAMES[side], price, level.amount, level.orders)


#: A cut's record is named by its call's minute (or a flush's instant) and covers up to a
#: minute before it: the records that may cover an hour are named up to this long after it.
_RECORDS_AFTER_MS = 2 * MINUTE_MS


def _streamed(source: Source, book: str, hour_ms: int, lo: int, hi: int) -> bool:
    """Whether the diffs of ``book`` tell ``[lo, hi)``: some were received in its hour, or a
    cut watched the channel then (a quiet book: no diff, the book still known)."""
    for name in source.list_names(stream_hour_dir(DIFF_ORDERS_CHANNEL, hour_ms)):
        parsed = parse_stream_name(name)
        if parsed is not None and parsed.book == book:
            return True
    for record in RecordIndex(source, warn=False).read(lo, hi + _RECORDS_AFTER_MS):
        entry = record.channel(book, DIFF_ORDERS_CHANNEL)
        covers = entry.covers if entry is not None else None
        if covers is not None and covers[0] < hi and covers[1] > lo:
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
    time: from the streams where they tell the hour, else from its REST snapshots."""
    skipped = corrupt if corrupt is not None else []
    for hour_ms in hours_in_range(start_ms, end_ms):
        lo, hi = max(start_ms, hour_ms), min(end_ms, hour_ms + HOUR_MS)
        if _streamed(source, book, hour_ms, lo, hi):
            yield from _stream_segments(source, book, lo, hi, skipped)
        else:
            yield from _rest_segments(source, book, lo, hi, skipped)


class _ChainLog:
    """One chain as the walker made it: the book of its anchor (with the diffs received
    before it) as it stood after ``steps[:applied]``, and every diff it applied, as the levels
    that diff changed."""

    __slots__ = ("applied", "chain", "levels", "steps")

    def __init__(self, chain: Chain, book: OrderBook) -> None:
        self.chain = chain
        self.levels = {
            (_SIDE_NAMES[side], level.price): LevelChange(
                _SIDE_NAMES[side], level.price, level.amount, level.orders
            )
            for side in (BUY, SELL)
            for level in book.side(side)
        }
        self.steps: list[BookStep] = []
        self.applied = 0

    def book_at(self, at_ms: int) -> BookState:
        """The book at ``at_ms`` (not before the last asked): every step received by then."""
        steps, levels, index = self.steps, self.levels, self.applied
        while index < len(steps) and steps[index].local_ms <= at_ms:
            for change in steps[index].changes:
                if change.amount:
                    levels[change.side, change.price] = change
                else:
                    levels.pop((change.side, change.price), None)
            index += 1
        self.applied = index
        last = steps[index - 1] if index else None
        anchor = self.chain.anchor
        return BookState(
            at_ms,
            last.exchange_ms if last else None,
            last.sequence if last else anchor.sequence,
            _best_first(levels.values()),
        )

    def steps_until(self, limit_ms: int) -> Iterator[BookStep]:
        """The steps after the last book asked for, received before ``limit_ms``."""
        steps, index = self.steps, self.applied
        while index < len(steps) and steps[index].local_ms < limit_ms:
            yield steps[index]
            index += 1


def _best_first(levels: Iterable[LevelChange]) -> tuple[LevelChange, ...]:
    bids = sorted((lv for lv in levels if lv.side == BID), key=lambda lv: lv.price, reverse=True)
    asks = sorted((lv for lv in levels if lv.side == ASK), key=lambda lv: lv.price)
    return (*bids, *asks)


class _Recorder:
    """The walker's observer (:class:`bitso_archive.chain.ChainObserver`): every chain's log,
    by its anchor's name (what a known span names)."""

    def __init__(self) -> None:
        self.logs: dict[str, _ChainLog] = {}

    def started(self, chain: Chain, book: OrderBook) -> None:
        self.logs[chain.anchor.name] = _ChainLog(chain, book)

    def applied(
        self, chain: Chain, diff: Diff, levels: list[tuple[int, Decimal, Level | None]]
    ) -> None:
        changes = tuple(_change(*touched) for touched in levels)
        step = BookStep(diff.received_ms, diff.sent_ms, diff.sequence, changes)
        self.logs[chain.anchor.name].steps.append(step)


def _stream_segments(
    source: Source, book: str, lo: int, hi: int, corrupt: list[Corrupt]
) -> Iterator[Segment]:
    """``[lo, hi)`` walked once by the reader: its spans as it names them, each known one with
    the book at its start and every change of its chain until its end."""
    recorder = _Recorder()
    walker, stream = book_walker(source, book, lo, hi, observer=recorder)
    spans = walker.finish()
    corrupt.extend(stream.corrupt)
    for span, following in zip(spans, [*spans[1:], None], strict=True):
        if isinstance(span, UnknownSpan):
            unknown = Span(span.start_ms, span.end_ms, False, span.reason, span.detail)
            yield Segment(unknown, STREAM_SOURCE)
        else:
            gap_follows = isinstance(following, UnknownSpan) and following.reason == SEQUENCE_GAP
            yield _known_segment(recorder.logs[span.anchor], span, gap_follows)


def _known_segment(log: _ChainLog, span: KnownSpan, gap_follows: bool) -> Segment:
    """The book at the span's start (the anchor and every diff received by then), then every
    diff of the chain received before its end; when the span ends where its chain does (a
    sequence gap follows), the diffs received at that instant too (the last before the gap: no
    less a change, and the tables hold every diff the chain applies)."""
    end = log.chain.end
    ends_chain = gap_follows and end is not None and end.at_ms == span.end_ms
    limit = span.end_ms + 1 if ends_chain else span.end_ms
    opening = log.book_at(span.start_ms)
    detail = f"from anchor {span.anchor} (sequence {span.anchor_sequence}) and the diffs after it"
    known = Span(span.start_ms, span.end_ms, True, KNOWN_FROM_STREAM, detail)
    return Segment(known, STREAM_SOURCE, opening, log.steps_until(limit))


def _rest_segments(
    source: Source, book: str, lo: int, hi: int, corrupt: list[Corrupt]
) -> Iterator[Segment]:
    """An hour the diffs do not tell: its snapshots as one segment, unknown throughout (the
    book is sampled, not followed), each snapshot a step holding the levels that changed."""
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
