"""When a book's channel was watched, from the run and shutdown records (pure, no I/O).

Watched time W is the union, over the records of every instance, of each cut's ``covers``
minus what that cut says it did not watch (``unwatched``: an ``outage`` or ``frozen``) and minus
the hours of objects it could not store (``lost``) or that are not there (``not_recorded``).
Everything else in a range is a hole, and each hole is named: by the cut that did not watch it,
or, between the covers of two cuts, by what came before and after it:

- ``instance_start``: the previous instance wrote a shutdown record (it flushed what it held),
  and the next cover is another instance's first;
- ``crash``: the previous instance's last cut was not followed by a shutdown record (SIGKILL, a
  crash): what it received after that cut is lost;
- ``not_recorded``: a record of the same instance is missing, or nothing was recorded before or
  after it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bitso_archive.cut_records import CutRecord
from bitso_archive.orderbook import (
    CRASH,
    FROZEN,
    INSTANCE_START,
    NOT_RECORDED,
    OUTAGE,
    UnknownSpan,
)
from bitso_format import HOUR_MS, iso_millis, parse_stream_name

#: When pieces of different cuts' holes overlap, the name that says most.
_PRIORITY = {FROZEN: 0, OUTAGE: 1, NOT_RECORDED: 2}


class Watched:
    """The holes in the watched time of one book's channel over ``[start_ms, end_ms)``, sorted
    and disjoint; every other instant of the range was watched."""

    def __init__(
        self, book: str, start_ms: int, end_ms: int, holes: Sequence[UnknownSpan] = ()
    ) -> None:
        self.book = book
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.holes = sorted(holes, key=lambda h: h.start_ms)
        self._starts = [h.start_ms for h in self.holes]

    def hole_at(self, at_ms: int) -> UnknownSpan | None:
        """The hole holding ``at_ms`` (None when it was watched)."""
        if not self.start_ms <= at_ms < self.end_ms:
            detail = (
                f"{iso_millis(at_ms)} is outside the records read "
                f"({iso_millis(self.start_ms)} to {iso_millis(self.end_ms)})"
            )
            return UnknownSpan(at_ms, at_ms + 1, NOT_RECORDED, detail)
        index = bisect.bisect_right(self._starts, at_ms) - 1
        if index >= 0 and at_ms < self.holes[index].end_ms:
            return self.holes[index]
        return None

    def add(self, hole: UnknownSpan) -> None:
        """Take a hole found while reading (an object that cannot be read, late messages of a
        frozen instance): the parts of it not already in a hole become holes."""
        start, end = max(hole.start_ms, self.start_ms), min(hole.end_ms, self.end_ms)
        pieces: list[UnknownSpan] = []
        for held in self.holes:
            if held.end_ms <= start or held.start_ms >= end:
                continue
            if held.start_ms > start:
                pieces.append(replace(hole, start_ms=start, end_ms=held.start_ms))
            start = max(start, held.end_ms)
        if start < end:
            pieces.append(replace(hole, start_ms=start, end_ms=end))
        if not pieces:
            return
        merged: list[UnknownSpan] = []
        for held in sorted([*self.holes, *pieces], key=lambda h: h.start_ms):
            last = merged[-1] if merged else None
            if last is not None and last.end_ms == held.start_ms and last.reason == held.reason:
                # One hole grown (a freeze, then its late messages): the later detail says it all.
                merged[-1] = replace(last, end_ms=held.end_ms, detail=hole.detail)
            else:
                merged.append(held)
        self.holes = merged
        self._starts = [h.start_ms for h in merged]


@dataclass(frozen=True, slots=True)
class _Piece:
    start_ms: int
    end_ms: int
    reason: str
    detail: str


def _hour_part(name: str, covers: tuple[int, int]) -> tuple[int, int]:
    """The part of ``covers`` an object of the cut holds: its hour (all of it if unparsable)."""
    parsed = parse_stream_name(name)
    if parsed is None:
        return covers
    return max(covers[0], parsed.hour_ms), min(covers[1], parsed.hour_ms + HOUR_MS)


def _named_pieces(
    record: CutRecord, book: str, channel: str, present: Callable[[str], bool] | None
) -> list[_Piece]:
    entry = record.channel(book, channel)
    assert entry is not None and entry.covers is not None
    covers = entry.covers
    who = f"instance {record.instance}" if record.instance else "the collector"
    pieces = [
        _Piece(
            max(u.start_ms, covers[0]),
            min(u.end_ms, covers[1]),
            u.reason,
            (
                f"the {channel} subscription of {book} was down from {iso_millis(u.start_ms)} "
                f"to {iso_millis(u.end_ms)} ({record.name}): messages sent then were missed"
                if u.reason == OUTAGE
                else f"{who} did not run from {iso_millis(u.start_ms)} to "
                f"{iso_millis(u.end_ms)} ({record.name}): messages received then were "
                "stamped late, when it ran again"
            ),
        )
        for u in entry.unwatched
    ]
    for lost in record.lost:
        if (lost.book, lost.channel) == (book, channel):
            start, end = _hour_part(lost.object, covers)
            detail = f"the cut's object {lost.object} was not stored ({lost.reason})"
            pieces.append(_Piece(start, end, NOT_RECORDED, detail))
    if present is not None:
        for name in entry.objects:
            if not present(name):
                start, end = _hour_part(name, covers)
                detail = f"the object {name} that {record.name} names is not in the archive"
                pieces.append(_Piece(start, end, NOT_RECORDED, detail))
    return [p for p in pieces if p.end_ms > p.start_ms]


def _subtract(span: tuple[int, int], pieces: Sequence[_Piece]) -> list[tuple[int, int]]:
    start, end = span
    kept: list[tuple[int, int]] = []
    for piece in sorted(pieces, key=lambda p: p.start_ms):
        if piece.start_ms > start:
            kept.append((start, min(piece.start_ms, end)))
        start = max(start, piece.end_ms)
    if start < end:
        kept.append((start, end))
    return [k for k in kept if k[1] > k[0]]


class _Between:
    """Names a hole between the covers of two cuts by the cut before it and the one after."""

    def __init__(
        self,
        covered: Sequence[tuple[int, int, CutRecord]],
        records: Sequence[CutRecord],
        book: str,
    ) -> None:
        self.book = book
        self.by_end = sorted(covered, key=lambda c: (c[1], c[2].shutdown))
        self.ends = [c[1] for c in self.by_end]
        self.by_start = sorted(covered, key=lambda c: c[0])
        self.starts = [c[0] for c in self.by_start]
        self.last_named: dict[str | None, int] = {}
        for record in records:
            held = self.last_named.get(record.instance)
            self.last_named[record.instance] = max(held or record.named_ms, record.named_ms)

    def name(self, start: int, end: int) -> tuple[str, str]:
        before = bisect.bisect_right(self.ends, start) - 1
        after = bisect.bisect_left(self.starts, end)
        prev = self.by_end[before][2] if before >= 0 else None
        nxt = self.by_start[after] if after < len(self.by_start) else None
        then = (
            f"instance {nxt[2].instance}'s cover starts at {iso_millis(nxt[0])} ({nxt[2].name})"
            if nxt is not None
            else "no later cover was recorded"
        )
        if prev is None:
            return NOT_RECORDED, f"no cut recorded {self.book} before this; {then}"
        last_cut = iso_millis(self.by_end[before][1])
        if prev.shutdown:
            detail = (
                f"instance {prev.instance} shut down at {last_cut} ({prev.name}); the next "
                f"instance had not subscribed yet: {then}"
            )
            return INSTANCE_START, detail
        if self.last_named.get(prev.instance, prev.named_ms) > prev.named_ms:
            detail = (
                f"no record of instance {prev.instance} covers this (a cut after "
                f"{prev.name} is missing, or it did not subscribe {self.book}); {then}"
            )
            return NOT_RECORDED, detail
        if nxt is not None:
            detail = (
                f"instance {prev.instance}'s last cut was at {last_cut} ({prev.name}) and no "
                "shutdown record followed (it was killed or crashed): what it received after "
                f"that cut is lost; {then}"
            )
            return CRASH, detail
        return NOT_RECORDED, f"after the last cut recorded, at {last_cut} ({prev.name})"


def watched_time(
    records: Sequence[CutRecord],
    book: str,
    channel: str,
    start_ms: int,
    end_ms: int,
    present: Callable[[str], bool] | None = None,
) -> Watched:
    """The holes in what ``records`` watched of ``book``'s ``channel`` in ``[start_ms,
    end_ms)``, each named; ``present`` says whether an object a record names exists."""
    watched: list[tuple[int, int]] = []
    named: list[_Piece] = []
    covered: list[tuple[int, int, CutRecord]] = []
    for record in records:
        entry = record.channel(book, channel)
        if entry is None or entry.covers is None or entry.covers[1] <= entry.covers[0]:
            continue
        covered.append((*entry.covers, record))
        pieces = _named_pieces(record, book, channel, present)
        named += pieces
        watched += _subtract(entry.covers, pieces)
    between = _Between(covered, records, book)
    bounds = sorted(
        {start_ms, end_ms}
        | {x for w in watched for x in w if start_ms < x < end_ms}
        | {x for p in named for x in (p.start_ms, p.end_ms) if start_ms < x < end_ms}
    )
    watched.sort()
    named.sort(key=lambda p: p.start_ms)
    holes: list[UnknownSpan] = []
    w_index = n_index = 0
    active: list[_Piece] = []
    reach = start_ms  # the end of the watched spans begun so far
    for a, b in itertools.pairwise(bounds):
        while w_index < len(watched) and watched[w_index][0] <= a:
            reach = max(reach, watched[w_index][1])
            w_index += 1
        if reach > a:
            continue
        while n_index < len(named) and named[n_index].start_ms <= a:
            active.append(named[n_index])
            n_index += 1
        active = [p for p in active if p.end_ms > a]
        if active:
            piece = min(active, key=lambda p: (_PRIORITY.get(p.reason, 9), p.start_ms))
            reason, detail = piece.reason, piece.detail
        else:
            reason, detail = between.name(a, b)
        last = holes[-1] if holes else None
        if last is not None and last.end_ms == a and (last.reason, last.detail) == (reason, detail):
            holes[-1] = replace(last, end_ms=b)
        else:
            holes.append(UnknownSpan(a, b, reason, detail))
    return Watched(book, start_ms, end_ms, holes)
