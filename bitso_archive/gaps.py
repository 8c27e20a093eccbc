"""``gaps``: what the slot grid expected, what is in the archive, and what went wrong.

Per book and minute: the slots the grid expected (``R``, the pace that minute
actually ran at, reduced after a throttling reply, and the book list come from
that minute's run record, else from the defaults given), the snapshots
present, the missing slot times, whether the minute was throttled, the writes
the run record says were lost, and corrupt objects (a slot the run record
says fetched a trades backfill stores no snapshot and is not expected). Per book: runs of
consecutive snapshots with an unchanged ``sequence``. With streams, per book and
minute also their coverage (:mod:`bitso_archive.stream_gaps`).

Only minutes that have ended are counted (never one after "now"), and a minute with no run
record and nothing stored was not collected at all: it is counted apart (``not_collected``),
not as missing slots, so a short trial in a long range is not a sea of missing minutes.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bitso_archive.cut_records import EMPTY as EMPTY_STREAMS
from bitso_archive.cut_records import read_cut_records
from bitso_archive.layout import TimeLike, check_books, check_range, minutes_in_range, to_ms
from bitso_archive.snapshots import (
    Corrupt,
    RunRecordFields,
    iter_snapshots,
    list_snapshot_names,
    read_run_records,
)
from bitso_archive.sources import SourceLike, open_source
from bitso_archive.stream_gaps import StreamReport, format_streams, stream_coverage
from bitso_archive.texttable import text_table
from bitso_format import (
    DEFAULT_REQUESTS_PER_MINUTE,
    MINUTE_MS,
    book_slot_times,
    floor_minute,
    iso_millis,
    iso_minute,
    parse_run_record_name,
    parse_snapshot_name,
)


@dataclass
class MinuteReport:
    """One book in one minute."""

    minute_ms: int
    expected: int
    present: int
    missing: list[int]
    unexpected: list[int]
    corrupt: list[str]
    throttled: bool
    lost: list[dict[str, str]]
    failures: list[dict[str, str]]
    run_status: str | None
    requests_per_minute: int
    grid_from: str  # "run_record" or "default"
    #: How the collector paced the minute (run record ``back_off.mode``): full, backing_off
    #: (it began in the silence after a throttling reply) or recovering; None when unknown.
    pace_mode: str | None = None
    #: The configured pace, when the minute ran below it (recovering or backing off).
    full_requests_per_minute: int | None = None

    @property
    def completeness(self) -> float | None:
        return self.present / self.expected if self.expected else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "minute": iso_minute(self.minute_ms),
            "expected": self.expected,
            "present": self.present,
            "missing": [iso_millis(ms) for ms in self.missing],
            "throttled": self.throttled,
            "lost": self.lost,
            "failures": self.failures,
            "corrupt": self.corrupt,
            "unexpected": [iso_millis(ms) for ms in self.unexpected],
            "run_status": self.run_status,
            "requests_per_minute": self.requests_per_minute,
            "grid_from": self.grid_from,
            "pace_mode": self.pace_mode,
            "full_requests_per_minute": self.full_requests_per_minute,
        }


@dataclass(frozen=True)
class SequenceRun:
    """Consecutive snapshots of one book that all carry the same ``sequence``."""

    sequence: int
    start_ms: int
    end_ms: int
    length: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "start": iso_millis(self.start_ms),
            "end": iso_millis(self.end_ms),
            "length": self.length,
        }


@dataclass
class BookReport:
    book: str
    minutes: list[MinuteReport] = field(default_factory=list)
    unchanged_sequence: list[SequenceRun] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        expected = sum(m.expected for m in self.minutes)
        present = sum(m.present for m in self.minutes)
        return {
            "minutes": len(self.minutes),
            "expected": expected,
            "present": present,
            "missing": sum(len(m.missing) for m in self.minutes),
            "completeness": round(present / expected, 6) if expected else None,
            "incomplete_minutes": sum(1 for m in self.minutes if m.missing),
            "throttled_minutes": sum(1 for m in self.minutes if m.throttled),
            "lost": sum(len(m.lost) for m in self.minutes),
            "corrupt": sum(len(m.corrupt) for m in self.minutes),
            "unexpected": sum(len(m.unexpected) for m in self.minutes),
            "minutes_without_run_record": sum(
                1 for m in self.minutes if m.grid_from != "run_record"
            ),
            "unchanged_sequence_runs": len(self.unchanged_sequence),
            "longest_unchanged_sequence": max(
                (r.length for r in self.unchanged_sequence), default=0
            ),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "minutes": [m.as_dict() for m in self.minutes],
            "unchanged_sequence": [r.as_dict() for r in self.unchanged_sequence],
        }


@dataclass(frozen=True)
class MinuteSpan:
    """Consecutive minutes ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int

    @property
    def minutes(self) -> int:
        return (self.end_ms - self.start_ms) // MINUTE_MS

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": iso_millis(self.start_ms),
            "end": iso_millis(self.end_ms),
            "minutes": self.minutes,
        }

    def __str__(self) -> str:
        last = iso_minute(self.end_ms - MINUTE_MS)[:16] + "Z"
        first = iso_minute(self.start_ms)[:16] + "Z"
        return first if self.minutes == 1 else f"{first} to {last}"


