"""Read one book's streams back: its diff-orders merged across cuts and instances, its anchors
and its aggregated snapshots.

Every message is found by time: a stream object's folder is the hour its lines were received
in, whatever cut names it (a call's minute, or a shutdown's instant and instance); which part of
that hour it holds comes from its cut's record (``covers``). The objects are merged in sequence
order, a few at a time: a sequence stored by two instances (a rollout) is kept once, and a
diff's receipt is the earliest at which any instance received it or a later one (so merged
receipts never go back). A diffs object that cannot be read whole makes its span unknown (a lost
diff cannot be skipped safely), and so do the late receipts of a frozen instance
(:data:`FROZEN_BURST_MS`). Anchors are found through the run records' ``slot_uses``, never by
opening every snapshot.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bitso_archive.chain import MAX_ANCHOR_AGE_MS
from bitso_archive.cut_records import CutRecord, RecordIndex
from bitso_archive.orderbook import (
    BUY,
    FROZEN,
    NOT_RECORDED,
    SELL,
    AggregatedSnapshot,
    Anchor,
    Diff,
    OrderChange,
    RestingOrder,
    UnknownSpan,
)
from bitso_archive.snapshots import (
    Corrupt,
    CorruptError,
    Side,
    Snapshot,
    decode_body,
    iter_snapshots,
    list_snapshot_names,
    parse_snapshot,
    warn_corrupt,
)
from bitso_archive.sources import ObjectMissingError, Source
from bitso_archive.watched import Watched
from bitso_format import (
    DECIMAL_PATTERN,
    DIFF_ORDERS_CHANNEL,
    HOUR_MS,
    MINUTE_MS,
    SnapshotName,
    StreamName,
    floor_hour,
    floor_minute,
    iso_millis,
    parse_stream_line,
    parse_stream_name,
    stream_hour_dir,
)

#: Messages a frozen instance stamps this soon after it runs again may have come in while it
#: was frozen (the kernel kept them): their true receipt is anywhere from the freeze's start.
FROZEN_BURST_MS = 500
#: A diff is merged once no object that starts this much after it is still unread (two
#: instances' receipts of one message differ by less).
MERGE_MARGIN_MS = 5_000
#: A cut's objects without a record are taken to start this long before the cut is named.
UNRECORDED_CUT_SPAN_MS = 2 * MINUTE_MS
#: A shutdown record is looked for this long after its flush's objects are named.
SHUTDOWN_RECORD_AFTER_MS = 10_000

#: diff-orders statuses (`s`): `open` sets an order's amount, the others remove the order.
OPEN = "open"
GONE = frozenset({"cancelled", "completed"})


def stream_lines(data: bytes) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of each line of an NDJSON object (gzip or not)."""
    body = decode_body(data).strip()
    try:  # one parse of the whole object is several times faster than one per line
        parsed = json.loads(b"[" + body.replace(b"\n", b",") + b"]") if body else []
    except ValueError:
        parsed = None  # a bad line, or a blank one: find which, line by line
    if isinstance(parsed, list):
        yield from enumerate(parsed, start=1)
        return
    for number, raw in enumerate(body.split(b"\n"), start=1):
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


_DECIMALS: dict[str, Decimal] = {}
_DECIMALS_HELD = 50_000  # about 8 MB; then it starts again


def _decimal(value: Any, what: str) -> Decimal:
    """A price or amount as an exact Decimal; each distinct text is checked and converted once
    (a book's prices repeat in message after message)."""
    try:
        return _DECIMALS[value]
    except (KeyError, TypeError):
        held = Decimal(decimal_text(value, what))
        if len(_DECIMALS) >= _DECIMALS_HELD:
            _DECIMALS.clear()
        _DECIMALS[value] = held
        return held


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
    if side not in _SIDES or isinstance(side, bool):
        raise ValueError(f"side t {side!r} is not 0 (buy) or 1 (sell)")
    price = _decimal(order.get("r"), "rate r")
    if status == OPEN:
        return OrderChange(oid, side, price, _decimal(order.get("a"), "amount a"))
    if status in GONE:
        return OrderChange(oid, side, price, None)
    raise ValueError(f"status s {status!r} is not open, cancelled or completed")


_SIDES = (BUY, SELL)


def _diff_message(line: Any, book: str) -> tuple[int, int, list[Any], int | None]:
    """(receipt, sequence, payload, Bitso's ``sent`` when it has one) of one stored diff-orders
    line; ValueError if it is not."""
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
    sent = message.get("sent")
    sent_ms = sent if isinstance(sent, int) and not isinstance(sent, bool) else None
    return parsed.received_ms, sequence, payload, sent_ms


