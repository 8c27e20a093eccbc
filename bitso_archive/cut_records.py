"""What the run records and shutdown records say of the streams: who watched what, and when.

The instance holds the WebSocket across calls; each call cuts the stream at its end. Its run
record (``_runs/.../<minute>.json``) and an instance's shutdown record
(``_runs/.../<instant>-<instance>.shutdown.json``, its flush on SIGTERM) each carry the
``streams`` part of one cut: the instance, when the cut was made, and per book and channel
the receipt span the cut ``covers``, the spans inside it that were not watched
(``unwatched``: an outage, or the instance frozen), the objects stored and the counts. A run
record also carries ``slot_uses``: the slots that fetched an anchor (found here without opening
every snapshot) or a trades backfill (it stores no snapshot, so it is never a missing one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bitso_archive.layout import hours_in_range
from bitso_archive.snapshots import (
    Corrupt,
    CorruptError,
    load_json_object,
    read_objects,
    warn_corrupt,
)
from bitso_archive.sources import Source
from bitso_format import (
    BOOK_PATTERN,
    FROZEN_REASON,
    INSTANCE_PATTERN,
    OUTAGE_REASON,
    SLOT_USES,
    STREAM_CHANNELS,
    TRADES_BACKFILL_USE,
    iso_millis,
    parse_iso_millis,
    parse_run_record_name,
    parse_shutdown_record_name,
    runs_hour_dir,
)

#: The slot use of an order-level snapshot that anchors the diffs.
ANCHOR_USE = SLOT_USES[1]
_UNWATCHED_REASONS = frozenset({OUTAGE_REASON, FROZEN_REASON})


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _time(value: Any, what: str) -> int:
    try:
        return parse_iso_millis(value if isinstance(value, str) else "")
    except ValueError:
        raise CorruptError(
            f"{what} {value!r} is not a time like 2026-11-24T10:15:07.118Z"
        ) from None


def _optional_time(value: Any, what: str) -> int | None:
    return None if value is None else _time(value, what)


def _span(value: Any, what: str) -> tuple[int, int]:
    if not isinstance(value, dict):
        raise CorruptError(f"{what} is not {{from, to}}")
    start, end = _time(value.get("from"), f"{what}.from"), _time(value.get("to"), f"{what}.to")
    if end < start:
        raise CorruptError(f"{what} ends before it starts")
    return start, end


@dataclass(frozen=True, slots=True)
class UnwatchedSpan:
    """A span inside a cut's ``covers`` when its subscription was not watched, and why."""

    start_ms: int
    end_ms: int
    reason: str  # OUTAGE_REASON or FROZEN_REASON


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """What one cut says of one book and channel."""

    messages: int | None
    first_sequence: int | None
    last_sequence: int | None
    reconnects: int | None
    uncovered_ms: int | None
    backfilled: int | None
    sequence_gaps: tuple[tuple[int, int], ...]
    objects: tuple[str, ...]
    covers: tuple[int, int] | None  # the receipt span watched, None if never acknowledged
    first_received_ms: int | None
    last_received_ms: int | None
    continuous: bool
    unwatched: tuple[UnwatchedSpan, ...]

    def as_dict(self) -> dict[str, Any]:
        def iso(ms: int | None) -> str | None:
            return None if ms is None else iso_millis(ms)

        return {
            "messages": self.messages,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "reconnects": self.reconnects,
            "uncovered_ms": self.uncovered_ms,
            "backfilled": self.backfilled,
            "sequence_gaps": [{"after": a, "next": n} for a, n in self.sequence_gaps],
            "objects": list(self.objects),
            "covers": (
                {"from": iso(self.covers[0]), "to": iso(self.covers[1])} if self.covers else None
            ),
            "first_received": iso(self.first_received_ms),
            "last_received": iso(self.last_received_ms),
            "continuous": self.continuous,
            "unwatched": [
                {"from": iso(u.start_ms), "to": iso(u.end_ms), "reason": u.reason}
                for u in self.unwatched
            ],
        }


@dataclass(frozen=True, slots=True)
class LostStreamObject:
    """A stream object the cut could not store."""

    book: str
    channel: str
    object: str
    reason: str