def minute_spans(minutes: Iterable[int]) -> list[MinuteSpan]:
    """Sorted minute starts (epoch ms) joined into spans of consecutive minutes."""
    spans: list[MinuteSpan] = []
    for minute_ms in minutes:
        if spans and spans[-1].end_ms == minute_ms:
            spans[-1] = MinuteSpan(spans[-1].start_ms, minute_ms + MINUTE_MS)
        else:
            spans.append(MinuteSpan(minute_ms, minute_ms + MINUTE_MS))
    return spans


@dataclass
class GapReport:
    source: str
    start_ms: int
    end_ms: int
    default_rpm: int
    books: dict[str, BookReport]
    corrupt: list[Corrupt]
    run_records: int
    corrupt_run_records: list[Corrupt]
    streams: dict[str, StreamReport] = field(default_factory=dict)
    #: Where counting stopped: ``end_ms``, or the start of the minute holding "now" when that is
    #: earlier (a minute that has not ended is not judged).
    counted_until_ms: int | None = None
    #: Minutes with no run record and nothing stored: never collected, not missing slots.
    not_collected: list[MinuteSpan] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "start": iso_millis(self.start_ms),
            "end": iso_millis(self.end_ms),
            "counted_until": iso_millis(self.counted_until),
            "not_collected": {
                "minutes": sum(span.minutes for span in self.not_collected),
                "spans": [span.as_dict() for span in self.not_collected],
            },
            "default_requests_per_minute": self.default_rpm,
            "run_records": self.run_records,
            "corrupt": [c.as_dict() for c in self.corrupt],
            "corrupt_run_records": [c.as_dict() for c in self.corrupt_run_records],
            "books": {book: report.as_dict() for book, report in self.books.items()},
            "streams": {book: report.as_dict() for book, report in self.streams.items()},
        }

    @property
    def counted_until(self) -> int:
        return self.end_ms if self.counted_until_ms is None else self.counted_until_ms

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.as_dict(), indent=indent)

    def format_table(self, max_minutes: int = 200, max_runs: int = 20) -> str:
        return format_report(self, max_minutes=max_minutes, max_runs=max_runs)

    def save_png(self, path: str | os.PathLike[str]) -> None:
        save_heatmap(self, path)


def unchanged_runs(snapshots: Iterable[tuple[int, int]]) -> list[SequenceRun]:
    """Runs (length >= 2) of equal sequence in ``(slot_ms, sequence)`` pairs sorted by slot."""
    runs: list[SequenceRun] = []
    start = end = seq = -1
    length = 0
    for slot_ms, sequence in snapshots:
        if length and sequence == seq:
            end = slot_ms
            length += 1
            continue
        if length >= 2:
            runs.append(SequenceRun(seq, start, end, length))
        start = end = slot_ms
        seq = sequence
        length = 1
    if length >= 2:
        runs.append(SequenceRun(seq, start, end, length))
    return runs