def parse_diffs(data: bytes, book: str) -> list[Diff]:
    """The diff-orders messages of one object, in order of receipt (receipt times made
    non-decreasing: the order of the lines is the order of receipt)."""
    diffs: list[Diff] = []
    append = diffs.append
    latest = 0
    collecting = gc.isenabled()
    gc.disable()  # thousands of small objects and no cycles: nothing for the collector to find
    try:
        for number, line in stream_lines(data):
            try:
                received_ms, sequence, payload, sent_ms = _diff_message(line, book)
                changes = tuple(map(_change, payload))
            except ValueError as exc:
                raise CorruptError(f"line {number}: {exc}") from None
            latest = max(latest, received_ms)
            append(Diff(sequence, latest, changes, sent_ms))
    finally:
        if collecting:
            gc.enable()
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
    return Anchor(snap.name, snap.sequence, snap.slot_ms, snap.received_ms, orders)


def aggregated_of(snap: Snapshot) -> AggregatedSnapshot:
    def levels(side: Side) -> tuple[tuple[Decimal, Decimal], ...]:
        return tuple(
            (Decimal(p), Decimal(a)) for p, a in zip(side.prices, side.amounts, strict=True)
        )

    return AggregatedSnapshot(
        snap.name,
        snap.sequence,
        snap.slot_ms,
        snap.received_ms,
        levels(snap.bids),
        levels(snap.asks),
    )


@dataclass(frozen=True, slots=True)
class DiffObject:
    """One stored diffs object: the part of its hour it holds (from its cut's record, else
    from its name) and the spans its instance was frozen in."""

    name: str
    lower_ms: int
    upper_ms: int
    instance: str | None
    frozen: tuple[tuple[int, int], ...]


def _object_key(name: str) -> tuple[str, str, int, int, str | None] | None:
    parsed = parse_stream_name(name)
    if parsed is None:
        return None
    return parsed.channel, parsed.book, parsed.hour_ms, parsed.cut_ms, parsed.instance


def cut_record(records: RecordIndex, obj: StreamName) -> CutRecord | None:
    """The run record (a call's cut) or shutdown record (a flush) of a stream object."""
    shutdown = obj.instance is not None
    # A flush's record is named by the instant it was made, its objects by when the cut was.
    for record in records.read(
        obj.cut_ms, obj.cut_ms + (SHUTDOWN_RECORD_AFTER_MS if shutdown else 1)
    ):
        if record.shutdown == shutdown and (not shutdown or record.instance == obj.instance):
            return record
    return None


def receipt_span(obj: StreamName, record: CutRecord | None) -> tuple[int, int]:
    """The receipts a stream object can hold: its cut's ``covers`` within its hour (a little
    earlier, for clocks), or without a record what its name allows."""
    hour_end = obj.hour_ms + HOUR_MS
    entry = record.channel(obj.book, obj.channel) if record else None
    if entry is not None and entry.covers is not None:
        return max(obj.hour_ms, entry.covers[0] - MERGE_MARGIN_MS), min(hour_end, entry.covers[1])
    named_end = obj.cut_ms + (MINUTE_MS if obj.instance is None else 1)
    lower = max(obj.hour_ms, obj.cut_ms - UNRECORDED_CUT_SPAN_MS)
    return lower, min(hour_end, named_end)