@dataclass(frozen=True, slots=True)
class CutRecord:
    """One run record or shutdown record: the cut it describes and the slots it used."""

    name: str
    named_ms: int  # the minute in a run record's name, the instant in a shutdown record's
    shutdown: bool
    instance: str | None
    instance_started_ms: int | None
    cut_ms: int | None
    disconnects: tuple[tuple[int, str], ...]  # (when the connection was lost, why)
    channels: Mapping[tuple[str, str], ChannelRecord]  # by (book, channel)
    lost: tuple[LostStreamObject, ...]
    anchor_slots: frozenset[tuple[str, int]]  # (book, slot) of anchors
    backfill_slots: frozenset[tuple[str, int]]  # (book, slot) of trades backfills

    def book(self, book: str) -> dict[str, ChannelRecord]:
        return {ch: entry for (b, ch), entry in self.channels.items() if b == book}

    def channel(self, book: str, channel: str) -> ChannelRecord | None:
        return self.channels.get((book, channel))


def _is_gap(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _count(value.get("after")) is not None
        and _count(value.get("next")) is not None
    )


def _unwatched(value: Any) -> UnwatchedSpan:
    start, end = _span(value, "unwatched")
    reason = value.get("reason")
    if reason not in _UNWATCHED_REASONS:
        raise CorruptError(f"unwatched reason {reason!r} is not outage or frozen")
    return UnwatchedSpan(start, end, reason)


def _channel_record(value: Any) -> ChannelRecord:
    if not isinstance(value, dict):
        raise CorruptError("a streams entry is not an object")
    gaps = value.get("sequence_gaps") or []
    if not isinstance(gaps, list) or not all(_is_gap(g) for g in gaps):
        raise CorruptError("sequence_gaps is not a list of {after, next} counts")
    objects = value.get("objects") or []
    if not isinstance(objects, list) or not all(isinstance(o, str) and o for o in objects):
        raise CorruptError("objects is not a list of object names")
    covers = value.get("covers")
    unwatched = value.get("unwatched") or []
    if not isinstance(unwatched, list):
        raise CorruptError("unwatched is not a list")
    return ChannelRecord(
        messages=_count(value.get("messages")),
        first_sequence=_count(value.get("first_sequence")),
        last_sequence=_count(value.get("last_sequence")),
        reconnects=_count(value.get("reconnects")),
        uncovered_ms=_count(value.get("uncovered_ms")),
        backfilled=_count(value.get("backfilled")),
        sequence_gaps=tuple((g["after"], g["next"]) for g in gaps),
        objects=tuple(objects),
        covers=None if covers is None else _span(covers, "covers"),
        first_received_ms=_optional_time(value.get("first_received"), "first_received"),
        last_received_ms=_optional_time(value.get("last_received"), "last_received"),
        continuous=value.get("continuous") is True,
        unwatched=tuple(sorted((_unwatched(u) for u in unwatched), key=lambda u: u.start_ms)),
    )


def _disconnect(value: Any) -> tuple[int, str]:
    if not isinstance(value, dict):
        raise CorruptError("a streams.disconnects entry is not {at, reason}")
    return _time(value.get("at"), "disconnect at"), str(value.get("reason"))


def _lost(value: Any) -> LostStreamObject:
    if not isinstance(value, dict):
        raise CorruptError("a streams.lost entry is not {book, channel, object, reason}")
    return LostStreamObject(
        str(value.get("book")),
        str(value.get("channel")),
        str(value.get("object")),
        str(value.get("reason")),
    )


def _slots(uses: Any, use: str) -> frozenset[tuple[str, int]]:
    if not isinstance(uses, list):
        raise CorruptError("slot_uses is not a list")
    found: set[tuple[str, int]] = set()
    for entry in uses:
        if not isinstance(entry, dict) or not isinstance(entry.get("book"), str):
            raise CorruptError("a slot_uses entry is not {book, slot, use}")
        if entry.get("use") == use:
            found.add((entry["book"], _time(entry.get("slot"), "slot_uses slot")))
    return frozenset(found)


