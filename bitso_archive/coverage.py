"""The stream part of ``gaps``: per book and minute, what the diffs let the reader know.

For each minute with a stream object (or a run record that names streams): the diffs received,
the sequence gaps between consecutive diffs (``after``, ``next``), the anchors, the time the book
cannot be known (the spans ``book --at`` refuses, with their reasons), what the run record says
(reconnects, ``uncovered_ms``: time without a live subscription), and the self-check: every
aggregated snapshot compared with the book rebuilt at its sequence (drift). A correct archive
has no drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bitso_archive.layout import hours_in_range
from bitso_archive.orderbook import (
    AFTER_LAST_DIFF,
    BEFORE_FIRST_ANCHOR,
    DRIFT,
    MATCH,
    UNCHECKED,
    DriftCheck,
    SequenceGap,
    UnknownSpan,
    check_drift,
    sequence_gaps,
)
from bitso_archive.snapshots import Corrupt
from bitso_archive.sources import Source
from bitso_archive.stream_records import ChannelRecord, StreamRecord
from bitso_archive.streams import BookRecordings
from bitso_archive.texttable import text_table
from bitso_format import (
    DIFF_ORDERS_CHANNEL,
    MINUTE_MS,
    STREAM_CHANNELS,
    TRADES_CHANNEL,
    floor_minute,
    iso_millis,
    iso_minute,
    parse_stream_name,
    stream_hour_dir,
)


@dataclass
class StreamMinute:
    """One book in one minute, as its streams let it be known."""

    minute_ms: int
    diff_object: str | None
    trades_object: str | None
    messages: int
    first_sequence: int | None
    last_sequence: int | None
    sequence_gaps: list[SequenceGap]
    anchors: list[tuple[str, int, int]]  # (snapshot, sequence, received_ms)
    unknown: list[UnknownSpan]
    drift: list[DriftCheck]
    recorded: dict[str, ChannelRecord] | None
    corrupt: list[Corrupt] = field(default_factory=list)

    @property
    def unknown_ms(self) -> int:
        return sum(span.end_ms - span.start_ms for span in self.unknown)

    def _recorded(self, channel: str, key: str) -> int | None:
        entry = (self.recorded or {}).get(channel)
        value = getattr(entry, key) if entry is not None else None
        return value if isinstance(value, int) else None

    @property
    def uncovered_ms(self) -> int | None:
        return self._recorded(DIFF_ORDERS_CHANNEL, "uncovered_ms")

    @property
    def reconnects(self) -> int | None:
        return self._recorded(DIFF_ORDERS_CHANNEL, "reconnects")

    def drift_count(self, status: str) -> int:
        return sum(1 for check in self.drift if check.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "minute": iso_minute(self.minute_ms),
            "diff_object": self.diff_object,
            "trades_object": self.trades_object,
            "messages": self.messages,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "sequence_gaps": [gap.as_dict() for gap in self.sequence_gaps],
            "anchors": [
                {"snapshot": name, "sequence": seq, "received_at": iso_millis(received)}
                for name, seq, received in self.anchors
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
            "corrupt": [c.as_dict() for c in self.corrupt],
        }


@dataclass
class StreamReport:
    """One book's stream coverage over the range."""

    book: str
    minutes: list[StreamMinute] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        minutes = self.minutes
        uncovered = [m.uncovered_ms for m in minutes if m.uncovered_ms is not None]
        reconnects = [m.reconnects for m in minutes if m.reconnects is not None]
        return {
            "minutes": len(minutes),
            "minutes_without_diffs": sum(1 for m in minutes if m.diff_object is None),
            "messages": sum(m.messages for m in minutes),
            "sequence_gaps": sum(len(m.sequence_gaps) for m in minutes),
            "anchors": sum(len(m.anchors) for m in minutes),
            "unknown_ms": sum(m.unknown_ms for m in minutes),
            "uncovered_ms": sum(uncovered) if uncovered else None,
            "reconnects": sum(reconnects) if reconnects else None,
            "drift_checked": sum(m.drift_count(MATCH) + m.drift_count(DRIFT) for m in minutes),
            "drift_mismatched": sum(m.drift_count(DRIFT) for m in minutes),
            "drift_unchecked": sum(m.drift_count(UNCHECKED) for m in minutes),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "minutes": [m.as_dict() for m in self.minutes]}