class BookStream:
    """One book's streams in a source: objects listed an hour at a time, records read once."""

    def __init__(self, source: Source, book: str, records: RecordIndex) -> None:
        self.source = source
        self.book = book
        self.records = records
        self.corrupt: list[Corrupt] = []
        #: Diffs stored by more than one instance (kept once), and diffs that came after a
        #: higher sequence was already merged (dropped: the chain saw a gap there).
        self.duplicates = 0
        self.late = 0
        self._objects: dict[int, list[StreamName]] = {}
        self._snapshots: dict[int, dict[int, SnapshotName]] = {}
        self._anchors: dict[int, Anchor | None] = {}

    # -- objects ------------------------------------------------------------------------------
    def objects(self, hour_ms: int) -> list[StreamName]:
        """This book's diffs objects received in the hour of ``hour_ms``."""
        hour_ms = floor_hour(hour_ms)
        if hour_ms not in self._objects:
            found = []
            for name in self.source.list_names(stream_hour_dir(DIFF_ORDERS_CHANNEL, hour_ms)):
                parsed = parse_stream_name(name)
                if parsed is not None and parsed.book == self.book:
                    found.append(parsed)
            self._objects[hour_ms] = found
        return self._objects[hour_ms]

    def present(self, name: str) -> bool:
        """Whether the object a record names (with or without the prefix) is stored."""
        key = _object_key(name)
        if key is None or key[1] != self.book or key[0] != DIFF_ORDERS_CHANNEL:
            return True  # not one of this book's diffs objects: not this reader's to judge
        return any(_object_key(o.name) == key for o in self.objects(key[2]))

    def _slice(self, obj: StreamName) -> DiffObject:
        record = cut_record(self.records, obj)
        lower, upper = receipt_span(obj, record)
        entry = record.channel(self.book, DIFF_ORDERS_CHANNEL) if record else None
        frozen = tuple(
            (u.start_ms, u.end_ms) for u in (entry.unwatched if entry else ()) if u.reason == FROZEN
        )
        return DiffObject(obj.name, lower, upper, record.instance if record else None, frozen)

    def _slices(self, start_ms: int, until_ms: int) -> Iterator[DiffObject]:
        for hour_ms in range(floor_hour(start_ms), until_ms + 1, HOUR_MS):
            slices = sorted(
                (self._slice(o) for o in self.objects(hour_ms)), key=lambda s: s.lower_ms
            )
            yield from (s for s in slices if s.upper_ms >= start_ms)

    def _load(self, piece: DiffObject, watched: Watched) -> list[Diff]:
        try:
            diffs = parse_diffs(self.source.read(piece.name), self.book)
        except (CorruptError, ObjectMissingError) as exc:
            reason = str(exc) if isinstance(exc, CorruptError) else "listed but gone when read"
            bad = Corrupt(piece.name, reason)
            warn_corrupt(bad)
            self.corrupt.append(bad)
            detail = f"the {DIFF_ORDERS_CHANNEL} object {piece.name} cannot be read: {reason}"
            watched.add(UnknownSpan(piece.lower_ms, piece.upper_ms, NOT_RECORDED, detail))
            return []
        if any(b.sequence < a.sequence for a, b in itertools.pairwise(diffs)):
            diffs.sort(key=lambda d: d.sequence)  # stable: receipts of one sequence stay in order
        return diffs

    def diffs(self, start_ms: int, until_ms: int, watched: Watched) -> Iterator[Diff]:
        """Every diff of the objects that hold receipts from ``start_ms`` (listing hours up to
        ``until_ms``), merged in sequence order; holes found on the way go to ``watched``."""
        return _Merge(self, self._slices(start_ms, until_ms), watched).run()

    # -- anchors and snapshots ----------------------------------------------------------------
    def _snapshot_name(self, slot_ms: int) -> SnapshotName | None:
        hour_ms = floor_hour(slot_ms)
        if hour_ms not in self._snapshots:
            names = list_snapshot_names(self.source, hour_ms, hour_ms + HOUR_MS, [self.book])
            self._snapshots[hour_ms] = {m.slot_ms: m for m in names}
        return self._snapshots[hour_ms].get(slot_ms)

    def anchor(self, slot_ms: int) -> Anchor | None:
        """The anchor fetched at ``slot_ms`` (None, and a warning, if it cannot be read)."""
        if slot_ms in self._anchors:
            return self._anchors[slot_ms]
        found: Anchor | None = None
        meta = self._snapshot_name(slot_ms)
        if meta is None:
            bad = Corrupt(
                f"{self.book} anchor at {iso_millis(slot_ms)}",
                "a run record names this anchor slot, but no snapshot of it is stored",
            )
            warn_corrupt(bad)
            self.corrupt.append(bad)
        else:
            try:
                snap = parse_snapshot(self.source.read(meta.name), meta)
                found = anchor_of(snap) if not snap.aggregate else None
            except (CorruptError, ObjectMissingError) as exc:
                bad = Corrupt(meta.name, str(exc) if str(exc) else "listed but gone when read")
                warn_corrupt(bad)
                self.corrupt.append(bad)
        self._anchors = {slot_ms: found}  # the walker holds what it needs; keep one
        return found

    def find_anchor(self, at_ms: int) -> Anchor | None:
        """The latest anchor received at or before ``at_ms`` (within MAX_ANCHOR_AGE_MS), found
        by walking back through the run records' slot uses."""
        for record in self.records.walk_back(
            floor_minute(at_ms) + MINUTE_MS, at_ms - MAX_ANCHOR_AGE_MS
        ):
            slots = sorted(
                (slot for book, slot in record.anchor_slots if book == self.book and slot <= at_ms),
                reverse=True,
            )
            for slot in slots:
                anchor = self.anchor(slot)
                if anchor is not None and anchor.received_ms <= at_ms:
                    return anchor
        return None

    def anchor_slots(self, start_ms: int, end_ms: int) -> list[int]:
        """The anchor slots of this book in ``[start_ms, end_ms)``, from the run records."""
        return sorted(
            slot
            for record in self.records.read(floor_minute(start_ms), end_ms)
            for book, slot in record.anchor_slots
            if book == self.book and start_ms <= slot < end_ms
        )

    def aggregated(self, start_ms: int, end_ms: int) -> Iterator[AggregatedSnapshot]:
        """This book's aggregated snapshots with a slot in ``[start_ms, end_ms)``, in slot
        order (what the rebuilt book is checked against)."""
        metas = list_snapshot_names(self.source, start_ms, end_ms, [self.book])
        for item in iter_snapshots(self.source, metas):
            if isinstance(item, Corrupt):
                self.corrupt.append(item)
            elif item.aggregate:
                yield aggregated_of(item)


