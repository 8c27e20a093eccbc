"""What one book's channel received between two cuts: counts, sequence checks, and when the
subscription was watched (pure). A tally lives as long as the instance; `cut` hands over what
the cut covers and starts the next."""

from __future__ import annotations

from dataclasses import dataclass, field

from bitso_format import FROZEN_REASON, OUTAGE_REASON


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """A diff whose sequence was not the previous one plus one (`after` is the previous)."""

    after: int
    next: int


@dataclass(frozen=True, slots=True)
class Unwatched:
    """A span inside a cut when the subscription was not watched, and why."""

    start: float
    end: float
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelCut:
    """One (book, channel) of a cut. Times are epoch seconds on the collector's clock."""

    messages: int
    first_sequence: int | None
    last_sequence: int | None
    sequence_gaps: tuple[SequenceGap, ...]
    reconnects: int
    backfilled: int
    #: Trades messages not stored because a backfill had stored all their trades already.
    repeated: int
    #: The receipt span the cut watched (None: never acknowledged yet).
    covers: tuple[float, float] | None
    first_received: float | None
    last_received: float | None
    continuous: bool
    unwatched: tuple[Unwatched, ...]

    @property
    def uncovered_ms(self) -> int:
        """Milliseconds of `covers` without a live subscription (outages, not freezes)."""
        outages = [(u.start, u.end) for u in self.unwatched if u.reason == OUTAGE_REASON]
        return round(sum(b - a for a, b in _merged(outages)) * 1000)


@dataclass
class ChannelTally:
    messages: int = 0
    acks: int = 0
    backfilled: int = 0
    repeated: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    gaps: list[SequenceGap] = field(default_factory=list)
    first_received: float | None = None
    last_received: float | None = None
    #: Start of the current cut's covered span: the previous cut, or the first ack.
    covers_from: float | None = None
    live: bool = False
    down_since: float | None = None
    #: When the instance itself closed the connection (stopping): the watch ends there.
    closed_at: float | None = None
    outages: list[tuple[float, float]] = field(default_factory=list)
    #: Whether the subscription was live at the previous cut (None: no previous cut covered it).
    live_at_last_cut: bool | None = None
    last_sequence_at_last_cut: int | None = None

    def went_live(self, at: float) -> None:
        self.acks += 1
        if self.covers_from is None:
            self.covers_from = at
        if self.down_since is not None:
            self.outages.append((self.down_since, at))
            self.down_since = None
        if self.closed_at is not None:
            self.outages.append((self.closed_at, at))
            self.closed_at = None
        self.live = True

    def went_down(self, at: float, closed: bool = False) -> None:
        """The subscription ended at `at`: lost (an outage until it is back), or `closed` by
        the instance itself as it stops (the watch ends there; nothing is missed after it)."""
        if self.live:
            self.live = False
            if closed:
                self.closed_at = at
            else:
                self.down_since = at

    def received(self, at: float, sequence: int | None) -> SequenceGap | None:
        """One data message; the sequence gap before it, if there is one."""
        self.messages += 1
        if self.first_received is None:
            self.first_received = at
        self.last_received = at
        if sequence is None:
            return None
        gap = None
        if self.last_sequence is not None and sequence != self.last_sequence + 1:
            gap = SequenceGap(self.last_sequence, sequence)
            self.gaps.append(gap)
        if self.first_sequence is None:
            self.first_sequence = sequence
        self.last_sequence = sequence
        return gap

    def cut(self, at: float, frozen: list[tuple[float, float]]) -> ChannelCut:
        """What this cut covers (ending at `at`), and start the next one."""
        end = at if self.closed_at is None else min(at, self.closed_at)
        covers = None if self.covers_from is None else (self.covers_from, end)
        outages = list(self.outages)
        if self.down_since is not None:
            outages.append((self.down_since, at))
        unwatched: list[Unwatched] = []
        if covers is not None:
            start = covers[0]
            unwatched = [Unwatched(a, b, OUTAGE_REASON) for a, b in outages if b > start]
            unwatched += [
                Unwatched(max(a, start), min(b, end), FROZEN_REASON)
                for a, b in frozen
                if b > start and a < end
            ]
            unwatched.sort(key=lambda u: u.start)
        first_ack_here = self.live_at_last_cut is None and self.acks > 0
        boundary_ok = (
            self.first_sequence is None
            or self.last_sequence_at_last_cut is None
            or not self.gaps
            or self.gaps[0].after != self.last_sequence_at_last_cut
        )
        result = ChannelCut(
            messages=self.messages,
            first_sequence=self.first_sequence,
            last_sequence=self.last_sequence if self.first_sequence is not None else None,
            sequence_gaps=tuple(self.gaps),
            reconnects=max(0, self.acks - 1) if first_ack_here else self.acks,
            backfilled=self.backfilled,
            repeated=self.repeated,
            covers=covers,
            first_received=self.first_received,
            last_received=self.last_received,
            continuous=bool(self.live_at_last_cut) and boundary_ok,
            unwatched=tuple(unwatched),
        )
        if covers is not None:
            self.live_at_last_cut = self.live
            # After the instance's own close nothing is watched until a new subscription.
            self.covers_from = at if self.closed_at is None else None
            self.closed_at = None
        self.last_sequence_at_last_cut = self.last_sequence
        self.messages = self.acks = self.backfilled = self.repeated = 0
        self.first_sequence = None
        self.gaps = []
        self.first_received = self.last_received = None
        self.outages = []
        if self.down_since is not None:
            self.down_since = at
        return result


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged
