"""Find, read and validate snapshots (standard library only).

A snapshot object that is not JSON, is truncated gzip, or does not follow
schemas/snapshot.schema.json is *corrupt*: it is reported (a warning naming it,
and a :class:`Corrupt` entry in the result) and skipped, never fatal.
"""

from __future__ import annotations

import decimal
import gzip
import itertools
import json
import logging
import re
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypeVar

from bitso_archive.layout import hours_in_range
from bitso_archive.sources import ObjectMissingError, Source
from bitso_format import (
    BOOK_PATTERN,
    DECIMAL_PATTERN,
    SNAPSHOT_FIELDS,
    SNAPSHOT_SCHEMA_VERSION,
    UTC_MILLIS_PATTERN,
    SnapshotName,
    hour_dir,
    parse_iso_millis,
    parse_run_record_name,
    parse_snapshot_name,
    runs_hour_dir,
)

log = logging.getLogger("bitso_archive")

GZIP_MAGIC = b"\x1f\x8b"
_REQUIRED = frozenset(SNAPSHOT_FIELDS)
_LEVEL_KEYS = frozenset({"price", "amount", "oid"})
# One regex call checks every price (or amount) of a side at once: they are joined by "\n".
_DECIMALS_RE = re.compile(f"(?:{DECIMAL_PATTERN.pattern}\n)*")

T = TypeVar("T")


class CorruptError(ValueError):
    """Raised by :func:`parse_snapshot` with the reason an object is unusable."""


@dataclass(frozen=True, slots=True)
class Corrupt:
    """An object that was skipped, and why."""

    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"object": self.name, "reason": self.reason}


@dataclass(slots=True)
class Side:
    """The levels of one side, best first, as the exact strings Bitso sent."""

    prices: list[str]
    amounts: list[str]
    oids: list[str | None] | None  # None when no level carries an oid
    #: Orders at each price, once an order-level side is summed by price (:func:`price_levels`);
    #: None for a book Bitso aggregated, which does not say.
    orders: list[int] | None = None


@dataclass(slots=True)
class Snapshot:
    """One validated snapshot."""

    name: str
    book: str
    slot_ms: int
    received_ms: int
    sequence: int
    aggregate: bool
    bids: Side
    asks: Side


#: Exact sums of amounts: a sum that would need rounding raises instead.
_EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])


def _summed(side: Side, bids: bool) -> Side:
    totals: dict[Decimal, list[Any]] = {}
    for price, amount in zip(side.prices, side.amounts, strict=True):
        level = totals.get(Decimal(price))
        if level is None:
            totals[Decimal(price)] = [price, Decimal(amount), 1]
        else:
            level[1] = _EXACT.add(level[1], Decimal(amount))
            level[2] += 1
    ordered = sorted(totals.items(), reverse=bids)
    return Side(
        prices=[text for _p, (text, _a, _n) in ordered],
        amounts=[format(amount, "f") for _p, (_t, amount, _n) in ordered],
        oids=None,
        orders=[count for _p, (_t, _a, count) in ordered],
    )


def price_levels(snap: Snapshot) -> Snapshot:
    """The snapshot as price levels. An order-level book (``"aggregate": false``: an anchor,
    or any snapshot with ``BITSO_AGGREGATE=false``) has one entry per order: its orders are
    summed by price, best first, each level with its order count, so a level is never one
    order. An aggregated book is returned as it is."""
    if snap.aggregate:
        return snap
    return replace(snap, bids=_summed(snap.bids, bids=True), asks=_summed(snap.asks, bids=False))


def decode_body(data: bytes) -> bytes:
    """Gunzip ``data`` if it starts with the gzip magic bytes (whatever its name says)."""
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise CorruptError(f"bad gzip ({exc or type(exc).__name__})") from None
    return data