def _minute_grid(
    record: RunRecordFields | None, default_rpm: int, default_books: list[str]
) -> tuple[int, list[str], str]:
    if record is not None and record.requests_per_minute and record.books:
        return record.requests_per_minute, record.books, "run_record"
    rpm = record.requests_per_minute if record and record.requests_per_minute else default_rpm
    books = record.books if record and record.books else default_books
    return rpm, books, ("run_record" if record else "default")


def gaps_report(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    books: Iterable[str] | None = None,
    *,
    rpm: int = DEFAULT_REQUESTS_PER_MINUTE,
    progress: bool = False,
    now: TimeLike | None = None,
) -> GapReport:
    """Build the gap report of ``[start, end)``, counting only minutes that ended by ``now``
    (default: the current time).

    ``rpm`` and ``books`` (in configured order; default: every book found, sorted)
    describe the grid of minutes that have no run record.
    """
    src = open_source(source)
    start_ms, asked_end_ms = check_range(start, end)
    wanted = check_books(books)
    if not 1 <= rpm <= 60:
        raise ValueError(f"rpm must be between 1 and 60, not {rpm}")
    now_ms = to_ms(now) if now is not None else int(time.time() * 1000)
    end_ms = max(start_ms, min(asked_end_ms, floor_minute(now_ms)))

    metas = list_snapshot_names(src, start_ms, end_ms, wanted)
    seen: list[tuple[str, int, int]] = []  # (book, slot_ms, sequence), in book-slot order
    corrupt_objects: list[Corrupt] = []
    for item in iter_snapshots(src, metas, progress=progress):
        if isinstance(item, Corrupt):
            corrupt_objects.append(item)
        else:
            seen.append((item.book, item.slot_ms, item.sequence))
    records, corrupt_records = read_run_records(src, start_ms, end_ms, progress=progress)
    cut_records, _corrupt = read_cut_records(src, start_ms, end_ms)

    if wanted is not None:
        report_books = wanted
    else:
        found = {m.book for m in metas}
        for rec in records.values():
            found.update(rec.books or [])
        report_books = sorted(found)
    default_books = list(report_books)

    present: dict[tuple[str, int], set[int]] = defaultdict(set)
    for book, slot_ms, _sequence in seen:
        present[book, floor_minute(slot_ms)].add(slot_ms)
    corrupt_at: dict[tuple[str, int], list[str]] = defaultdict(list)
    for bad in corrupt_objects:
        meta = parse_snapshot_name(bad.name)
        if meta is not None:
            corrupt_at[meta.book, floor_minute(meta.slot_ms)].append(bad.name)

    stored_in = {minute for _book, minute in present} | {m for _b, m in corrupt_at}
    for bad in corrupt_records:  # a run record that cannot be read: still, the minute ran
        minute_of_record = parse_run_record_name(bad.name)
        if minute_of_record is not None:
            stored_in.add(minute_of_record)
    not_collected: list[int] = []
    reports = {book: BookReport(book) for book in report_books}
    for minute_ms in minutes_in_range(start_ms, end_ms) if end_ms > start_ms else []:
        record = records.get(minute_ms)
        if record is None and minute_ms not in stored_in:
            not_collected.append(minute_ms)
            continue
        minute_rpm, minute_books, grid_from = _minute_grid(record, rpm, default_books)
        throttled = record is not None and (record.throttled > 0 or record.status == "throttled")
        for book in report_books:
            # A trades backfill slot stores no snapshot: it is not a missing one.
            backfills = cut_records.get(minute_ms, EMPTY_STREAMS).backfill_slots
            expected = {
                ms
                for ms in book_slot_times(minute_ms, minute_rpm, minute_books, book)
                if start_ms <= ms < end_ms and (book, ms) not in backfills
            }
            have = present.get((book, minute_ms), set())
            corrupt = sorted(corrupt_at.get((book, minute_ms), []))
            lost = [e for e in record.lost if e["book"] == book] if record else []
            failures = [e for e in record.failures if e["book"] == book] if record else []
            if not expected and not have and not corrupt and not lost:
                continue
            reports[book].minutes.append(
                MinuteReport(
                    minute_ms=minute_ms,
                    expected=len(expected),
                    present=len(expected & have),
                    missing=sorted(expected - have),
                    unexpected=sorted(have - expected),
                    corrupt=corrupt,
                    throttled=throttled,
                    lost=lost,
                    failures=failures,
                    run_status=record.status if record else None,
                    requests_per_minute=minute_rpm,
                    grid_from=grid_from,
                    pace_mode=record.pace_mode if record else None,
                    full_requests_per_minute=record.full_requests_per_minute if record else None,
                )
            )
    for book, report in reports.items():
        report.unchanged_sequence = unchanged_runs((t, q) for b, t, q in seen if b == book)
    return GapReport(
        source=src.url,
        start_ms=start_ms,
        end_ms=asked_end_ms,
        default_rpm=rpm,
        books=reports,
        corrupt=corrupt_objects,
        run_records=len(records),
        corrupt_run_records=corrupt_records,
        streams=stream_coverage(src, start_ms, end_ms, wanted),
        counted_until_ms=end_ms,
        not_collected=minute_spans(not_collected),
    )


