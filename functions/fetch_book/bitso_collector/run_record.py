"""The run record of one call: typed, built in one place, and the same stored or replied.

`to_json` gives the stored layout (schemas/run_record.schema.json); fields a path does not have
(the counts of a claimed minute, the plan of a misconfigured instance) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from bitso_format import (
    RUN_RECORD_SCHEMA_VERSION,
    iso_millis,
    iso_minute,
    run_record_name,
    seconds_to_ms,
)
from bitso_logs import JsonLogger

from .call_summary import CallSummary, slot_uses_phrase
from .errors import StorageError
from .outcomes import CallStatus
from .sinks.base import Sink
from .throttle_backoff import PaceMode, PaceState


class StreamsPart(Protocol):
    """The run record's `streams` part, as the stream session builds it (streams/record_part.py)."""

    @property
    def lost(self) -> Sequence[object]: ...
    @property
    def unacknowledged(self) -> Sequence[object]: ...
    @property
    def messages(self) -> int: ...
    @property
    def gaps(self) -> int: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def backfilled(self) -> int: ...
    @property
    def continuous(self) -> bool: ...
    def to_json(self) -> dict[str, Any]: ...


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

    @classmethod
    def of(cls, mode: PaceMode, state: PaceState, full: int) -> BackOffFacts:
        """How a call ran, and the instance's pace state after it."""
        return cls(mode, full, state.pace, state.silent_until, state.throttled_at)

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
    streams: StreamsPart | None = None
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


def store_record(
    sink: Sink, prefix: str, record: RunRecord, minute_ms: int, deadline: float, log: JsonLogger
) -> RunRecord:
    """The record as stored (with its location), or as it is when it cannot be stored."""
    key = run_record_name(prefix, minute_ms)
    stored = record.stored_at(sink.location(key))
    data = (json.dumps(stored.to_json(), separators=(",", ":")) + "\n").encode()
    try:
        sink.create(key, data, deadline=deadline)
    except StorageError as error:
        log.error("run record not stored", key=key, reason=str(error))
        # The archive is missing an object: as lost as a snapshot that was not stored.
        return replace(record, status=CallStatus.LOST, error=f"run record not stored: {error}")
    return stored


def log_not_run(
    record: RunRecord, message: str, log: JsonLogger, severity: str = "WARNING"
) -> None:
    """The summary line of a call that requested nothing."""
    log.log(
        severity,
        message,
        event="run_summary",
        status=str(record.status),
        written=0,
        failed=0,
        throttled=0,
        lost=0,
    )


def log_summary(record: RunRecord, log: JsonLogger) -> None:
    """The one summary line of a call that ran: its counts, and its streams'."""
    summary, facts, streams = record.summary, record.facts, record.streams
    assert summary is not None and facts is not None  # a call that ran had a plan
    stream_counts: dict[str, Any] = {}
    if streams is not None:
        stream_counts = {
            "stream_messages": streams.messages,
            "stream_gaps": streams.gaps,
            "stream_reconnects": streams.reconnects,
            "stream_continuous": streams.continuous,
            "backfilled_trades": streams.backfilled,
            "streams_lost": len(streams.lost),
            "streams_unacknowledged": len(streams.unacknowledged),
        }
    status = record.status
    severity = {CallStatus.OK: "INFO", CallStatus.DEGRADED: "WARNING"}.get(status, "ERROR")
    log.log(
        severity,
        f"run finished: {status}, {summary.written} of {facts.slots_planned} snapshots written"
        + slot_uses_phrase(summary),
        event="run_summary",
        status=str(status),
        planned=facts.slots_planned,
        requests_per_minute=facts.requests_per_minute,
        pace=str(record.back_off.mode) if record.back_off else None,
        missed_late=facts.slots_missed_late,
        written=summary.written,
        duplicates=summary.duplicates,
        failed=sum(summary.failed.values()),
        failed_by_reason=summary.failed,
        throttled=summary.throttled,
        lost=len(summary.lost),
        lateness_ms=asdict(summary.lateness_ms),
        duration_ms=round((record.finished_at - record.started_at) * 1000, 1),
        **stream_counts,
    )


def claimed_reason(minute_start: float, now: float, period_s: float = 60.0) -> str:
    """Why a call whose minute was claimed did nothing, and when it is worth calling again."""
    minute = iso_minute(seconds_to_ms(minute_start))
    following = minute_start + period_s
    return (
        f"the minute {minute} was already collected (claimed by another call), so nothing was "
        f"requested; the next minute starts at {iso_millis(seconds_to_ms(following))}, "
        f"in {max(0.0, following - now):.0f} s"
    )
