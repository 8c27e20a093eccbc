"""One call: plan the minute's slots, claim the minute, fetch on the grid, store, record."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .call_options import SCHEDULE_HEADER, BadRequest, CallOptions
from .clock import Clock
from .config import Settings
from .errors import StorageError
from .grid import MINUTE_MS, Coverage, minute_of, slot_spacing, slots_ahead
from .keys import claim_key, run_record_key
from .logs import JsonLogger, trace_fields
from .pacing import Pacer
from .recorder import CallRecorder, StorageOptions
from .sinks.base import Sink
from .strategies import FetchJob, Strategy
from .strategies.base import TIMEOUT_HEADROOM_S
from .timefmt import iso_millis, iso_minute

SCHEMA_VERSION = 1
EARLY_TOLERANCE_S = 10.0
#: Fetching stops this long before the minute ends (requests time out `TIMEOUT_HEADROOM_S`
#: earlier). 0.3 s lets the reply of the minute's second-to-last slot (at 57.97 s) take 1.63 s and
#: still be stored, which a slow Bitso (replies of 1.2 +- 0.15 s) needs; the last replies then
#: have 0.25 s to be written before `FINISH_MARGIN_S` (a GCS attempt needs `MIN_ATTEMPT_S`).
FETCH_MARGIN_S = 0.3
#: Snapshot writes are finished (or given up on as lost) this long before the minute ends.
FINISH_MARGIN_S = 0.15
#: The run record is stored and the call answers this long before the minute ends, so calls
#: never overlap.
ANSWER_MARGIN_S = 0.02
#: With `duration_seconds`, how long after the window replies and writes may still take.
REPLY_GRACE_S = 3.0

STATUS_HTTP = {"ok": 200, "degraded": 200, "claimed": 409, "throttled": 503, "lost": 500}


@dataclass(frozen=True)
class CallPlan:
    minute: int
    minute_start: float
    books: tuple[str, ...]
    coverage: Coverage
    max_late: float
    deadline: float
    finish_by: float
    answer_by: float


def plan_call(
    settings: Settings, options: CallOptions, now: float, period_ms: int = MINUTE_MS
) -> CallPlan:
    """Which slots this call requests and by when it must stop fetching and answer."""
    period = period_ms / 1000
    anchor = options.schedule_time if options.schedule_time is not None else now
    minute = minute_of(anchor, period_ms)
    minute_start = minute * period
    if minute_start - now > EARLY_TOLERANCE_S:
        raise BadRequest(
            f"{SCHEDULE_HEADER} names a minute {minute_start - now:.0f} s ahead of this "
            f"server's clock; at most {EARLY_TOLERANCE_S:.0f} s ahead is allowed"
        )
    rpm = settings.requests_per_minute
    books = options.books or settings.books
    max_late = slot_spacing(rpm, period_ms) / 2
    minute_end = minute_start + period
    scale = period / 60  # margins shrink with a compressed minute (benchmarks, tests)
    deadline = minute_end - FETCH_MARGIN_S * scale
    until = None
    if options.duration_seconds is not None:
        until = max(now, minute_start) + options.duration_seconds
        deadline = min(deadline, until + REPLY_GRACE_S)
    coverage = slots_ahead(minute, now, rpm, books, max_late, until, period_ms)
    finish_by = min(minute_end - FINISH_MARGIN_S * scale, deadline + REPLY_GRACE_S)
    answer_by = min(minute_end - ANSWER_MARGIN_S * scale, finish_by + REPLY_GRACE_S)
    return CallPlan(minute, minute_start, books, coverage, max_late, deadline, finish_by, answer_by)


def call_status(summary: dict[str, Any], missed_late: int) -> str:
    if summary["lost"]:
        return "lost"
    if summary["throttled"]:
        return "throttled"
    if summary["failed"] or missed_late:
        return "degraded"
    return "ok"


class Collector:
    """Runs calls for one instance; keeps the pacer so the rate window spans consecutive calls."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        strategy: Strategy,
        clock: Clock,
        log: JsonLogger,
        period_ms: int = MINUTE_MS,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.strategy = strategy
        self.clock = clock
        self.log = log
        self.period_ms = period_ms
        self.pacer = Pacer(settings.requests_per_minute, period_ms / 1000)

    def run(self, options: CallOptions) -> dict[str, Any]:
        """The run record of one call (its `http_status` is the answer to send)."""
        arrived = self.clock.now()
        cpu_start = time.process_time()
        plan = plan_call(self.settings, options, arrived, self.period_ms)
        run_id = uuid.uuid4().hex
        log = self.log.bind(
            run_id=run_id,
            minute=iso_minute(plan.minute_start),
            books=list(plan.books),
            **trace_fields(options.trace_header),
        )
        record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "minute": iso_minute(plan.minute_start),
            "started_at": iso_millis(arrived),
            "scheduled": options.schedule_time is not None,
            "strategy": self.strategy.name,
            "books": list(plan.books),
            "requests_per_minute": self.settings.requests_per_minute,
            "aggregate": self.settings.aggregate,
            "slots_in_minute": self.settings.requests_per_minute,
            "slots_planned": len(plan.coverage.planned),
            "slots_missed_late": len(plan.coverage.missed_late),
            "slots_outside_window": len(plan.coverage.outside_window),
        }
        prefix = self.settings.object_prefix
        claim = json.dumps({"run_id": run_id, "claimed_at": iso_millis(arrived)}).encode()
        # A claim that lands after fetching would have stopped is of no use to this call.
        if not self.sink.create(
            claim_key(prefix, plan.minute_start), claim, deadline=plan.deadline
        ):
            record.update(status="claimed", http_status=409, finished_at=iso_millis(arrived))
            log.warning(
                "minute already claimed by another call; nothing requested",
                event="run_summary",
                status="claimed",
                written=0,
                failed=0,
                throttled=0,
                lost=0,
            )
            return record

        storage = StorageOptions(prefix, self.settings.compression, self.settings.aggregate)
        recorder = CallRecorder(self.sink, storage, self.clock, log, finish_by=plan.finish_by)
        job = FetchJob(
            slots=plan.coverage.planned,
            clock=self.clock,
            pacer=self.pacer,
            max_late=plan.max_late,
            deadline=plan.deadline,
            aggregate=self.settings.aggregate,
            recorder=recorder,
            timeout_headroom=TIMEOUT_HEADROOM_S * self.period_ms / MINUTE_MS,
        )
        self.strategy.run(job)
        recorder.close_fetching()
        recorder.finish_writes(plan.finish_by)
        summary = recorder.summary()
        # A call that asked for a window of seconds did not ask for the slots before it.
        missed = len(plan.coverage.missed_late) if options.duration_seconds is None else 0
        status = call_status(summary, missed)
        finished = self.clock.now()
        record.update(summary)
        record.update(
            status=status,
            http_status=STATUS_HTTP[status],
            finished_at=iso_millis(finished),
            duration_ms=round((finished - arrived) * 1000, 1),
            cpu_ms=round((time.process_time() - cpu_start) * 1000, 1),
        )
        self._store_record(record, plan, log)
        self._log_summary(record, log)
        return record

    def _store_record(self, record: dict[str, Any], plan: CallPlan, log: JsonLogger) -> None:
        key = run_record_key(self.settings.object_prefix, plan.minute_start)
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self.sink.create(key, data, deadline=plan.answer_by)
            record["run_record"] = self.sink.location(key)
        except StorageError as error:
            log.error("run record not stored", key=key, reason=str(error))

    @staticmethod
    def _log_summary(record: dict[str, Any], log: JsonLogger) -> None:
        status = record["status"]
        severity = {"ok": "INFO", "degraded": "WARNING"}.get(status, "ERROR")
        log.log(
            severity,
            f"run finished: {status}, {record['written']} of {record['slots_planned']} "
            "snapshots written",
            event="run_summary",
            status=status,
            http_status=record["http_status"],
            planned=record["slots_planned"],
            missed_late=record["slots_missed_late"],
            written=record["written"],
            duplicates=record["duplicates"],
            failed=sum(record["failed"].values()),
            failed_by_reason=record["failed"],
            throttled=record["throttled"],
            lost=len(record["lost"]),
            lateness_ms=record["lateness_ms"],
            duration_ms=record["duration_ms"],
        )
