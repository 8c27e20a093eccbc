"""The counts of a call's run record, computed from the slot ledger (pure)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from bitso_format import iso_millis

from .ledger import LedgerView
from .outcomes import Outcome
from .slot_policy import SlotUse


@dataclass(frozen=True)
class SlotNote:
    """One slot named in the run record: a failure or a lost snapshot."""

    book: str
    slot: str
    reason: str


@dataclass(frozen=True)
class SlotUseNote:
    """A slot that fetched something other than an ordinary snapshot (streams on)."""

    book: str
    slot: str
    use: str


@dataclass(frozen=True)
class Lateness:
    """Request-start lateness in ms (None when nothing started)."""

    p50: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class BookCounts:
    planned: int = 0
    written: int = 0


@dataclass(frozen=True)
class CallSummary:
    requests_sent: int = 0
    written: int = 0
    duplicates: int = 0
    #: Slots that were neither stored nor lost, by reason.
    failed: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    skipped_after_throttle: int = 0
    abandoned: int = 0
    lost: tuple[SlotNote, ...] = ()
    failures: tuple[SlotNote, ...] = ()
    lateness_ms: Lateness = Lateness()
    per_book: dict[str, BookCounts] = field(default_factory=dict)
    #: Every slot used for an anchor or a trades backfill, in slot order.
    slot_uses: tuple[SlotUseNote, ...] = ()


def summarise(view: LedgerView) -> CallSummary:
    outcomes = view.outcomes
    counts = Counter(outcomes.values())
    lateness = sorted((at - view.slots[number].at) * 1000 for number, at in view.started_at.items())

    def note(number: int, reason: str) -> SlotNote:
        slot = view.slots[number]
        return SlotNote(slot.book, iso_millis(slot.at_ms), reason)

    per_book: dict[str, BookCounts] = {}
    for number, outcome in outcomes.items():
        book = view.slots[number].book
        entry = per_book.get(book, BookCounts())
        per_book[book] = BookCounts(entry.planned + 1, entry.written + (outcome is Outcome.WRITTEN))
    return CallSummary(
        requests_sent=len(lateness),
        written=counts[Outcome.WRITTEN],
        duplicates=counts[Outcome.DUPLICATE],
        failed={str(o): n for o, n in sorted(counts.items()) if o.failed},
        throttled=view.throttle_replies,
        skipped_after_throttle=counts[Outcome.AFTER_THROTTLE],
        abandoned=counts[Outcome.ABANDONED],
        lost=tuple(note(lost.slot.number, lost.reason) for lost in view.lost),
        failures=tuple(note(n, str(o)) for n, o in sorted(outcomes.items()) if o.failed),
        lateness_ms=_lateness(lateness),
        per_book=dict(sorted(per_book.items())),
        slot_uses=tuple(
            SlotUseNote(view.slots[n].book, iso_millis(view.slots[n].at_ms), str(use))
            for n, use in sorted(view.uses.items())
        ),
    )


def _lateness(values: list[float]) -> Lateness:
    if not values:
        return Lateness()
    p99 = (
        statistics.quantiles(values, n=100, method="inclusive")[98]
        if len(values) > 1
        else values[0]
    )
    return Lateness(round(statistics.median(values), 2), round(p99, 2), round(values[-1], 2))


def slot_uses_phrase(summary: CallSummary) -> str:
    """Where the slots that were not ordinary snapshots went, for the summary line
    (` (2 slots were trades backfills)`, ` (1 slot was an anchor, 2 trades backfills)`); empty
    when there were none. Anchors are snapshots too (aggregate=false); backfills store trades."""
    uses = Counter(note.use for note in summary.slot_uses)
    kinds = [
        (uses[str(SlotUse.ANCHOR)], "an anchor", "anchors"),
        (uses[str(SlotUse.TRADES_BACKFILL)], "a trades backfill", "trades backfills"),
    ]
    parts = [f"{n} {one if n == 1 else many}" for n, one, many in kinds if n]
    if not parts:
        return ""
    first, _, what = parts[0].partition(" ")
    verb = "slot was" if first == "1" else "slots were"
    return f" ({', '.join([f'{first} {verb} {what}', *parts[1:]])})"
