"""The run record of one call: typed, built in one place, and the same stored or replied.

`to_json` gives the stored layout (schemas/run_record.schema.json); fields a path does not have
(the counts of a claimed minute, the plan of a misconfigured instance) are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from bitso_format import RUN_RECORD_SCHEMA_VERSION, iso_millis, iso_minute, seconds_to_ms

from .backoff import PaceMode
from .outcomes import CallStatus
from .streams.summary import StreamsSummary
from .summary import CallSummary


@dataclass(frozen=True)
class CallFacts:
    """What a call was asked to do and could plan, known before its first request."""

    minute_start: float
    scheduled: bool
    strategy: str
    books: tuple[str, ...]
    requests_per_minute: int
    aggregate: bool
    slots_planned: int
    slots_missed_late: int
    slots_outside_window: int


@dataclass(frozen=True)
class BackOffFacts:
    """The instance's pace around one call (see `backoff`)."""

    #: How this call's minute was paced: full, backing_off (it began in the silence after a
    #: throttling reply) or recovering (below the full pace).
    mode: PaceMode
    full_requests_per_minute: int
    #: The state after the call: the next call's pace, and the latest silence.
    next_requests_per_minute: int
    silent_until: float | None
    throttled_at: float | None

    def to_json(self) -> dict[str, Any]:
        def stamp(at: float | None) -> str | None:
            return None if at is None else iso_millis(seconds_to_ms(at))

        return {
            "mode": str(self.mode),
            "full_requests_per_minute": self.full_requests_per_minute,
            "next_requests_per_minute": self.next_requests_per_minute,
            "silent_until": stamp(self.silent_until),
            "throttled_at": stamp(self.throttled_at),
        }


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    started_at: float
    finished_at: float
    status: CallStatus
    facts: CallFacts | None = None
    summary: CallSummary | None = None
    #: The WebSocket part, when the call recorded streams (`STREAMS`).
    streams: StreamsSummary | None = None
    cpu_ms: float | None = None
    #: What the counts cannot say: why the call did not run (misconfigured, too late or too
    #: early, the minute not claimable), or that its run record could not be stored.
    error: str | None = None
    #: Where the record is stored; None when it is not (not stored, or nothing to store).
    location: str | None = None
    back_off: BackOffFacts | None = None

    def stored_at(self, location: str | None) -> RunRecord:
        return replace(self, location=location)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schema_version": RUN_RECORD_SCHEMA_VERSION, "run_id": self.run_id}
        facts = self.facts
        if facts is not None:
            body["minute"] = iso_minute(seconds_to_ms(facts.minute_start))
        body["started_at"] = iso_millis(seconds_to_ms(self.started_at))
        if facts is not None:
            body.update(
                scheduled=facts.scheduled,
                strategy=facts.strategy,
                books=list(facts.books),
                requests_per_minute=facts.requests_per_minute,
                aggregate=facts.aggregate,
                slots_in_minute=facts.requests_per_minute,
                slots_planned=facts.slots_planned,
                slots_missed_late=facts.slots_missed_late,
                slots_outside_window=facts.slots_outside_window,
            )
        if self.back_off is not None:
            body["back_off"] = self.back_off.to_json()
        if self.summary is not None:
            summary = asdict(self.summary)
            summary["lost"] = list(summary["lost"])
            summary["failures"] = list(summary["failures"])
            summary["slot_uses"] = list(summary["slot_uses"])
            body.update(summary)
        if self.streams is not None:
            body["streams"] = self.streams.to_json()
        body["status"] = str(self.status)
        if self.error is not None:
            body["error"] = self.error
        body["finished_at"] = iso_millis(seconds_to_ms(self.finished_at))
        if self.summary is not None:
            body["duration_ms"] = round((self.finished_at - self.started_at) * 1000, 1)
            body["cpu_ms"] = self.cpu_ms
        if self.location is not None:
            body["run_record"] = self.location
        return body


def claimed_reason(minute_start: float, now: float, period_s: float = 60.0) -> str:
    """Why a call whose minute was claimed did nothing, and when it is worth calling again."""
    minute = iso_minute(seconds_to_ms(minute_start))
    following = minute_start + period_s
    return (
        f"the minute {minute} was already collected (claimed by another call), so nothing was "
        f"requested; the next minute starts at {iso_millis(seconds_to_ms(following))}, "
        f"in {max(0.0, following - now):.0f} s"
    )