def load_json_object(data: bytes) -> dict[str, Any]:
    body = decode_body(data)
    try:
        obj = json.loads(body)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise CorruptError(f"not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CorruptError("not a JSON object")
    return obj


def _side(levels: Any, what: str) -> Side:
    if not isinstance(levels, list):
        raise CorruptError(f"{what} is not a list")
    try:
        prices = [lv["price"] for lv in levels]
        amounts = [lv["amount"] for lv in levels]
    except (KeyError, TypeError):
        raise CorruptError(f"{what}: every level needs price and amount") from None
    oids: list[str | None] | None = None
    for i, lv in enumerate(levels):
        if len(lv) != 2:
            if not lv.keys() <= _LEVEL_KEYS:
                extra = sorted(set(lv) - _LEVEL_KEYS)
                raise CorruptError(f"{what}[{i}]: unexpected fields {extra}")
            if "oid" in lv:
                oid = lv["oid"]
                if not isinstance(oid, str) or not oid:
                    raise CorruptError(f"{what}[{i}]: oid must be a non-empty string")
                if oids is None:
                    oids = [None] * len(levels)
                oids[i] = oid
    for label, values in (("price", prices), ("amount", amounts)):
        try:
            joined = "\n".join(values) + "\n" if values else ""
        except TypeError:
            raise CorruptError(f"{what}: every {label} must be a string") from None
        # A value holding "\n" would pass as two decimals: the count catches it.
        if _DECIMALS_RE.fullmatch(joined) is None or joined.count("\n") != len(values):
            bad = next(v for v in values if "\n" in v or _DECIMALS_RE.fullmatch(v + "\n") is None)
            raise CorruptError(f"{what}: {label} {bad!r} is not a decimal string")
    return Side(prices, amounts, oids)


def _utc_millis(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if not isinstance(value, str) or UTC_MILLIS_PATTERN.fullmatch(value) is None:
        raise CorruptError(f"{key} {value!r} is not a UTC time like 2026-11-24T10:15:07.118Z")
    try:
        return parse_iso_millis(value)
    except ValueError:
        raise CorruptError(f"{key} {value!r} is not a valid time") from None


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_snapshot(data: bytes, meta: SnapshotName) -> Snapshot:
    """Validate one stored snapshot against the schema and its own object name."""
    obj = load_json_object(data)
    keys = obj.keys()
    if keys != _REQUIRED:
        missing = sorted(_REQUIRED - keys)
        extra = sorted(keys - _REQUIRED)
        parts = ([f"missing {missing}"] if missing else []) + (
            [f"unexpected {extra}"] if extra else []
        )
        raise CorruptError("wrong schema: " + ", ".join(parts))
    if obj["schema_version"] != SNAPSHOT_SCHEMA_VERSION or isinstance(obj["schema_version"], bool):
        raise CorruptError(
            f"schema_version {obj['schema_version']!r} is not {SNAPSHOT_SCHEMA_VERSION}"
        )
    book = obj["book"]
    if not isinstance(book, str) or BOOK_PATTERN.fullmatch(book) is None:
        raise CorruptError(f"book {book!r} is not a book name")
    if book != meta.book:
        raise CorruptError(f"book {book!r} does not match the object name")
    slot_ms = _utc_millis(obj, "slot")
    if slot_ms != meta.slot_ms:
        raise CorruptError(f"slot {obj['slot']} does not match the object name")
    _utc_millis(obj, "requested_at")
    received_ms = _utc_millis(obj, "received_at")
    latency = obj["latency_ms"]
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise CorruptError(f"latency_ms {latency!r} is not a non-negative number")
    sequence = obj["sequence"]
    if not _non_negative_int(sequence):
        raise CorruptError(f"sequence {sequence!r} is not a non-negative integer")
    updated_at = obj["updated_at"]
    if not isinstance(updated_at, str) or not updated_at:
        raise CorruptError("updated_at is not a non-empty string")
    aggregate = obj["aggregate"]
    if not isinstance(aggregate, bool):
        raise CorruptError(f"aggregate {aggregate!r} is not a boolean")
    bids = _side(obj["bids"], "bids")
    asks = _side(obj["asks"], "asks")
    return Snapshot(meta.name, book, slot_ms, received_ms, sequence, aggregate, bids, asks)


def list_snapshot_names(
    source: Source,
    start_ms: int,
    end_ms: int,
    books: Iterable[str] | None = None,
) -> list[SnapshotName]:
    """Snapshot objects with a slot in ``[start_ms, end_ms)``, listing one prefix per hour.

    Only the ``YYYY/MM/DD/HH/`` prefixes of the hours in range are listed. When an
    object exists both as ``.json`` and ``.json.gz`` the first (by name) is kept.
    """
    wanted = set(books) if books is not None else None
    found: dict[tuple[str, int], SnapshotName] = {}
    for hour_ms in hours_in_range(start_ms, end_ms):
        for name in source.list_names(hour_dir(hour_ms)):
            meta = parse_snapshot_name(name)
            if meta is None or not start_ms <= meta.slot_ms < end_ms:
                continue
            if wanted is not None and meta.book not in wanted:
                continue
            found.setdefault((meta.book, meta.slot_ms), meta)
    return [found[key] for key in sorted(found)]


def read_objects(
    source: Source,
    names: Sequence[str],
    work: Callable[[str, bytes], T],
    *,
    progress: bool = False,
    desc: str = "reading",
) -> Iterator[tuple[str, T | None, Corrupt | None]]:
    """Read ``names`` (concurrently when the source benefits) and apply ``work`` to each.

    Yields ``(name, result, None)`` or ``(name, None, Corrupt)`` in input order, as
    they come: at most a few reads per worker run ahead of the consumer, so memory
    stays bounded however long the range.
    """

    def one(name: str) -> tuple[str, T | None, Corrupt | None]:
        try:
            return name, work(name, source.read(name)), None
        except CorruptError as exc:
            return name, None, Corrupt(name, str(exc))
        except ObjectMissingError:
            return name, None, Corrupt(name, "listed but gone when read")

    bar = _progress_bar(len(names), desc, progress)
    workers = max(1, min(source.max_workers, len(names)))
    try:
        if workers == 1:
            for name in names:
                item = one(name)
                bar.update(1)
                yield item
            return
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bitso-archive")
        try:
            pending: deque[Future[tuple[str, T | None, Corrupt | None]]] = deque()
            todo = iter(names)
            for name in itertools.islice(todo, workers * 4):
                pending.append(pool.submit(one, name))
            while pending:
                item = pending.popleft().result()
                for name in itertools.islice(todo, 1):
                    pending.append(pool.submit(one, name))
                bar.update(1)
                yield item
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def iter_snapshots(
    source: Source,
    metas: Sequence[SnapshotName],
    *,
    progress: bool = False,
) -> Iterator[Snapshot | Corrupt]:
    """Validated snapshots in the order of ``metas``; a corrupt one is warned about and
    yielded as a :class:`Corrupt` in its place."""
    by_name = {m.name: m for m in metas}
    items = read_objects(
        source,
        [m.name for m in metas],
        lambda name, data: parse_snapshot(data, by_name[name]),
        progress=progress,
        desc="snapshots",
    )
    for _name, snap, bad in items:
        if bad is not None:
            warn_corrupt(bad)
            yield bad
        elif snap is not None:
            yield snap


def warn_corrupt(bad: Corrupt) -> None:
    log.warning("skipping corrupt object %s: %s", bad.name, bad.reason)


@dataclass(frozen=True, slots=True)
class RunRecordFields:
    """The fields of a run record the gap report uses."""

    name: str
    minute_ms: int
    status: str | None
    books: list[str] | None
    requests_per_minute: int | None
    throttled: int
    lost: list[dict[str, str]]
    failures: list[dict[str, str]]
    #: The collector's pace around the call (``back_off``): how the minute was paced (full,
    #: backing_off, recovering) and the configured full pace; None in records without it.
    pace_mode: str | None = None
    full_requests_per_minute: int | None = None


def _entries(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, dict) and isinstance(item.get("book"), str):
            out.append({k: str(v) for k, v in item.items() if k in ("book", "slot", "reason")})
    return out


def parse_run_record(data: bytes, name: str, minute_ms: int) -> RunRecordFields:
    obj = load_json_object(data)
    books = obj.get("books")
    if books is not None and (
        not isinstance(books, list)
        or not books
        or not all(isinstance(b, str) and BOOK_PATTERN.fullmatch(b) for b in books)
    ):
        raise CorruptError(f"books {books!r} is not a list of book names")
    rpm = obj.get("requests_per_minute")
    if rpm is not None and (not _non_negative_int(rpm) or rpm == 0):
        raise CorruptError(f"requests_per_minute {rpm!r} is not a positive integer")
    throttled = obj.get("throttled", 0)
    if not _non_negative_int(throttled):
        raise CorruptError(f"throttled {throttled!r} is not a count")
    status = obj.get("status")
    back_off = obj.get("back_off")
    if back_off is not None and not isinstance(back_off, dict):
        raise CorruptError(f"back_off {back_off!r} is not an object")
    back_off = back_off or {}
    mode = back_off.get("mode")
    full = back_off.get("full_requests_per_minute")
    return RunRecordFields(
        name=name,
        minute_ms=minute_ms,
        status=status if isinstance(status, str) else None,
        books=books,
        requests_per_minute=rpm,
        throttled=throttled,
        lost=_entries(obj.get("lost")),
        failures=_entries(obj.get("failures")),
        pace_mode=mode if isinstance(mode, str) else None,
        full_requests_per_minute=full if _non_negative_int(full) and full else None,
    )


def read_run_records(
    source: Source, start_ms: int, end_ms: int, *, progress: bool = False
) -> tuple[dict[int, RunRecordFields], list[Corrupt]]:
    """Run records of the minutes overlapping ``[start_ms, end_ms)``, by minute (epoch ms)."""
    minutes: dict[str, int] = {}
    first_minute = start_ms - start_ms % 60_000
    for hour_ms in hours_in_range(start_ms, end_ms):
        for name in source.list_names(runs_hour_dir(hour_ms)):
            minute_ms = parse_run_record_name(name)
            if minute_ms is not None and first_minute <= minute_ms < end_ms:
                minutes[name] = minute_ms
    records: dict[int, RunRecordFields] = {}
    corrupt: list[Corrupt] = []
    items = read_objects(
        source,
        sorted(minutes),
        lambda name, data: parse_run_record(data, name, minutes[name]),
        progress=progress,
        desc="run records",
    )
    for _name, record, bad in items:
        if bad is not None:
            warn_corrupt(bad)
            corrupt.append(bad)
        elif record is not None:
            records[record.minute_ms] = record
    return records, corrupt


class _NoBar:
    def update(self, n: int) -> None:
        return

    def close(self) -> None:
        return


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr when asked for, stderr is a terminal and the read is long."""
    if not enabled or total < 50 or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="obj", file=sys.stderr, leave=False)
