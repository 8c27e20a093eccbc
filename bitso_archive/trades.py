"""``trades``: every trade once, streamed and backfilled merged by trade id, in trade id order.

A trade is selected by when it was made (``created_at``), not by the object that holds it.
Objects are found by time: each holds what one cut of one instance received in one hour (its
folder), and its cut's record says which part of the hour. A range is read with the objects
that received anything from a minute before it to :data:`LATE_RECEIPT_MS` after it, those whose
instance was frozen during it (what it received then was stamped late), and the trades
backfills recorded within :data:`BACKFILL_LOOKAHEAD_MS` after it (a backfill after a break
recovers what the socket missed). Every instance's copy is merged: a trade streamed by two
instances (a rollout) is kept once, with its earliest receipt, and a trade both streamed and
backfilled keeps its streamed line, which carries the order ids and the value.

Streamed trades (Bitso's Trades channel) give ``i, a, r, v, mo, to, t, x``; backfilled ones
(``GET /v3/trades/``) give ``tid, book, created_at, amount, price, maker_side`` only, so their
``value``, ``maker_order`` and ``taker_order`` are empty and ``taker_side`` is the opposite of
``maker_side``. A line that cannot be read is reported and skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bitso_archive.cut_records import RecordIndex
from bitso_archive.layout import TimeLike, check_books, check_range, hours_in_range
from bitso_archive.output import TableOut, csv_rows, is_parquet
from bitso_archive.snapshots import Corrupt, CorruptError, read_objects, warn_corrupt
from bitso_archive.sources import Source, SourceLike, open_source
from bitso_archive.stream_reader import cut_record, decimal_text, receipt_span, stream_lines
from bitso_format import (
    FROZEN_REASON,
    HOUR_MS,
    MINUTE_MS,
    REST_SOURCE,
    TRADES_CHANNEL,
    StreamName,
    floor_hour,
    iso_millis,
    parse_rfc3339,
    parse_stream_line,
    parse_stream_name,
    stream_hour_dir,
)

#: `source` of a trade the socket delivered (backfilled ones carry bitso_format.REST_SOURCE).
STREAM_SOURCE = "stream"
#: How far past a range a backfill that recovers its last trades is looked for.
BACKFILL_LOOKAHEAD_MS = HOUR_MS
#: How long after a range its last trades may still be received (latency, a short freeze).
LATE_RECEIPT_MS = 2 * MINUTE_MS
TRADE_COLUMNS = (
    "tid",
    "book",
    "created_at",
    "received_at",
    "price",
    "amount",
    "value",
    "taker_side",
    "maker_order",
    "taker_order",
    "source",
)
#: Bitso's taker side codes in the Trades channel (`t`).
_TAKER_SIDES = {0: "buy", 1: "sell"}
#: The taker of a trade is on the other side of its maker (`maker_side` from REST).
_TAKER_OF_MAKER = {"buy": "sell", "sell": "buy"}


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade, exact decimal strings as Bitso sent them."""

    tid: int
    book: str
    created_ms: int
    received_ms: int
    price: str
    amount: str
    value: str | None
    taker_side: str
    maker_order: str | None
    taker_order: str | None
    source: str

    def row(self) -> tuple[Any, ...]:
        return (
            self.tid,
            self.book,
            iso_millis(self.created_ms),
            iso_millis(self.received_ms),
            self.price,
            self.amount,
            self.value,
            self.taker_side,
            self.maker_order,
            self.taker_order,
            self.source,
        )


def _id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} {value!r} is not a trade id")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} {value!r} is not a non-empty string")
    return value


def _streamed(entry: Any, book: str, received_ms: int) -> Trade:
    if not isinstance(entry, dict):
        raise ValueError("a payload entry is not an object")
    side = entry.get("t")
    if isinstance(side, bool) or side not in _TAKER_SIDES:
        raise ValueError(f"taker side t {side!r} is not 0 (buy) or 1 (sell)")
    created = entry.get("x")
    if isinstance(created, bool) or not isinstance(created, int):
        raise ValueError(f"creation time x {created!r} is not epoch milliseconds")
    return Trade(
        tid=_id(entry.get("i"), "trade id i"),
        book=book,
        created_ms=created,
        received_ms=received_ms,
        price=decimal_text(entry.get("r"), "rate r"),
        amount=decimal_text(entry.get("a"), "amount a"),
        value=decimal_text(entry.get("v"), "value v"),
        taker_side=_TAKER_SIDES[side],
        maker_order=_text(entry.get("mo"), "maker order mo"),
        taker_order=_text(entry.get("to"), "taker order to"),
        source=STREAM_SOURCE,
    )


