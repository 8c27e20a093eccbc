"""The stream part of ``gaps``: per book, what the continuous stream lets the reader know.

Over the part of the range the records cover (from the first cut's cover to the last one's),
each book is walked forward once (:mod:`bitso_archive.chain`), reading a few objects at a time:
every span the book cannot be known, named with its reason (``book --at`` refuses exactly
these); per minute the diffs received (every instance's, merged), the sequence gaps, the
anchors received, the unknown time and what that minute's run record says; and the self-check:
every aggregated snapshot compared with the book rebuilt at its sequence (drift). A minute the
stream covered without a break has no unknown time; a correct archive has no drift.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from bitso_archive.chain import AnchorMark
from bitso_archive.cut_records import ChannelRecord, CutRecord, RecordIndex
from bitso_archive.layout import hours_in_range
from bitso_archive.orderbook import (
    DRIFT,
    MATCH,
    UNCHECKED,
    Diff,
    DriftCheck,
    MissingSequence,
    UnknownSpan,
)
from bitso_archive.replay import RECORD_MARGIN_MS, book_walker
from bitso_archive.snapshots import Corrupt
from bitso_archive.sources import Source
from bitso_archive.texttable import text_table
from bitso_format import (
    DIFF_ORDERS_CHANNEL,
    MINUTE_MS,
    TRADES_CHANNEL,
    floor_minute,
    iso_millis,
    iso_minute,
    parse_snapshot_name,
    parse_stream_name,
    stream_hour_dir,
)


@dataclass
class StreamMinute:
    """One book in one minute, as its streams let it be known."""

    minute_ms: int
    messages: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    sequence_gaps: list[MissingSequence] = field(default_factory=list)  # next one received now
    anchors: list[AnchorMark] = field(default_factory=list)  # received in the minute
    unknown: list[UnknownSpan] = field(default_factory=list)  # clipped to the minute
    drift: list[DriftCheck] = field(default_factory=list)  # snapshots of its slots
    recorded: dict[str, ChannelRecord] | None = None  # the run record of the minute's cut
    objects: dict[str, list[str]] = field(default_factory=dict)  # its cut's, by channel

    @property
    def unknown_ms(self) -> int:
        return sum(span.end_ms - span.start_ms for span in self.unknown)

    def _recorded(self, key: str) -> int | None:
        entry = (self.recorded or {}).get(DIFF_ORDERS_CHANNEL)
        value = getattr(entry, key) if entry is not None else None
        return value if isinstance(value, int) else None

    @property
    def uncovered_ms(self) -> int | None:
        return self._recorded("uncovered_ms")

    @property
    def reconnects(self) -> int | None:
        return self._recorded("reconnects")

    def drift_count(self, status: str) -> int:
        return sum(1 for check in self.drift if check.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "minute": iso_minute(self.minute_ms),
            "diff_objects": self.objects.get(DIFF_ORDERS_CHANNEL, []),
            "trades_objects": self.objects.get(TRADES_CHANNEL, []),
            "messages": self.messages,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "sequence_gaps": [gap.as_dict() for gap in self.sequence_gaps],
            "anchors": [
                {
                    "snapshot": a.name,
                    "sequence": a.sequence,
                    "received_at": iso_millis(a.received_ms),
                }
                for a in self.anchors
            ],
            "unknown_ms": self.unknown_ms,
            "unknown": [span.as_dict() for span in self.unknown],
            "uncovered_ms": self.uncovered_ms,
            "reconnects": self.reconnects,
            "drift": {
                "checked": self.drift_count(MATCH) + self.drift_count(DRIFT),
                "mismatched": self.drift_count(DRIFT),
                "unchecked": self.drift_count(UNCHECKED),
                "mismatches": [c.as_dict() for c in self.drift if c.status == DRIFT],
            },
            "run_record": (
                {channel: entry.as_dict() for channel, entry in self.recorded.items()}
                if self.recorded is not None
                else None
            ),
        }


@dataclass
class StreamReport:
    """One book's stream coverage over the range: the unknown spans, and each minute."""

    book: str
    start_ms: int
    end_ms: int
    unknown: list[UnknownSpan] = field(default_factory=list)
    minutes: list[StreamMinute] = field(default_factory=list)
    duplicates: int = 0
    corrupt: list[Corrupt] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        minutes = self.minutes
        uncovered = [m.uncovered_ms for m in minutes if m.uncovered_ms is not None]
        reconnects = [m.reconnects for m in minutes if m.reconnects is not None]
        by_reason: Counter[str] = Counter()
        for span in self.unknown:
            by_reason[span.reason] += span.end_ms - span.start_ms
        return {
            "from": iso_millis(self.start_ms),
            "to": iso_millis(self.end_ms),
            "minutes": len(minutes),
            "minutes_with_unknown": sum(1 for m in minutes if m.unknown),
            "messages": sum(m.messages for m in minutes),
            "duplicates": self.duplicates,
            "sequence_gaps": sum(len(m.sequence_gaps) for m in minutes),
            "anchors": sum(len(m.anchors) for m in minutes),
            "unknown_ms": sum(by_reason.values()),
            "unknown_ms_by_reason": dict(sorted(by_reason.items())),
            "uncovered_ms": sum(uncovered) if uncovered else None,
            "reconnects": sum(reconnects) if reconnects else None,
            "drift_checked": sum(m.drift_count(MATCH) + m.drift_count(DRIFT) for m in minutes),
            "drift_mismatched": sum(m.drift_count(DRIFT) for m in minutes),
            "drift_unchecked": sum(m.drift_count(UNCHECKED) for m in minutes),
            "corrupt": len(self.corrupt),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "unknown": [span.as_dict() for span in self.unknown],
            "minutes": [m.as_dict() for m in self.minutes],
            "corrupt": [c.as_dict() for c in self.corrupt],
        }


