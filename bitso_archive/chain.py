"""Which instants of a book can be known, and the book at them (pure: fed by iterators).

The stream is continuous: one anchor's chain runs across many cuts, instances and hours. The
book at ``t`` is known iff ``t`` was watched (:mod:`bitso_archive.watched`) and the latest anchor
received at or before ``t`` starts a chain contiguous by sequence through every diff received
at or before ``t`` and the first one after it, where the diffs are every instance's, merged by
sequence (:mod:`bitso_archive.stream_reader`):

- diffs at or below the anchor's sequence are skipped; the chain takes the anchor's sequence
  + 1, + 2, ... from the diffs received since :data:`ANCHOR_LOOKBACK_MS` before the anchor's
  slot (the socket may pass the book REST answers with before the answer arrives);
- the first missing sequence ends the chain at the receipt of the last diff before it (the
  book may have changed at any time after it): ``sequence_gap`` until the next anchor;
- a hole in the watched time where messages may have been missed (anything but a freeze) is
  crossed only when a diff received after it continues the chain; when none was received at
  all, the chain is unknown from the hole's end (named like the hole) until the next anchor.

Everything else unknown is a hole of the watched time, named by it; before the first anchor
found it is ``before_first_anchor``. :class:`BookWalker` answers instants in increasing order,
holding one book and a short history of diffs; :func:`chain_spans` names every span of a range.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from bitso_archive.orderbook import (
    AGGREGATED_DEPTH,
    BEFORE_FIRST_ANCHOR,
    BUY,
    DRIFT,
    FROZEN,
    MATCH,
    SELL,
    SEQUENCE_GAP,
    UNCHECKED,
    AggregatedSnapshot,
    Anchor,
    BookView,
    Diff,
    DriftCheck,
    KnownSpan,
    Level,
    MissingSequence,
    OrderBook,
    Span,
    UnknownSpan,
    first_difference,
    span_at,
)
from bitso_archive.watched import Watched
from bitso_format import HOUR_MS, iso_millis

#: How long before its slot an anchor's chain takes diffs from (REST may answer with a book
#: the socket has already passed).
ANCHOR_LOOKBACK_MS = 60_000
#: How far back an anchor is looked for: older ones start no chain.
MAX_ANCHOR_AGE_MS = 2 * HOUR_MS


@dataclass(frozen=True, slots=True)
class AnchorMark:
    """What the spans need of an anchor (its orders are held only while it is the book)."""

    name: str
    sequence: int
    slot_ms: int
    received_ms: int


def mark(anchor: Anchor) -> AnchorMark:
    return AnchorMark(anchor.name, anchor.sequence, anchor.slot_ms, anchor.received_ms)


@dataclass(frozen=True, slots=True)
class ChainEnd:
    """Where a chain stops: the receipt of the last diff before its first missing sequence."""

    at_ms: int
    gap: MissingSequence


@dataclass(slots=True)
class Chain:
    """An anchor and, once found, where its chain ends (None: it runs on)."""

    anchor: AnchorMark
    end: ChainEnd | None = None


def _gap_detail(chain: Chain, following: AnchorMark | None) -> str:
    assert chain.end is not None
    gap = chain.end.gap
    after = (
        f"received {iso_millis(gap.after_ms)}"
        if gap.after_ms is not None
        else f"the sequence of anchor {chain.anchor.name}"
    )
    return (
        f"sequence gap after {gap.after} ({after}), next {gap.next} (received "
        f"{iso_millis(gap.next_ms)}); {_then(following)}"
    )


def _then(following: AnchorMark | None) -> str:
    if following is None:
        return "no later anchor was found"
    return f"known again from the next anchor, received {iso_millis(following.received_ms)}"


def _unproven(
    chain: Chain, holes: Sequence[UnknownSpan], stream_end_ms: int | None
) -> UnknownSpan | None:
    """The first hole after the anchor, where diffs may have been missed, with no diff
    received after it to show whether any was."""
    for hole in holes:
        if (
            hole.reason != FROZEN
            and hole.end_ms > chain.anchor.received_ms
            and (stream_end_ms is None or hole.end_ms > stream_end_ms)
        ):
            return hole
    return None


def chain_spans(
    book: str,
    start_ms: int,
    end_ms: int,
    chains: Sequence[Chain],
    holes: Sequence[UnknownSpan],
    stream_end_ms: int | None,
) -> list[Span]:
    """``[start_ms, end_ms)`` cut into known and unknown spans, in time order: ``chains`` in
    the order their anchors were received, ``holes`` those of the watched time, and
    ``stream_end_ms`` the receipt of the last diff read (None: none was)."""
    base: list[Span] = []
    first = chains[0].anchor if chains else None
    if first is None or first.received_ms > start_ms:
        stop = min(first.received_ms, end_ms) if first else end_ms
        detail = (
            f"before the first anchor of {book} found ({first.name}, sequence "
            f"{first.sequence}, received {iso_millis(first.received_ms)})"
            if first
            else f"no anchor of {book} was found (searched back {MAX_ANCHOR_AGE_MS // HOUR_MS} h)"
        )
        if stop > start_ms:
            base.append(UnknownSpan(start_ms, stop, BEFORE_FIRST_ANCHOR, detail))
    for index, chain in enumerate(chains):
        following = chains[index + 1].anchor if index + 1 < len(chains) else None
        window_start = max(chain.anchor.received_ms, start_ms)
        window_end = min(following.received_ms, end_ms) if following else end_ms
        if window_end <= window_start:
            continue
        known_end = window_end
        if chain.end is not None:
            known_end = min(max(chain.end.at_ms, window_start), window_end)
        unproven = _unproven(chain, holes, stream_end_ms)
        proven_end = known_end
        if unproven is not None and unproven.end_ms < known_end:
            proven_end = max(unproven.end_ms, window_start)
        if proven_end > window_start:
            anchor = chain.anchor
            base.append(KnownSpan(window_start, proven_end, anchor.name, anchor.sequence))
        if proven_end < known_end:
            assert unproven is not None
            detail = (
                f"{unproven.detail}; no diff was received after that to show whether any "
                f"was missed; {_then(following)}"
            )
            base.append(UnknownSpan(proven_end, known_end, unproven.reason, detail))
        if known_end < window_end:
            assert chain.end is not None
            detail = _gap_detail(chain, following)
            base.append(UnknownSpan(known_end, window_end, SEQUENCE_GAP, detail, chain.end.gap))
    return _overlay(base, holes, start_ms, end_ms)


def _overlay(
    base: Sequence[Span], holes: Sequence[UnknownSpan], start_ms: int, end_ms: int
) -> list[Span]:
    """``base`` with the holes of the watched time laid over it (a hole's name wins)."""
    inside = [
        replace(h, start_ms=max(h.start_ms, start_ms), end_ms=min(h.end_ms, end_ms))
        for h in holes
        if h.end_ms > start_ms and h.start_ms < end_ms
    ]
    spans: list[Span] = list(inside)
    for span in base:
        start = span.start_ms
        for hole in inside:
            if hole.end_ms <= start or hole.start_ms >= span.end_ms:
                continue
            if hole.start_ms > start:
                spans.append(replace(span, start_ms=start, end_ms=hole.start_ms))
            start = max(start, hole.end_ms)
        if start < span.end_ms:
            spans.append(replace(span, start_ms=start))
    return sorted(spans, key=lambda s: s.start_ms)


class ChainObserver(Protocol):
    """Told every change the walker makes to its book, for a reader that keeps them all (the
    research tables): the book as each chain starts from its anchor, then each diff the chain
    applies with the price levels it changed, as they are after it (None: the level is gone)."""

    def started(self, chain: Chain, book: OrderBook) -> None: ...

    def applied(
        self, chain: Chain, diff: Diff, levels: list[tuple[int, Decimal, Level | None]]
    ) -> None: ...


class AnchorFeed:
    """Anchors in the order of their slots, each read when first needed (None: unreadable)."""

    def __init__(self, slots: Iterable[int], load: Callable[[int], Anchor | None]) -> None:
        self._slots = deque(sorted(set(slots)))
        self._load = load

    def next_slot(self) -> int | None:
        return self._slots[0] if self._slots else None

    def take(self) -> Anchor | None:
        return self._load(self._slots.popleft())


class BookWalker:
    """One book walked forward through ``[start_ms, end_ms)``: ``at`` answers instants in
    increasing order, ``finish`` names every span. Holds one anchor's book and the diffs of
    the last :data:`ANCHOR_LOOKBACK_MS` before the next anchor's slot, however long the range.

    ``snapshots`` (aggregated, in slot order) are checked against the book rebuilt at their
    sequence: ``drift``. ``observer`` (optional) is told every change made to the book.
    """

    def __init__(
        self,
        book: str,
        diffs: Iterable[Diff],
        anchors: AnchorFeed,
        watched: Watched,
        start_ms: int,
        end_ms: int,
        snapshots: Iterable[AggregatedSnapshot] = (),
        observer: ChainObserver | None = None,
    ) -> None:
        self.book = book
        self.watched = watched
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.chains: list[Chain] = []
        self.drift: list[DriftCheck] = []
        self._diffs: Iterator[Diff] = iter(diffs)
        self._ahead: deque[Diff] = deque()
        self._history: deque[Diff] = deque()
        self._last_ms: int | None = None  # receipt of the last diff consumed
        self._feed = anchors
        self._waiting: list[Anchor] = []  # read, not yet received by now
        self._chain: Chain | None = None
        self._book = OrderBook()
        self._expected = 0
        self._applied_ms = 0  # the anchor's receipt, or that of the last diff applied after it
        self._last_applied_ms: int | None = None
        self._snapshots = iter(snapshots)
        self._next_snapshot: AggregatedSnapshot | None = next(self._snapshots, None)
        self._checks: list[tuple[int, int, AggregatedSnapshot]] = []  # by sequence
        self._order = itertools.count()
        self._cached: UnknownSpan | None = None
        self._holes = 0  # holes of the watched time when the span was cached
        self._floor: int | None = None
        self._observer = observer
        self._set_floor()

    # -- reading ahead ------------------------------------------------------------------------
    def _peek(self, index: int = 0) -> Diff | None:
        while len(self._ahead) <= index:
            diff = next(self._diffs, None)
            if diff is None:
                return None
            self._ahead.append(diff)
        return self._ahead[index]

    def _load_anchors(self, until_ms: int) -> None:
        slot = self._feed.next_slot()
        while slot is not None and slot <= until_ms:
            anchor = self._feed.take()
            if anchor is not None:
                self._waiting.append(anchor)
                self._waiting.sort(key=lambda a: a.received_ms)
            slot = self._feed.next_slot()
        self._set_floor()

    def _next_anchor_after(self, at_ms: int) -> Anchor | None:
        while True:
            later = [a for a in self._waiting if a.received_ms > at_ms]
            if later:
                return later[0]
            slot = self._feed.next_slot()
            if slot is None:
                return None
            self._load_anchors(slot)

    def _set_floor(self) -> None:
        """Keep the diffs the next anchor's chain may need: those received since
        ANCHOR_LOOKBACK_MS before its slot (None: no anchor comes)."""
        slots = [a.slot_ms for a in self._waiting]
        upcoming = self._feed.next_slot()
        if upcoming is not None:
            slots.append(upcoming)
        self._floor = min(slots) - ANCHOR_LOOKBACK_MS if slots else None

    # -- walking ------------------------------------------------------------------------------
    def _advance(self, at_ms: int) -> None:
        """Take every anchor and diff received at or before ``at_ms``, in order of receipt (a
        diff received with an anchor comes first)."""
        self._load_anchors(at_ms)
        self._feed_snapshots(at_ms + ANCHOR_LOOKBACK_MS)
        while self._waiting and self._waiting[0].received_ms <= at_ms:
            anchor = self._waiting.pop(0)
            self._drain(anchor.received_ms)
            self._set_floor()
            self._switch(anchor)
        self._drain(at_ms)
        self._look_past()

    def _drain(self, until_ms: int) -> None:
        ahead = self._ahead
        while ahead and ahead[0].received_ms <= until_ms:
            self._consume(ahead.popleft())
        if ahead:
            return
        for diff in self._diffs:
            if diff.received_ms > until_ms:
                ahead.append(diff)
                return
            self._consume(diff)

    def _switch(self, anchor: Anchor) -> None:
        self._chain = Chain(mark(anchor))
        self.chains.append(self._chain)
        self._book = OrderBook(anchor.orders)
        self._expected = anchor.sequence + 1
        self._applied_ms = anchor.received_ms
        self._last_applied_ms = None
        self._cached = None
        self._check(anchor.sequence)
        if self._observer is not None:
            self._observer.started(self._chain, self._book)
        since = anchor.slot_ms - ANCHOR_LOOKBACK_MS
        for diff in self._history:
            if diff.received_ms >= since:
                self._step(diff)

    def _consume(self, diff: Diff) -> None:
        history, floor = self._history, self._floor
        if floor is not None and diff.received_ms >= floor:
            history.append(diff)
        while history and (floor is None or history[0].received_ms < floor):
            history.popleft()
        self._last_ms = diff.received_ms
        self._step(diff)

    def _step(self, diff: Diff) -> None:
        chain = self._chain
        if chain is None or chain.end is not None or diff.sequence < self._expected:
            return
        if diff.sequence == self._expected:
            if self._observer is None:
                self._book.apply(diff)
            else:
                self._observer.applied(chain, diff, self._book.apply_levels(diff))
            self._expected += 1
            self._applied_ms = max(self._applied_ms, diff.received_ms)
            self._last_applied_ms = diff.received_ms
            self._check(diff.sequence)
            return
        self._end(diff)

    def _end(self, diff: Diff) -> None:
        assert self._chain is not None
        gap = MissingSequence(
            self._expected - 1, diff.sequence, self._last_applied_ms, diff.received_ms
        )
        self._chain.end = ChainEnd(self._applied_ms, gap)
        self._cached = None

    def _look_past(self) -> None:
        """The first diff after now that the chain needs: a gap before it ends the chain now."""
        if self._chain is None or self._chain.end is not None:
            return
        index = 0
        while (diff := self._peek(index)) is not None:
            if diff.sequence > self._expected:
                self._end(diff)
            if diff.sequence >= self._expected:
                return
            index += 1

    # -- the self-check -----------------------------------------------------------------------
    def _feed_snapshots(self, until_slot_ms: int) -> None:
        snap = self._next_snapshot
        while snap is not None and snap.slot_ms <= until_slot_ms:
            heapq.heappush(self._checks, (snap.sequence, next(self._order), snap))
            snap = next(self._snapshots, None)
        self._next_snapshot = snap

    def _check(self, sequence: int) -> None:
        while self._checks and self._checks[0][0] <= sequence:
            _seq, _order, snap = heapq.heappop(self._checks)
            if snap.sequence < sequence:
                self.drift.append(_unchecked(snap))
                continue
            difference = first_difference(self._book, snap)
            status = DRIFT if difference else MATCH
            self.drift.append(DriftCheck(snap.name, snap.sequence, status, difference))

    # -- answers ------------------------------------------------------------------------------
    def at(self, at_ms: int, depth: int | None = AGGREGATED_DEPTH) -> BookView | UnknownSpan:
        """The book at ``at_ms`` (not before the last instant asked), or the span that says
        why it cannot be known."""
        self._advance(at_ms)
        chain = self._chain
        if (
            self.watched.hole_at(at_ms) is not None
            or chain is None
            or (chain.end is not None and at_ms >= chain.end.at_ms)
            or self._unproven_at(chain, at_ms)
        ):
            return self._span_at(at_ms)
        return BookView(
            self.book,
            at_ms,
            self._expected - 1,
            chain.anchor.name,
            self._book.side(BUY, depth),
            self._book.side(SELL, depth),
        )

    def _stream_end(self) -> int | None:
        ahead = self._peek()
        return ahead.received_ms if ahead is not None else self._last_ms

    def _unproven_at(self, chain: Chain, at_ms: int) -> bool:
        if self._peek() is not None:
            return False  # a diff after now: the chain is checked through it
        hole = _unproven(chain, self.watched.holes, self._last_ms)
        return hole is not None and hole.end_ms <= at_ms

    def _span_at(self, at_ms: int) -> UnknownSpan:
        cached, holes = self._cached, len(self.watched.holes)
        if cached is not None and cached.start_ms <= at_ms < cached.end_ms and holes == self._holes:
            return cached  # the same span, unless a hole was found since
        chains = [self._chain] if self._chain is not None else []
        following = self._next_anchor_after(at_ms)
        if following is not None:
            chains.append(Chain(mark(following)))
        start = max(self.start_ms, min(at_ms, chains[0].anchor.received_ms if chains else at_ms))
        end = max(self.end_ms, at_ms + 1, following.received_ms if following else 0)
        spans = chain_spans(self.book, start, end, chains, self.watched.holes, self._stream_end())
        span = span_at(spans, at_ms)
        assert isinstance(span, UnknownSpan), (span, at_ms)
        self._cached, self._holes = span, holes
        return span

    def finish(self) -> list[Span]:
        """Every span of ``[start_ms, end_ms)``, known or not, after walking to its end."""
        self._advance(self.end_ms - 1)
        for _seq, _order, snap in sorted(self._checks):
            self.drift.append(_unchecked(snap))
        self._checks = []
        return chain_spans(
            self.book,
            self.start_ms,
            self.end_ms,
            self.chains,
            self.watched.holes,
            self._stream_end(),
        )


def _unchecked(snap: AggregatedSnapshot) -> DriftCheck:
    detail = f"no anchor's chain reaches sequence {snap.sequence}"
    return DriftCheck(snap.name, snap.sequence, UNCHECKED, detail)