def _backfilled(trade: dict[str, Any], book: str, received_ms: int) -> Trade:
    if trade.get("book") != book:
        raise ValueError(f"book {trade.get('book')!r} is not {book}")
    maker_side = trade.get("maker_side")
    if maker_side not in _TAKER_OF_MAKER:
        raise ValueError(f"maker_side {maker_side!r} is not buy or sell")
    created_at = trade.get("created_at")
    if not isinstance(created_at, str):
        raise ValueError(f"created_at {created_at!r} is not a time")
    return Trade(
        tid=_id(trade.get("tid"), "tid"),
        book=book,
        created_ms=parse_rfc3339(created_at),
        received_ms=received_ms,
        price=decimal_text(trade.get("price"), "price"),
        amount=decimal_text(trade.get("amount"), "amount"),
        value=None,
        taker_side=_TAKER_OF_MAKER[maker_side],
        maker_order=None,
        taker_order=None,
        source=REST_SOURCE,
    )


@dataclass
class ParsedTrades:
    trades: list[Trade]
    corrupt: list[Corrupt]


def parse_trades(data: bytes, name: str, book: str) -> ParsedTrades:
    """The trades of one trades object; a line that cannot be read is reported and skipped."""
    trades: list[Trade] = []
    corrupt: list[Corrupt] = []
    try:
        for number, line in stream_lines(data):
            try:
                parsed = parse_stream_line(line)
                if parsed.trade is not None:
                    trades.append(_backfilled(parsed.trade, book, parsed.received_ms))
                    continue
                message = parsed.message
                assert message is not None
                if message.get("type") != TRADES_CHANNEL or message.get("book") != book:
                    raise ValueError(f"not a {TRADES_CHANNEL} message of {book}")
                payload = message.get("payload")
                if not isinstance(payload, list):
                    raise ValueError("payload is not a list")
                trades.extend(_streamed(e, book, parsed.received_ms) for e in payload)
            except ValueError as exc:
                corrupt.append(Corrupt(f"{name} line {number}", str(exc)))
    except CorruptError as exc:
        corrupt.append(Corrupt(name, str(exc)))
    return ParsedTrades(trades, corrupt)


@dataclass
class TradesResult:
    """What ``trades`` read: how many trades, duplicates dropped, lines skipped."""

    trades: int = 0
    duplicates: int = 0
    objects: int = 0
    books: set[str] = field(default_factory=set)
    corrupt: list[Corrupt] = field(default_factory=list)


def _objects_by_book(source: Source, hour_ms: int) -> dict[str, list[StreamName]]:
    found: dict[str, list[StreamName]] = {}
    for name in source.list_names(stream_hour_dir(TRADES_CHANNEL, hour_ms)):
        parsed = parse_stream_name(name)
        if parsed is not None and parsed.channel == TRADES_CHANNEL:
            found.setdefault(parsed.book, []).append(parsed)
    return found