def _streamed_books(
    source: Source, start_ms: int, end_ms: int, records: list[CutRecord]
) -> set[str]:
    books = {
        book for r in records for book, channel in r.channels if channel == DIFF_ORDERS_CHANNEL
    }
    for hour_ms in hours_in_range(start_ms, end_ms):
        for name in source.list_names(stream_hour_dir(DIFF_ORDERS_CHANNEL, hour_ms)):
            parsed = parse_stream_name(name)
            if parsed is not None:
                books.add(parsed.book)
    return books


def _window(book: str, start_ms: int, end_ms: int, records: list[CutRecord]) -> tuple[int, int]:
    """The part of ``[start_ms, end_ms)`` the records' covers of the book span (all of it
    when none does: then it is all unknown)."""
    covers = [
        entry.covers
        for r in records
        if (entry := r.channel(book, DIFF_ORDERS_CHANNEL)) is not None and entry.covers
        if entry.covers[1] > start_ms and entry.covers[0] < end_ms
    ]
    if not covers:
        return start_ms, end_ms
    return max(start_ms, min(c[0] for c in covers)), min(end_ms, max(c[1] for c in covers))


class _Tally:
    """Counts the merged diffs as the walker takes them, by minute of receipt."""

    def __init__(self, minutes: dict[int, StreamMinute]) -> None:
        self.minutes = minutes
        self.previous: Diff | None = None

    def watch(self, diffs: Iterable[Diff]) -> Iterator[Diff]:
        for diff in diffs:
            minute = self.minutes.get(floor_minute(diff.received_ms))
            if minute is not None:
                minute.messages += 1
                if minute.first_sequence is None:
                    minute.first_sequence = diff.sequence
                minute.last_sequence = diff.sequence
                before = self.previous
                if before is not None and diff.sequence != before.sequence + 1:
                    gap = MissingSequence(
                        before.sequence, diff.sequence, before.received_ms, diff.received_ms
                    )
                    minute.sequence_gaps.append(gap)
            self.previous = diff
            yield diff


def _clip(span: UnknownSpan, start_ms: int, end_ms: int) -> UnknownSpan:
    return replace(span, start_ms=max(span.start_ms, start_ms), end_ms=min(span.end_ms, end_ms))


def book_coverage(
    source: Source, book: str, start_ms: int, end_ms: int, records: list[CutRecord]
) -> StreamReport:
    """One book's stream coverage of ``[start_ms, end_ms)`` (see the module)."""
    window_start, window_end = _window(book, start_ms, end_ms, records)
    report = StreamReport(book, window_start, window_end)
    minutes = {m: StreamMinute(m) for m in range(floor_minute(window_start), window_end, MINUTE_MS)}
    for record in records:
        minute = minutes.get(record.named_ms)
        if minute is not None and not record.shutdown and record.book(book):
            minute.recorded = record.book(book)
    tally = _Tally(minutes)
    walker, stream = book_walker(
        source, book, window_start, window_end, checked=True, watch=tally.watch
    )
    spans = walker.finish()
    report.unknown = [s for s in spans if isinstance(s, UnknownSpan)]
    for span in report.unknown:
        for minute_ms in range(floor_minute(span.start_ms), span.end_ms, MINUTE_MS):
            if minute_ms in minutes:
                clipped = _clip(span, minute_ms, minute_ms + MINUTE_MS)
                minutes[minute_ms].unknown.append(clipped)
    for chain in walker.chains:
        minute = minutes.get(floor_minute(chain.anchor.received_ms))
        if minute is not None:
            minute.anchors.append(chain.anchor)
    for check in walker.drift:
        meta = parse_snapshot_name(check.snapshot)
        minute = minutes.get(floor_minute(meta.slot_ms)) if meta else None
        if minute is not None:
            minute.drift.append(check)
    for hour_ms in hours_in_range(window_start - MINUTE_MS, window_end):  # a cut's first hour
        for channel in (DIFF_ORDERS_CHANNEL, TRADES_CHANNEL):
            for name in source.list_names(stream_hour_dir(channel, hour_ms)):
                parsed = parse_stream_name(name)
                if parsed is None or parsed.book != book:
                    continue
                minute = minutes.get(floor_minute(parsed.cut_ms))
                if minute is not None:
                    minute.objects.setdefault(channel, []).append(name)
    report.minutes = list(minutes.values())
    report.duplicates = stream.duplicates
    report.corrupt = stream.corrupt
    return report