def _short(ms: int) -> str:
    return iso_millis(ms)[11:23]


def format_report(report: GapReport, *, max_minutes: int = 200, max_runs: int = 20) -> str:
    """The report as plain text: a summary per book, then the incomplete minutes."""
    lines = [
        f"Gaps in {report.source} from {iso_millis(report.start_ms)} to "
        f"{iso_millis(report.end_ms)} (end excluded); {report.run_records} run records"
        + (f", {len(report.corrupt_run_records)} corrupt" if report.corrupt_run_records else ""),
    ]
    if report.counted_until < report.end_ms:
        lines.append(
            f"Counted until {iso_millis(report.counted_until)}: the minutes from then on have "
            "not ended yet."
        )
    not_collected = sum(span.minutes for span in report.not_collected)
    if not_collected:
        shown = ", ".join(str(span) for span in report.not_collected[:max_runs])
        more = len(report.not_collected) - max_runs
        lines.append(
            f"Not collected (no run record, nothing stored): {not_collected} minutes: {shown}"
            + (f", ... and {more} more spans" if more > 0 else "")
        )
    lines.append("")
    if not report.books:
        lines.append("No books found in this range.")
        return "\n".join(lines)
    rows = []
    for book, b in report.books.items():
        s = b.summary()
        pct = f"{100 * s['completeness']:.2f}%" if s["completeness"] is not None else "-"
        rows.append(
            [
                book,
                str(s["minutes"]),
                str(s["expected"]),
                str(s["present"]),
                str(s["missing"]),
                pct,
                str(s["incomplete_minutes"]),
                str(s["throttled_minutes"]),
                str(s["lost"]),
                str(s["corrupt"]),
                f"{s['unchanged_sequence_runs']} ({s['longest_unchanged_sequence']})",
            ]
        )
    headers = [
        "book",
        "minutes",
        "expected",
        "present",
        "missing",
        "complete",
        "incomplete min",
        "throttled min",
        "lost",
        "corrupt",
        "same-seq runs (longest)",
    ]
    lines += text_table(headers, rows, right=set(range(1, 10)))

    bad = [
        (m, book)
        for book, b in report.books.items()
        for m in b.minutes
        if m.missing or m.throttled or m.lost or m.corrupt or m.unexpected
    ]
    bad.sort(key=lambda x: (x[0].minute_ms, x[1]))
    lines += ["", f"Incomplete or troubled minutes: {len(bad)}"]
    if bad:
        rows = []
        for m, book in bad[:max_minutes]:
            notes = []
            if m.throttled:
                notes.append("throttled")
            if m.pace_mode == "backing_off":
                notes.append("backing off")
            if m.full_requests_per_minute and m.requests_per_minute < m.full_requests_per_minute:
                notes.append(f"pace {m.requests_per_minute}/{m.full_requests_per_minute}")
            if m.lost:
                notes.append(f"lost {len(m.lost)}")
            if m.corrupt:
                notes.append(f"corrupt {len(m.corrupt)}")
            if m.unexpected:
                notes.append(f"off-grid {len(m.unexpected)}")
            if m.grid_from != "run_record":
                notes.append("no run record")
            shown = ", ".join(_short(ms) for ms in m.missing[:4])
            if len(m.missing) > 4:
                shown += f", ... (+{len(m.missing) - 4})"
            rows.append(
                [
                    iso_minute(m.minute_ms)[:16] + "Z",
                    book,
                    str(m.expected),
                    str(m.present),
                    str(len(m.missing)),
                    "; ".join(notes) or "-",
                    shown or "-",
                ]
            )
        lines += text_table(
            ["minute", "book", "expected", "present", "missing", "notes", "missing slots"],
            rows,
            right={2, 3, 4},
        )
        if len(bad) > max_minutes:
            lines.append(f"... and {len(bad) - max_minutes} more (use --json for all)")

    runs = [(r, book) for book, b in report.books.items() for r in b.unchanged_sequence]
    if runs:
        runs.sort(key=lambda x: (-x[0].length, x[0].start_ms))
        lines += ["", f"Runs of unchanged sequence: {len(runs)}"]
        rows = [
            [book, str(r.sequence), iso_millis(r.start_ms), iso_millis(r.end_ms), str(r.length)]
            for r, book in runs[:max_runs]
        ]
        lines += text_table(["book", "sequence", "start", "end", "snapshots"], rows, right={1, 4})
        if len(runs) > max_runs:
            lines.append(f"... and {len(runs) - max_runs} more (use --json for all)")
    if report.corrupt:
        lines += ["", f"Corrupt objects skipped: {len(report.corrupt)}"]
        lines += [f"  {c.name}: {c.reason}" for c in report.corrupt[:max_runs]]
    lines += format_streams(report.streams, max_rows=max_minutes)
    return "\n".join(lines)