class _Listing:
    """Trades objects by book, each hour listed once, each cut's record read once."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.records = RecordIndex(source)
        self._hours: dict[int, dict[str, list[StreamName]]] = {}

    def hour(self, hour_ms: int) -> dict[str, list[StreamName]]:
        if hour_ms not in self._hours:
            self._hours[hour_ms] = _objects_by_book(self.source, hour_ms)
        return self._hours[hour_ms]

    def _wanted(self, obj: StreamName, start_ms: int, end_ms: int) -> bool:
        record = cut_record(self.records, obj)
        lower, upper = receipt_span(obj, record)
        if lower <= end_ms + LATE_RECEIPT_MS and upper >= start_ms - MINUTE_MS:
            return True
        entry = record.channel(obj.book, TRADES_CHANNEL) if record else None
        if entry is None:
            return False
        frozen_during = any(
            u.reason == FROZEN_REASON and u.start_ms < end_ms and u.end_ms > start_ms
            for u in entry.unwatched
        )
        return frozen_during or (bool(entry.backfilled) and obj.cut_ms >= start_ms)

    def names(self, book: str, start_ms: int, end_ms: int) -> list[str]:
        """The objects that may hold trades of ``book`` made in ``[start_ms, end_ms)``."""
        first = floor_hour(start_ms - MINUTE_MS)
        return [
            obj.name
            for hour_ms in range(first, end_ms + BACKFILL_LOOKAHEAD_MS, HOUR_MS)
            for obj in sorted(self.hour(hour_ms).get(book, []), key=lambda o: o.name)
            if self._wanted(obj, start_ms, end_ms)
        ]

    def books(self, start_ms: int, end_ms: int) -> set[str]:
        found: set[str] = set()
        for hour_ms in hours_in_range(start_ms, end_ms):
            found.update(self.hour(hour_ms))
        return found


def _better(held: Trade, trade: Trade) -> bool:
    """Whether ``trade`` is the copy to keep: streamed over backfilled, then the earliest."""
    if (held.source == STREAM_SOURCE) != (trade.source == STREAM_SOURCE):
        return trade.source == STREAM_SOURCE
    return trade.received_ms < held.received_ms


def _hour_trades(
    listing: _Listing, book: str, hour_start: int, hour_end: int, result: TradesResult
) -> list[Trade]:
    names = listing.names(book, hour_start, hour_end)
    kept: dict[int, Trade] = {}
    items = read_objects(listing.source, names, lambda name, data: parse_trades(data, name, book))
    for _name, parsed, bad in items:
        result.objects += 1
        if bad is not None:
            warn_corrupt(bad)
            result.corrupt.append(bad)
            continue
        assert parsed is not None
        for skipped in parsed.corrupt:
            warn_corrupt(skipped)
        result.corrupt.extend(parsed.corrupt)
        for trade in parsed.trades:
            if not hour_start <= trade.created_ms < hour_end:
                continue
            held = kept.get(trade.tid)
            if held is None:
                kept[trade.tid] = trade
                continue
            result.duplicates += 1
            if _better(held, trade):
                kept[trade.tid] = trade
    return list(kept.values())


def iter_trades(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    books: Iterable[str] | None = None,
    result: TradesResult | None = None,
) -> Iterator[list[Trade]]:
    """The trades made in ``[start, end)``, an hour at a time, each hour in (tid, book) order."""
    src = open_source(source)
    start_ms, end_ms = check_range(start, end)
    wanted = check_books(books)
    result = result if result is not None else TradesResult()
    listing = _Listing(src)
    chosen = (
        sorted(wanted)
        if wanted is not None
        else sorted(listing.books(start_ms - MINUTE_MS, end_ms))
    )
    for hour_ms in hours_in_range(start_ms, end_ms):
        hour_start, hour_end = max(start_ms, hour_ms), min(end_ms, hour_ms + HOUR_MS)
        trades: list[Trade] = []
        for book in chosen:
            found = _hour_trades(listing, book, hour_start, hour_end, result)
            if found:
                result.books.add(book)
            trades.extend(found)
        trades.sort(key=lambda t: (t.tid, t.book))
        result.trades += len(trades)
        yield trades


def trades_schema() -> Any:
    """The Arrow schema of ``trades --out F.parquet``."""
    import pyarrow as pa  # noqa: PLC0415

    from bitso_archive.table import DECIMAL, TIMESTAMP  # noqa: PLC0415

    fields = [
        pa.field("tid", pa.int64(), nullable=False),
        pa.field("book", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP, nullable=False),
        pa.field("received_at", TIMESTAMP, nullable=False),
        pa.field("price", DECIMAL, nullable=False),
        pa.field("amount", DECIMAL, nullable=False),
        pa.field("value", DECIMAL, nullable=True),
        pa.field("taker_side", pa.string(), nullable=False),
        pa.field("maker_order", pa.string(), nullable=True),
        pa.field("taker_order", pa.string(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
    ]
    return pa.schema(fields)


def trades_table(trades: list[Trade]) -> Any:
    """An Arrow table of ``trades`` with exact decimal128(38, 9) prices, amounts and values."""
    import pyarrow as pa  # noqa: PLC0415

    from bitso_archive.table import TIMESTAMP, to_decimal  # noqa: PLC0415

    names = [f"{t.book} trade {t.tid}" for t in trades]
    columns: dict[str, Any] = {
        "tid": pa.array([t.tid for t in trades], pa.int64()),
        "book": pa.array([t.book for t in trades], pa.string()),
        "created_at": pa.array([t.created_ms for t in trades], TIMESTAMP),
        "received_at": pa.array([t.received_ms for t in trades], TIMESTAMP),
        "price": to_decimal([t.price for t in trades], "price", names),
        "amount": to_decimal([t.amount for t in trades], "amount", names),
        "value": to_decimal([t.value for t in trades], "value", names),
        "taker_side": pa.array([t.taker_side for t in trades], pa.string()),
        "maker_order": pa.array([t.maker_order for t in trades], pa.string()),
        "taker_order": pa.array([t.taker_order for t in trades], pa.string()),
        "source": pa.array([t.source for t in trades], pa.string()),
    }
    schema = trades_schema()
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def write_trades(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    out: TableOut,
    books: Iterable[str] | None = None,
) -> TradesResult:
    """Write the trades made in ``[start, end)`` to ``out`` (a ``.csv`` or ``.parquet`` file,
    or CSV on a text stream)."""
    result = TradesResult()
    chunks = iter_trades(source, start, end, books, result)
    if is_parquet(out):
        import pyarrow.parquet as pq  # noqa: PLC0415

        with pq.ParquetWriter(out, trades_schema(), compression="zstd") as writer:
            for chunk in chunks:
                writer.write_table(trades_table(chunk))
        return result
    with csv_rows(out) as writer_csv:
        writer_csv.writerow(TRADE_COLUMNS)
        for chunk in chunks:
            writer_csv.writerows(trade.row() for trade in chunk)
    return result