def stream_coverage(
    source: Source, start_ms: int, end_ms: int, books: Iterable[str] | None = None
) -> dict[str, StreamReport]:
    """The stream coverage of every book with diff-orders in ``[start_ms, end_ms)``, by book
    (empty when nothing streamed)."""
    index = RecordIndex(source, warn=False)  # gaps warns about corrupt records already
    records = index.read(floor_minute(start_ms) - RECORD_MARGIN_MS, end_ms + RECORD_MARGIN_MS)
    found = _streamed_books(source, start_ms, end_ms, records)
    wanted = sorted(found if books is None else found & set(books))
    return {book: book_coverage(source, book, start_ms, end_ms, records) for book in wanted}


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.3f} s"


def format_streams(reports: dict[str, StreamReport], max_rows: int = 50) -> list[str]:
    """The stream part of the text report: a summary per book, the unknown spans, the gaps,
    the drift."""
    if not reports:
        return []
    lines = ["", "Streams: the book rebuilt from anchors and diffs, checked against snapshots"]
    rows = []
    for book, report in reports.items():
        s = report.summary()
        rows.append(
            [
                book,
                str(s["minutes"]),
                str(s["messages"]),
                str(s["duplicates"]),
                str(s["sequence_gaps"]),
                str(s["anchors"]),
                _seconds(s["unknown_ms"]),
                _seconds(s["uncovered_ms"]),
                "-" if s["reconnects"] is None else str(s["reconnects"]),
                f"{s['drift_mismatched']} of {s['drift_checked']}",
                str(s["drift_unchecked"]),
            ]
        )
    headers = [
        "book",
        "minutes",
        "diffs",
        "duplicates",
        "seq gaps",
        "anchors",
        "unknown",
        "uncovered",
        "reconnects",
        "drift",
        "unchecked",
    ]
    lines += text_table(headers, rows, right=set(range(1, 11)))
    unknown = [(book, span) for book, r in reports.items() for span in r.unknown]
    lines += ["", f"Unknown spans: {len(unknown)} (book --at refuses them)"]
    lines += [
        f"  {book} {iso_millis(span.start_ms)} to {iso_millis(span.end_ms)} "
        f"({_seconds(span.end_ms - span.start_ms)}): {span.reason}"
        for book, span in unknown[:max_rows]
    ]
    if len(unknown) > max_rows:
        lines.append(f"  ... and {len(unknown) - max_rows} more (use --json for all)")
    gaps = [(m, book, g) for book, r in reports.items() for m in r.minutes for g in m.sequence_gaps]
    lines += ["", f"Sequence gaps: {len(gaps)}"]
    if gaps:
        gap_rows = [
            [
                iso_minute(m.minute_ms)[:16] + "Z",
                book,
                str(g.after),
                str(g.next),
                iso_millis(g.after_ms) if g.after_ms is not None else "-",
                iso_millis(g.next_ms),
            ]
            for m, book, g in gaps[:max_rows]
        ]
        lines += text_table(
            ["minute", "book", "after", "next", "after received", "next received"],
            gap_rows,
            right={2, 3},
        )
    drift = [c for r in reports.values() for m in r.minutes for c in m.drift if c.status == DRIFT]
    lines += ["", f"Drift (snapshots that differ from the rebuilt book): {len(drift)}"]
    lines += [f"  {c.snapshot} (sequence {c.sequence}): {c.detail}" for c in drift[:max_rows]]
    return lines


__all__ = [
    "ChannelRecord",
    "StreamMinute",
    "StreamReport",
    "book_coverage",
    "format_streams",
    "stream_coverage",
]
