"""What one book's channel received in a call: counts, sequence checks and coverage (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SequenceGap:
    """A diff whose sequence was not the previous one plus one (`after` is the previous)."""

    after: int
    next: int


@dataclass
class SequenceCheck:
    """The diff sequence of one book across the call's connections (a jump after a reconnect
    is a gap like any other)."""

    first: int | None = None
    last: int | None = None
    gaps: list[SequenceGap] = field(default_factory=list)

    def observe(self, sequence: int) -> SequenceGap | None:
        """Record one diff's sequence; the gap before it, if there is one."""
        gap = None
        if self.last is not None and sequence != self.last + 1:
            gap = SequenceGap(self.last, sequence)
            self.gaps.append(gap)
        if self.first is None:
            self.first = sequence
        self.last = sequence
        return gap


@dataclass
class ChannelTally:
    """One (book, channel) of a call. Times are epoch seconds on the collector's clock."""

    messages: int = 0
    sequence: SequenceCheck = field(default_factory=SequenceCheck)
    #: How many times the subscription was acknowledged (the first time included).
    acks: int = 0
    #: Since when the subscription is live and acknowledged (None: it is not).
    live_since: float | None = None
    #: Closed stretches of live subscription, (from, to).
    covered: list[tuple[float, float]] = field(default_factory=list)
    backfilled: int = 0

    @property
    def reconnects(self) -> int:
        """Times the subscription was re-established after it was first acknowledged."""
        return max(0, self.acks - 1)

    def went_live(self, at: float) -> None:
        self.acks += 1
        if self.live_since is None:
            self.live_since = at

    def went_down(self, at: float) -> None:
        if self.live_since is not None:
            self.covered.append((self.live_since, at))
            self.live_since = None

    def coverage(self, until: float) -> list[tuple[float, float]]:
        """Every stretch of live subscription, the current one closed at `until`."""
        if self.live_since is None:
            return list(self.covered)
        return [*self.covered, (self.live_since, until)]


def uncovered_ms(covered: list[tuple[float, float]], start: float, end: float) -> int:
    """Milliseconds of [start, end] outside every covered stretch (stretches may overlap)."""
    if end <= start:
        return 0
    clipped = sorted((max(a, start), min(b, end)) for a, b in covered if b > start and a < end)
    total = 0.0
    reach = start
    for a, b in clipped:
        if a > reach:
            total += a - reach
        reach = max(reach, b)
    total += max(0.0, end - reach)
    return round(total * 1000)