def save_heatmap(report: GapReport, path: str | os.PathLike[str]) -> None:
    """PNG heat map: minutes on x, books on y, coloured by completeness (Agg backend)."""
    import numpy as np  # noqa: PLC0415
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    books = list(report.books)
    minutes = minutes_in_range(report.start_ms, report.end_ms)
    column = {m: i for i, m in enumerate(minutes)}
    grid = np.full((max(len(books), 1), max(len(minutes), 1)), np.nan)
    throttled_x: list[int] = []
    throttled_y: list[int] = []
    for y, book in enumerate(books):
        for m in report.books[book].minutes:
            x = column[m.minute_ms]
            value = m.completeness
            if value is not None:
                grid[y, x] = value
            if m.throttled:
                throttled_x.append(x)
                throttled_y.append(y)

    fig = Figure(figsize=(min(6.5 + len(minutes) / 12, 24), 2.2 + 0.5 * max(len(books), 1)))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        aspect="auto",
        cmap="RdYlGn",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    if throttled_x:
        ax.scatter(throttled_x, throttled_y, marker="x", color="black", s=12)

    ax.set_yticks(range(len(books)), books)
    step = max(1, len(minutes) // 12)
    ticks = list(range(0, len(minutes), step))
    span_days = (report.end_ms - report.start_ms) > 86_400_000
    labels = [iso_minute(minutes[i])[5 if span_days else 11 : 16] for i in ticks]
    ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize="small")
    note = "; x = throttled" if throttled_x else ""
    if report.not_collected or report.counted_until < report.end_ms:
        note += "; blank = not collected, or not over yet"
    ax.set_xlabel(f"minute (UTC), from {iso_millis(report.start_ms)[:19]}Z{note}")
    ax.set_title(f"Snapshot completeness per minute: {report.source}", fontsize="medium")
    fig.colorbar(image, ax=ax, label="present / expected", fraction=0.04)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", dpi=100, bbox_inches="tight")


__all__ = [
    "BookReport",
    "GapReport",
    "MinuteReport",
    "SequenceRun",
    "format_report",
    "gaps_report",
    "save_heatmap",
    "unchanged_runs",
]