def _stream_objects(source: Source, start_ms: int, end_ms: int) -> dict[tuple[str, str, int], str]:
    found: dict[tuple[str, str, int], str] = {}
    for channel in STREAM_CHANNELS:
        for hour_ms in hours_in_range(start_ms, end_ms):
            for name in source.list_names(stream_hour_dir(channel, hour_ms)):
                parsed = parse_stream_name(name)
                if parsed is not None and floor_minute(start_ms) <= parsed.minute_ms < end_ms:
                    found[parsed.channel, parsed.book, parsed.minute_ms] = name
    return found


def stream_coverage(
    source: Source,
    start_ms: int,
    end_ms: int,
    records: dict[int, StreamRecord],
    books: Iterable[str] | None = None,
) -> dict[str, StreamReport]:
    """The stream coverage of every book with streams in ``[start_ms, end_ms)``, by book,
    given the minutes' run records (:func:`~bitso_archive.stream_records.read_stream_records`).

    Reads a minute at a time (memory is one minute of diffs); empty when nothing streamed.
    """
    objects = _stream_objects(source, start_ms, end_ms)
    wanted = set(books) if books is not None else None
    keys = {(book, minute) for _c, book, minute in objects}
    keys |= {(book, minute) for minute, r in records.items() for book, _ch in r.channels}
    reports: dict[str, StreamReport] = {}
    recordings: dict[str, BookRecordings] = {}
    for book, minute_ms in sorted(keys):
        if wanted is not None and book not in wanted:
            continue
        book_recordings = recordings.setdefault(book, BookRecordings(source, book))
        record = records.get(minute_ms)
        recorded = book_recordings.minute(minute_ms, record)
        diffs = recorded.minute.diffs
        reports.setdefault(book, StreamReport(book)).minutes.append(
            StreamMinute(
                minute_ms=minute_ms,
                diff_object=recorded.diff_object,
                trades_object=objects.get((TRADES_CHANNEL, book, minute_ms)),
                messages=len(diffs),
                first_sequence=diffs[0].sequence if diffs else None,
                last_sequence=diffs[-1].sequence if diffs else None,
                sequence_gaps=sequence_gaps(diffs),
                anchors=[(a.name, a.sequence, a.received_ms) for a in recorded.minute.anchors],
                unknown=[s for s in recorded.spans if isinstance(s, UnknownSpan)],
                drift=check_drift(recorded.minute, recorded.aggregated),
                recorded=record.book(book) if record is not None else None,
                corrupt=recorded.corrupt,
            )
        )
    return reports


def _routine(span: UnknownSpan, minute_ms: int) -> bool:
    """Unknown time every recorded minute has: before its first anchor, after its last diff."""
    if span.reason == BEFORE_FIRST_ANCHOR:
        return True
    return span.reason == AFTER_LAST_DIFF and span.end_ms == minute_ms + MINUTE_MS


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.3f} s"


def format_streams(reports: dict[str, StreamReport], max_rows: int = 50) -> list[str]:
    """The stream part of the text report: a summary per book, the gaps, the drift."""
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
        "seq gaps",
        "anchors",
        "unknown",
        "uncovered",
        "reconnects",
        "drift",
        "unchecked",
    ]
    lines += text_table(headers, rows, right=set(range(1, 10)))
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
    # Every minute starts before its first anchor and ends after its last diff: those spans
    # are in the summary's unknown time; the list names only the holes inside the minutes.
    unknown = [
        (book, span)
        for book, r in reports.items()
        for m in r.minutes
        for span in m.unknown
        if not _routine(span, m.minute_ms)
    ]
    if unknown:
        lines += ["", f"Unknown spans inside minutes: {len(unknown)} (book --at refuses them)"]
        lines += [
            f"  {book} {iso_millis(span.start_ms)} to {iso_millis(span.end_ms)} "
            f"({_seconds(span.end_ms - span.start_ms)}): {span.reason}"
            for book, span in unknown[:max_rows]
        ]
        if len(unknown) > max_rows:
            lines.append(f"  ... and {len(unknown) - max_rows} more (use --json for all)")
    return lines


__all__ = [
    "ChannelRecord",
    "StreamMinute",
    "StreamReport",
    "format_streams",
    "stream_coverage",
]