def parse_cut_record(data: bytes, name: str, named_ms: int, shutdown: bool) -> CutRecord:
    """The streams part and slot uses of one run record or shutdown record."""
    record = load_json_object(data)
    streams = record.get("streams") or {}
    uses = record.get("slot_uses") or []
    if not isinstance(streams, dict):
        raise CorruptError("streams is not an object")
    books = streams.get("books") or {}
    if not isinstance(books, dict):
        raise CorruptError("streams.books is not an object")
    channels: dict[tuple[str, str], ChannelRecord] = {}
    for book, entries in books.items():
        if BOOK_PATTERN.fullmatch(book) is None or not isinstance(entries, dict):
            raise CorruptError(f"streams.books: {book!r} is not a book with its channels")
        for channel, entry in entries.items():
            if channel in STREAM_CHANNELS:
                channels[book, channel] = _channel_record(entry)
    disconnects = streams.get("disconnects") or []
    lost = streams.get("lost") or []
    if not isinstance(disconnects, list) or not isinstance(lost, list):
        raise CorruptError("streams.disconnects and streams.lost must be lists")
    instance = streams.get("instance")
    if instance is not None and (
        not isinstance(instance, str) or INSTANCE_PATTERN.fullmatch(instance) is None
    ):
        raise CorruptError(f"streams.instance {instance!r} is not 8 lowercase hex digits")
    return CutRecord(
        name=name,
        named_ms=named_ms,
        shutdown=shutdown,
        instance=instance,
        instance_started_ms=_optional_time(
            streams.get("instance_started_at"), "instance_started_at"
        ),
        cut_ms=_optional_time(streams.get("cut_at"), "cut_at"),
        disconnects=tuple(_disconnect(d) for d in disconnects),
        channels=channels,
        lost=tuple(_lost(x) for x in lost),
        anchor_slots=_slots(uses, ANCHOR_USE),
        backfill_slots=_slots(uses, TRADES_BACKFILL_USE),
    )


#: What a minute without a run record says: nothing (no slot was a trades backfill).
EMPTY = CutRecord("", 0, False, None, None, None, (), {}, (), frozenset(), frozenset())


@dataclass(frozen=True, slots=True)
class RecordName:
    """A run record's or shutdown record's name and what it says."""

    name: str
    named_ms: int
    shutdown: bool


def _record_name(name: str) -> RecordName | None:
    minute_ms = parse_run_record_name(name)
    if minute_ms is not None:
        return RecordName(name, minute_ms, False)
    shutdown = parse_shutdown_record_name(name)
    if shutdown is not None:
        return RecordName(name, shutdown.at_ms, True)
    return None


class RecordIndex:
    """The run and shutdown records of a source: each hour listed once, each record read
    once (a corrupt one is warned about once and left out)."""

    def __init__(self, source: Source, *, warn: bool = True) -> None:
        self.source = source
        self.warn = warn
        self.corrupt: list[Corrupt] = []
        self._hours: dict[int, list[RecordName]] = {}
        self._read: dict[str, CutRecord | None] = {}

    def names(self, start_ms: int, end_ms: int) -> list[RecordName]:
        """The records named in ``[start_ms, end_ms)``, in the order of their names' times."""
        found: list[RecordName] = []
        for hour_ms in hours_in_range(start_ms, end_ms):
            if hour_ms not in self._hours:
                listed = (_record_name(n) for n in self.source.list_names(runs_hour_dir(hour_ms)))
                self._hours[hour_ms] = sorted(
                    (r for r in listed if r is not None), key=lambda r: (r.named_ms, r.name)
                )
            found += [r for r in self._hours[hour_ms] if start_ms <= r.named_ms < end_ms]
        return found

    def read(self, start_ms: int, end_ms: int) -> list[CutRecord]:
        """The readable records named in ``[start_ms, end_ms)``, in that order."""
        names = self.names(start_ms, end_ms)
        wanted = {r.name: r for r in names if r.name not in self._read}
        items = read_objects(
            self.source,
            sorted(wanted),
            lambda n, data: parse_cut_record(data, n, wanted[n].named_ms, wanted[n].shutdown),
        )
        for name, parsed, bad in items:
            self._read[name] = parsed
            if bad is not None:
                self.corrupt.append(bad)
                if self.warn:
                    warn_corrupt(bad)
        return [r for r in (self._read[n.name] for n in names) if r is not None]

    def walk_back(
        self, from_ms: int, until_ms: int, step_ms: int = 10 * 60_000
    ) -> Iterator[CutRecord]:
        """The records named in ``[until_ms, from_ms)``, latest first, read ``step_ms`` at a
        time."""
        end = from_ms
        while end > until_ms:
            start = max(until_ms, end - step_ms)
            yield from reversed(self.read(start, end))
            end = start


def read_cut_records(
    source: Source, start_ms: int, end_ms: int
) -> tuple[dict[int, CutRecord], list[Corrupt]]:
    """The run records of the minutes in ``[start_ms, end_ms)``, by minute (gaps warns about
    corrupt run records already)."""
    index = RecordIndex(source, warn=False)
    first = start_ms - start_ms % 60_000
    records = {r.named_ms: r for r in index.read(first, end_ms) if not r.shutdown}
    return records, index.corrupt


__all__ = [
    "ANCHOR_USE",
    "EMPTY",
    "ChannelRecord",
    "CutRecord",
    "LostStreamObject",
    "RecordIndex",
    "UnwatchedSpan",
    "parse_cut_record",
    "read_cut_records",
]
