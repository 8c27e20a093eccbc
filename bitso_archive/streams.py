"""Read what a call recorded of one book and minute: its diffs, anchors and aggregated snapshots.

The stream objects are named and laid out by :mod:`bitso_format` (one gzip NDJSON object per
channel, book and minute); snapshots are read with :mod:`bitso_archive.snapshots`. A diffs
object that cannot be read whole makes its minute unknown (a lost diff cannot be skipped
safely); the reason is kept, and warned about like any corrupt object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bitso_archive.orderbook import (
    BUY,
    SELL,
    AggregatedSnapshot,
    Anchor,
    Diff,
    Minute,
    OrderChange,
    RestingOrder,
    Span,
    coverage,
    not_recorded,
)
from bitso_archive.snapshots import (
    Corrupt,
    CorruptError,
    Side,
    Snapshot,
    decode_body,
    iter_snapshots,
    list_snapshot_names,
    warn_corrupt,
)
from bitso_archive.sources import ObjectMissingError, Source
from bitso_archive.stream_records import (
    EMPTY,
    StreamRecord,
    parse_stream_record,
    run_record_minutes,
)
from bitso_format import (
    DECIMAL_PATTERN,
    DIFF_ORDERS_CHANNEL,
    HOUR_MS,
    MINUTE_MS,
    SnapshotName,
    floor_hour,
    iso_minute,
    parse_stream_line,
    parse_stream_name,
    run_record_name,
    stream_hour_dir,
    stream_name,
)

#: diff-orders statuses (`s`): `open` sets an order's amount, the others remove the order.
OPEN = "open"
GONE = frozenset({"cancelled", "completed"})


def stream_lines(data: bytes) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of each line of an NDJSON object (gzip or not)."""
    for number, raw in enumerate(decode_body(data).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except ValueError as exc:
            raise CorruptError(f"line {number}: not JSON ({exc})") from None


def decimal_text(value: Any, what: str) -> str:
    """``value`` when it is a decimal string as Bitso sends them; ValueError naming ``what``."""
    if not isinstance(value, str) or DECIMAL_PATTERN.fullmatch(value) is None:
        raise ValueError(f"{what} {value!r} is not a decimal string")
    return value


def _decimal(value: Any, what: str) -> Decimal:
    return Decimal(decimal_text(value, what))


def _sequence(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    return None


def _change(order: Any) -> OrderChange:
    if not isinstance(order, dict):
        raise ValueError("a payload entry is not an object")
    oid, side, status = order.get("o"), order.get("t"), order.get("s")
    if not isinstance(oid, str) or not oid:
        raise ValueError(f"order id o {oid!r} is not a non-empty string")
    if side not in (BUY, SELL) or isinstance(side, bool):
        raise ValueError(f"side t {side!r} is not 0 (buy) or 1 (sell)")
    price = _decimal(order.get("r"), "rate r")
    if status == OPEN:
        return OrderChange(oid, side, price, _decimal(order.get("a"), "amount a"))
    if status in GONE:
        return OrderChange(oid, side, price, None)
    raise ValueError(f"status s {status!r} is not open, cancelled or completed")


def parse_diffs(data: bytes, book: str) -> list[Diff]:
    """The diff-orders messages of one object, in order of receipt (receipt times made
    non-decreasing: the order of the lines is the order of receipt)."""
    diffs: list[Diff] = []
    latest = 0
    for number, line in stream_lines(data):
        try:
            parsed = parse_stream_line(line)
            message = parsed.message
            if message is None:
                raise ValueError("a diff-orders object holds WebSocket messages only")
            if message.get("type") != DIFF_ORDERS_CHANNEL or message.get("book") != book:
                raise ValueError(f"not a {DIFF_ORDERS_CHANNEL} message of {book}")
            sequence = _sequence(message.get("sequence"))
            if sequence is None:
                raise ValueError(f"sequence {message.get('sequence')!r} is not a count")
            payload = message.get("payload")
            if not isinstance(payload, list):
                raise ValueError("payload is not a list")
            changes = tuple(_change(order) for order in payload)
        except ValueError as exc:
            raise CorruptError(f"line {number}: {exc}") from None
        latest = max(latest, parsed.received_ms)
        sent = message.get("sent")
        sent_ms = sent if isinstance(sent, int) and not isinstance(sent, bool) else None
        diffs.append(Diff(sequence, latest, changes, sent_ms))
    return diffs


def _orders(side: Side, code: int, what: str) -> Iterator[RestingOrder]:
    if side.oids is None or any(oid is None for oid in side.oids):
        raise CorruptError(f"{what}: an order-level level has no oid")
    for oid, price, amount in zip(side.oids, side.prices, side.amounts, strict=True):
        assert oid is not None
        yield RestingOrder(oid, code, Decimal(price), Decimal(amount))


def anchor_of(snap: Snapshot) -> Anchor:
    """An ``aggregate=false`` snapshot as the order-level book it holds."""
    orders = (*_orders(snap.bids, BUY, "bids"), *_orders(snap.asks, SELL, "asks"))
    return Anchor(snap.name, snap.sequence, snap.received_ms, orders)


def aggregated_of(snap: Snapshot) -> AggregatedSnapshot:
    def levels(side: Side) -> tuple[tuple[Decimal, Decimal], ...]:
        return tuple(
            (Decimal(p), Decimal(a)) for p, a in zip(side.prices, side.amounts, strict=True)
        )

    return AggregatedSnapshot(
        snap.name, snap.sequence, snap.received_ms, levels(snap.bids), levels(snap.asks)
    )


@dataclass
class RecordedMinute:
    """One book and minute as recorded: its spans, and the aggregated snapshots to check."""

    minute: Minute
    spans: list[Span]
    aggregated: list[AggregatedSnapshot]
    diff_object: str | None  # None when there is none (or it could not be read)
    corrupt: list[Corrupt] = field(default_factory=list)


class BookRecordings:
    """One book's recordings in a source, read a minute at a time (each hour listed once)."""

    def __init__(self, source: Source, book: str) -> None:
        self.source = source
        self.book = book
        self._hour: int | None = None
        self._snapshots: dict[int, list[SnapshotName]] = {}
        self._diff_objects: set[int] = set()
        self._run_records: set[int] = set()

    def _list_hour(self, hour_ms: int) -> None:
        if self._hour == hour_ms:
            return
        self._hour = hour_ms
        self._snapshots = {}
        for meta in list_snapshot_names(self.source, hour_ms, hour_ms + HOUR_MS, [self.book]):
            minute = meta.slot_ms - meta.slot_ms % MINUTE_MS
            self._snapshots.setdefault(minute, []).append(meta)
        self._run_records = set(
            run_record_minutes(self.source, hour_ms, hour_ms + HOUR_MS).values()
        )
        self._diff_objects = set()
        for name in self.source.list_names(stream_hour_dir(DIFF_ORDERS_CHANNEL, hour_ms)):
            parsed = parse_stream_name(name)
            if parsed and parsed.book == self.book and parsed.channel == DIFF_ORDERS_CHANNEL:
                self._diff_objects.add(parsed.minute_ms)

    def _record(self, minute_ms: int) -> StreamRecord:
        name = run_record_name("", minute_ms)
        if minute_ms not in self._run_records:
            return EMPTY
        try:
            return parse_stream_record(self.source.read(name))
        except (CorruptError, ObjectMissingError) as exc:
            # Without it no outage is known: the sequence alone then says what was lost.
            reason = str(exc) if isinstance(exc, CorruptError) else "listed but gone when read"
            warn_corrupt(Corrupt(name, reason))
            return EMPTY

    def minute(self, minute_ms: int, record: StreamRecord | None = None) -> RecordedMinute:
        """Read the minute: its diffs object, anchors and aggregated snapshots, and (unless
        given) its run record, for the outages of its socket."""
        self._list_hour(floor_hour(minute_ms))
        if record is None:
            record = self._record(minute_ms)
        anchors: list[Anchor] = []
        aggregated: list[AggregatedSnapshot] = []
        corrupt: list[Corrupt] = []
        for item in iter_snapshots(self.source, self._snapshots.get(minute_ms, [])):
            if isinstance(item, Corrupt):
                corrupt.append(item)
            elif item.aggregate:
                aggregated.append(aggregated_of(item))
            else:
                try:
                    anchors.append(anchor_of(item))
                except CorruptError as exc:
                    bad = Corrupt(item.name, str(exc))
                    warn_corrupt(bad)
                    corrupt.append(bad)
        name = stream_name("", DIFF_ORDERS_CHANNEL, self.book, minute_ms)
        where = f"{self.book} in {iso_minute(minute_ms)}"
        diffs: list[Diff] = []
        hole = None
        if minute_ms not in self._diff_objects:
            hole = not_recorded(minute_ms, f"no {DIFF_ORDERS_CHANNEL} object of {where}")
        else:
            try:
                diffs = parse_diffs(self.source.read(name), self.book)
            except (CorruptError, ObjectMissingError) as exc:
                reason = str(exc) if isinstance(exc, CorruptError) else "listed but gone when read"
                bad = Corrupt(name, reason)
                warn_corrupt(bad)
                corrupt.append(bad)
                detail = f"the {DIFF_ORDERS_CHANNEL} object {name} of {where} cannot be read"
                hole = not_recorded(minute_ms, f"{detail}: {reason}")
        disconnects = tuple(at for at, _reason in record.disconnects)
        minute = Minute(self.book, minute_ms, diffs, anchors, disconnects)
        spans: list[Span] = [hole] if hole else coverage(minute)
        return RecordedMinute(minute, spans, aggregated, None if hole else name, corrupt)