def _late_receipts(source: DiffObject, start: int, end: int, until: int) -> UnknownSpan:
    who = f"instance {source.instance}" if source.instance else "the collector"
    detail = (
        f"{who} did not run from {iso_millis(start)} to {iso_millis(end)}: messages it "
        f"received then were stamped late, and some of them ({source.name}) are the only copy "
        f"stored, so the book is not placed in time before {iso_millis(until)}"
    )
    return UnknownSpan(start, until, FROZEN, detail)


class _Cursor:
    __slots__ = ("diffs", "index", "source")

    def __init__(self, diffs: list[Diff], source: DiffObject) -> None:
        self.diffs = diffs
        self.index = 0
        self.source = source


class _Merge:
    """The k-way merge of one book's objects by sequence, opening each object only when a
    diff of it could come next (its receipts start within MERGE_MARGIN_MS of the merge)."""

    def __init__(self, stream: BookStream, slices: Iterator[DiffObject], watched: Watched):
        self.stream = stream
        self.slices = slices
        self.watched = watched
        self.pending = next(slices, None)
        self.heap: list[tuple[int, int, int]] = []  # (sequence, received, cursor) of heads
        self.cursors: dict[int, _Cursor] = {}
        self.numbers = itertools.count()
        self.last_sequence = -1
        self.last_ms = 0
        self.burst_reach: dict[tuple[str, int], int] = {}

    def _open(self) -> None:
        while self.pending is not None and (
            not self.heap or self.heap[0][1] > self.pending.lower_ms - MERGE_MARGIN_MS
        ):
            loaded = self.stream._load(self.pending, self.watched)
            if loaded:
                number = next(self.numbers)
                self.cursors[number] = _Cursor(loaded, self.pending)
                heapq.heappush(self.heap, (loaded[0].sequence, loaded[0].received_ms, number))
            self.pending = next(self.slices, None)

    def _take(self, diff: Diff, effective: int, source: DiffObject) -> Diff | None:
        """The diff as merged (None when a copy or a later sequence came first)."""
        if diff.sequence <= self.last_sequence:
            if diff.sequence == self.last_sequence:
                self.stream.duplicates += 1
            else:
                self.stream.late += 1
            return None
        effective = max(effective, self.last_ms)
        for start, end in source.frozen:
            key = (source.name, start)
            reach = self.burst_reach.get(key, start)
            if end <= diff.received_ms < end + FROZEN_BURST_MS and effective > reach:
                self.burst_reach[key] = effective
                self.watched.add(_late_receipts(source, start, end, effective))
        self.last_sequence, self.last_ms = diff.sequence, effective
        return diff if effective == diff.received_ms else diff._replace(received_ms=effective)

    def run(self) -> Iterator[Diff]:
        heap, cursors = self.heap, self.cursors
        while True:
            self._open()
            if not heap:
                return
            if len(heap) == 1:
                # One object open: its diffs before the next one starts need no merging.
                _seq, _received, number = heap.pop()
                cursor = cursors[number]
                limit = self.pending.lower_ms - MERGE_MARGIN_MS if self.pending else None
                diffs, index = cursor.diffs, cursor.index
                while index < len(diffs) and (limit is None or diffs[index].received_ms <= limit):
                    diff = diffs[index]
                    index += 1
                    merged = self._take(diff, diff.received_ms, cursor.source)
                    if merged is not None:
                        yield merged
                cursor.index = index
            else:
                _seq, received, number = heapq.heappop(heap)
                cursor = cursors[number]
                diff = cursor.diffs[cursor.index]
                cursor.index += 1
                # Its receipt: the earliest of its own and of the later sequences at the heads.
                effective = min(received, *(entry[1] for entry in heap))
                merged = self._take(diff, effective, cursor.source)
                if merged is not None:
                    yield merged
            if cursor.index < len(cursor.diffs):
                head = cursor.diffs[cursor.index]
                heapq.heappush(heap, (head.sequence, head.received_ms, number))
            else:
                del cursors[number]
