"""What the run records say of the streams: the ``streams`` part and the ``slot_uses``.

Per book and channel the counts the call kept (messages, sequence gaps, reconnects,
``uncovered_ms``, trades backfilled, the object stored); for the whole connection when it was
lost (``disconnects``: each one an outage the book cannot be known through); per slot what it was
used for (a ``trades_backfill`` slot stores no snapshot, so it is never a missing one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitso_archive.layout import hours_in_range
from bitso_archive.snapshots import Corrupt, CorruptError, load_json_object, read_objects
from bitso_archive.sources import Source
from bitso_format import (
    BOOK_PATTERN,
    STREAM_CHANNELS,
    TRADES_BACKFILL_USE,
    floor_minute,
    parse_iso_millis,
    parse_run_record_name,
    runs_hour_dir,
)


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """What a run record's ``streams`` part says of one book and channel."""

    messages: int | None
    reconnects: int | None
    uncovered_ms: int | None
    backfilled: int | None
    sequence_gaps: tuple[tuple[int, int], ...]
    object: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "reconnects": self.reconnects,
            "uncovered_ms": self.uncovered_ms,
            "backfilled": self.backfilled,
            "sequence_gaps": [{"after": a, "next": n} for a, n in self.sequence_gaps],
            "object": self.object,
        }


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One run record's account of its minute's streams."""

    disconnects: tuple[tuple[int, str], ...]  # (when the connection was lost, why)
    channels: dict[tuple[str, str], ChannelRecord]  # by (book, channel)
    lost: tuple[tuple[str, str, str], ...]  # (book, channel, reason) of objects not stored
    backfill_slots: frozenset[tuple[str, int]]  # (book, slot) of trades backfills

    def book(self, book: str) -> dict[str, ChannelRecord]:
        return {ch: entry for (b, ch), entry in self.channels.items() if b == book}


EMPTY = StreamRecord((), {}, (), frozenset())


def _is_gap(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _count(value.get("after")) is not None
        and _count(value.get("next")) is not None
    )


def _channel_record(value: Any) -> ChannelRecord:
    if not isinstance(value, dict):
        raise CorruptError("a streams entry is not an object")
    gaps = value.get("sequence_gaps") or []
    if not isinstance(gaps, list) or not all(_is_gap(g) for g in gaps):
        raise CorruptError("sequence_gaps is not a list of {after, next} counts")
    name = value.get("object")
    return ChannelRecord(
        messages=_count(value.get("messages")),
        reconnects=_count(value.get("reconnects")),
        uncovered_ms=_count(value.get("uncovered_ms")),
        backfilled=_count(value.get("backfilled")),
        sequence_gaps=tuple((g["after"], g["next"]) for g in gaps),
        object=name if isinstance(name, str) else None,
    )


def _time(value: Any, what: str) -> int:
    try:
        return parse_iso_millis(value if isinstance(value, str) else "")
    except ValueError:
        raise CorruptError(
            f"{what} {value!r} is not a time like 2026-11-24T10:15:07.118Z"
        ) from None


def _disconnect(value: Any) -> tuple[int, str]:
    if not isinstance(value, dict):
        raise CorruptError("a streams.disconnects entry is not {at, reason}")
    return _time(value.get("at"), "disconnect at"), str(value.get("reason"))


def parse_stream_record(data: bytes) -> StreamRecord:
    """The streams part and slot uses of one run record (EMPTY when it has neither)."""
    record = load_json_object(data)
    streams = record.get("streams") or {}
    uses = record.get("slot_uses") or []
    if not isinstance(streams, dict) or not isinstance(uses, list):
        raise CorruptError("streams is not an object, or slot_uses not a list")
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
    backfills: set[tuple[str, int]] = set()
    for use in uses:
        if not isinstance(use, dict) or not isinstance(use.get("book"), str):
            raise CorruptError("a slot_uses entry is not {book, slot, use}")
        if use.get("use") == TRADES_BACKFILL_USE:
            backfills.add((use["book"], _time(use.get("slot"), "slot_uses slot")))
    return StreamRecord(
        disconnects=tuple(_disconnect(d) for d in disconnects),
        channels=channels,
        lost=tuple(
            (str(x.get("book")), str(x.get("channel")), str(x.get("reason")))
            for x in lost
            if isinstance(x, dict)
        ),
        backfill_slots=frozenset(backfills),
    )


def run_record_minutes(source: Source, start_ms: int, end_ms: int) -> dict[str, int]:
    """Run record names of the minutes in ``[start_ms, end_ms)``, with their minutes."""
    minutes: dict[str, int] = {}
    for hour_ms in hours_in_range(start_ms, end_ms):
        for name in source.list_names(runs_hour_dir(hour_ms)):
            minute_ms = parse_run_record_name(name)
            if minute_ms is not None and floor_minute(start_ms) <= minute_ms < end_ms:
                minutes[name] = minute_ms
    return minutes


def read_stream_records(
    source: Source, start_ms: int, end_ms: int
) -> tuple[dict[int, StreamRecord], list[Corrupt]]:
    """The stream account of every run record of the minutes in ``[start_ms, end_ms)``."""
    minutes = run_record_minutes(source, start_ms, end_ms)
    records: dict[int, StreamRecord] = {}
    corrupt: list[Corrupt] = []
    items = read_objects(source, sorted(minutes), lambda _n, data: parse_stream_record(data))
    for name, parsed, bad in items:
        if bad is not None:
            corrupt.append(bad)  # gaps already warns about corrupt run records
        elif parsed is not None:
            records[minutes[name]] = parsed
    return records, corrupt
