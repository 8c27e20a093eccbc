"""One call: plan the minute's slots, claim the minute, fetch on the grid, store, record."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from bitso_format import (
    MINUTE_MS,
    claim_name,
    iso_millis,
    iso_minute,
    run_record_name,
    seconds_to_ms,
)
from bitso_logs import JsonLogger, trace_fields

from .backoff import LOCKOUT_S, PaceMode, PacePolicy, PaceState, after_clean_minute, after_throttle
from .backoff import initial_state as initial_pace
from .call_options import SCHEDULE_HEADER, CallOptions
from .clock import Clock
from .config import Settings
from .errors import StorageError
from .grid import Coverage, minute_of, slot_spacing, slots_ahead
from .ledger import LedgerView, SlotLedger
from .outcomes import CallStatus, Outcome
from .pacing import Pacer
from .recorder import CallRecorder
from .run_record import BackOffFacts, CallFacts, RunRecord, claimed_reason
from .sinks.base import Sink
from .snapshot_writer import SnapshotWriter, StorageOptions
from .strategies import FetchJob, Strategy
from .strategies.base import TIMEOUT_HEADROOM_S
from .streams.summary import StreamsSummary
from .summary import CallSummary, slot_uses_phrase, summarise

if TYPE_CHECKING:
    from .streams.call import CallStreams

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
#: With `STREAMS`, the socket closes this long before the minute ends (after the last slot has
#: started: at 60 a minute it starts 1 s before the end), so its objects are stored while the
#: last replies come in, with ~0.85 s for the uploads instead of the 0.15 s after fetching.
STREAMS_MARGIN_S = 1.0
#: With `duration_seconds`, how long after the window replies and writes may still take.
REPLY_GRACE_S = 3.0


@dataclass(frozen=True)
class Refusal:
    """Why a call can serve none of its minute: it claims nothing and requests nothing."""

    status: CallStatus
    reason: str


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
    refused: Refusal | None = None
    #: When the stream socket closes and its objects start to be stored.
    streams_until: float = 0.0


def plan_call(
    settings: Settings,
    options: CallOptions,
    now: float,
    period_ms: int = MINUTE_MS,
    requests_per_minute: int | None = None,
) -> CallPlan:
    """Which slots this call requests and by when it must stop fetching and answer, on the grid
    of `requests_per_minute` (the instance's pace; REQUESTS_PER_MINUTE by default)."""
    period = period_ms / 1000
    anchor = options.schedule_time if options.schedule_time is not None else now
    minute = minute_of(anchor, period_ms)
    minute_start = minute * period
    rpm = requests_per_minute or settings.requests_per_minute
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
    return CallPlan(
        minute,
        minute_start,
        books,
        coverage,
        max_late,
        deadline,
        finish_by,
        answer_by,
        _refusal(minute_start, coverage, max_late, now),
        streams_until=min(deadline, minute_end - STREAMS_MARGIN_S * scale),
    )


def _back_off_facts(mode: PaceMode, state: PaceState, full: int) -> BackOffFacts:
    """What the run record says about the pace: how this call ran, and the state after it."""
    return BackOffFacts(
        mode=mode,
        full_requests_per_minute=full,
        next_requests_per_minute=state.pace,
        silent_until=state.silent_until,
        throttled_at=state.throttled_at,
    )


def _refusal(
    minute_start: float, coverage: Coverage, max_late: float, now: float
) -> Refusal | None:
    """A minute too far ahead, or one whose every slot is past the latest it could start (a
    minute that is over, or all but over), cannot be served: say so rather than claim it."""
    minute = iso_minute(seconds_to_ms(minute_start))
    ahead = minute_start - now
    if ahead > EARLY_TOLERANCE_S:
        return Refusal(
            CallStatus.TOO_EARLY,
            f"{SCHEDULE_HEADER} names the minute {minute}, {ahead:.0f} s ahead of this "
            f"server's clock; at most {EARLY_TOLERANCE_S:.0f} s ahead is allowed",
        )
    if coverage.missed_late and not coverage.planned and not coverage.outside_window:
        past = now - (coverage.missed_late[-1].at + max_late)
        return Refusal(
            CallStatus.TOO_LATE,
            f"the minute {minute} is over for this call: its last slot could start no later "
            f"than {past:.1f} s before the call arrived",
        )
    return None


def call_status(
    summary: CallSummary, missed_late: int, streams: StreamsSummary | None = None
) -> CallStatus:
    if summary.lost or (streams is not None and streams.lost):
        return CallStatus.LOST
    if summary.throttled:
        return CallStatus.THROTTLED
    if summary.requests_sent == 0 and Outcome.BACKING_OFF in summary.failed:
        return CallStatus.BACKING_OFF
    if summary.failed or missed_late or (streams is not None and streams.unacknowledged):
        return CallStatus.DEGRADED
    return CallStatus.OK


class Collector:
    """Runs calls for one instance; keeps the pacer, so the rate window spans consecutive calls,
    and the pace state, so a throttling reply slows the calls after it (a new instance starts at
    the full pace)."""

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
        # Bitso's lockout is a minute: as long as a (compressed) minute here.
        self.pace_policy = PacePolicy(
            settings.requests_per_minute, lockout_s=LOCKOUT_S * period_ms / MINUTE_MS
        )
        self.pace: PaceState = initial_pace(self.pace_policy)
        self._pace_lock = threading.Lock()
        self._streams_type: type[CallStreams] | None = None
        if settings.streams:
            # Imported with the instance, not in a call (aiohttp takes ~0.1 s to import, which
            # would make a minute's first slot late), and only when streams are on.
            from .streams.call import CallStreams  # noqa: PLC0415

            self._streams_type = CallStreams

    def run(self, options: CallOptions) -> RunRecord:
        """The run record of one call (stored, unless the minute was claimed already)."""
        arrived = self.clock.now()
        cpu_start = time.process_time()
        pace = self.pace
        full = self.pace_policy.full
        plan = plan_call(self.settings, options, arrived, self.period_ms, pace.pace)
        mode = pace.mode(max(plan.minute_start, arrived), full)
        run_id = uuid.uuid4().hex
        minute_ms = seconds_to_ms(plan.minute_start)
        log = self.log.bind(
            run_id=run_id,
            minute=iso_minute(minute_ms),
            books=list(plan.books),
            **trace_fields(options.trace_header),
        )
        facts = CallFacts(
            minute_start=plan.minute_start,
            scheduled=options.schedule_time is not None,
            strategy=self.strategy.name,
            books=plan.books,
            requests_per_minute=pace.pace,
            aggregate=self.settings.aggregate,
            slots_planned=len(plan.coverage.planned),
            slots_missed_late=len(plan.coverage.missed_late),
            slots_outside_window=len(plan.coverage.outside_window),
        )
        if plan.refused is not None:
            return self._not_run(
                RunRecord(
                    run_id,
                    arrived,
                    arrived,
                    plan.refused.status,
                    facts,
                    error=plan.refused.reason,
                    back_off=_back_off_facts(mode, pace, full),
                ),
                f"{plan.refused.reason}; nothing claimed or requested",
                log,
            )
        prefix = self.settings.object_prefix
        claim = json.dumps(
            {"run_id": run_id, "claimed_at": iso_millis(seconds_to_ms(arrived))}
        ).encode()
        # A claim that lands after fetching would have stopped is of no use to this call.
        try:
            claimed = self.sink.create(claim_name(prefix, minute_ms), claim, deadline=plan.deadline)
        except StorageError as error:
            reason = f"cannot claim the minute: {error}"
            cpu_ms = round((time.process_time() - cpu_start) * 1000, 1)
            unclaimed = RunRecord(
                run_id,
                arrived,
                self.clock.now(),
                CallStatus.LOST,
                facts,
                CallSummary(),
                cpu_ms=cpu_ms,
                error=reason,
                back_off=_back_off_facts(mode, pace, full),
            )
            return self._not_run(unclaimed, f"{reason}; nothing requested", log, "ERROR")
        if not claimed:
            reason = claimed_reason(plan.minute_start, arrived, self.period_ms / 1000)
            return self._not_run(
                RunRecord(
                    run_id,
                    arrived,
                    arrived,
                    CallStatus.CLAIMED,
                    facts,
                    error=reason,
                    back_off=_back_off_facts(mode, pace, full),
                ),
                reason,
                log,
            )

        # Nothing goes to Bitso in the silence after a throttling reply, its socket included.
        streams = None if mode is PaceMode.BACKING_OFF else self._open_streams(plan, minute_ms, log)
        storage = StorageOptions(prefix, self.settings.compression, self.settings.aggregate)
        ledger = SlotLedger()
        writer = SnapshotWriter(
            self.sink, storage, ledger, self.clock, log, finish_by=plan.finish_by
        )
        # Slots in the silence after a throttling reply are skipped, never requested.
        silent_until = pace.silent_until if mode is PaceMode.BACKING_OFF else None
        silenced = [
            s for s in plan.coverage.planned if silent_until is not None and s.at < silent_until
        ]
        for slot in silenced:
            ledger.settle(slot, Outcome.BACKING_OFF)
        job = FetchJob(
            slots=plan.coverage.planned[len(silenced) :],
            clock=self.clock,
            pacer=self.pacer,
            max_late=plan.max_late,
            deadline=plan.deadline,
            aggregate=self.settings.aggregate,
            recorder=CallRecorder(
                ledger,
                writer,
                storage,
                log,
                self.clock,
                streams.state if streams is not None else None,
            ),
            slot_spacing=slot_spacing(pace.pace, self.period_ms),
            timeout_headroom=TIMEOUT_HEADROOM_S * self.period_ms / MINUTE_MS,
        )
        try:
            self.strategy.run(job)
        except BaseException:
            if streams is not None:
                streams.abort()
            raise
        ledger.close_fetching()
        writer.finish(plan.finish_by)
        stream_part = None
        if streams is not None:
            end = plan.streams_until
            first = plan.coverage.planned[0].at if plan.coverage.planned else end
            stream_part = streams.summary((min(first, end), end))
        view = ledger.view()
        summary = summarise(view)
        after = self._next_pace(pace.pace, summary, view)
        # A call that asked for a window of seconds did not ask for the slots before it.
        missed = len(plan.coverage.missed_late) if options.duration_seconds is None else 0
        record = RunRecord(
            run_id,
            arrived,
            self.clock.now(),
            call_status(summary, missed, stream_part),
            facts,
            summary,
            stream_part,
            cpu_ms=round((time.process_time() - cpu_start) * 1000, 1),
            back_off=_back_off_facts(mode, after, full),
        )
        record = self._store(record, minute_ms, plan, log)
        self._log_summary(record, summary, log)
        return record

    def _next_pace(self, pace_used: int, summary: CallSummary, view: LedgerView) -> PaceState:
        """The instance's pace state after a call that ran at `pace_used`."""
        with self._pace_lock:
            if summary.throttled and view.last_throttle_reply is not None:
                share = None
                if view.first_throttled_start is not None:
                    window = self.period_ms / 1000
                    first = view.first_throttled_start
                    share = self.pacer.starts_between(first - window, first)
                self.pace = after_throttle(
                    self.pace, self.pace_policy, pace_used, view.last_throttle_reply, share
                )
            elif summary.requests_sent:
                self.pace = after_clean_minute(self.pace, self.pace_policy, pace_used)
            return self.pace

    def _open_streams(self, plan: CallPlan, minute_ms: int, log: JsonLogger) -> CallStreams | None:
        """With `STREAMS` set, the call's socket, connecting from now until fetching stops."""
        if self._streams_type is None:
            return None
        streams = self._streams_type(
            self.settings.ws_url,
            plan.books,
            self.settings.streams,
            minute_ms,
            self.sink,
            self.settings.object_prefix,
            self.clock,
            log,
            scale=self.period_ms / MINUTE_MS,
        )
        streams.open(plan.streams_until, plan.finish_by)
        return streams

    @staticmethod
    def _not_run(
        record: RunRecord, message: str, log: JsonLogger, severity: str = "WARNING"
    ) -> RunRecord:
        """The record of a call that requested nothing, logged as its summary."""
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
        return record

    def _store(
        self, record: RunRecord, minute_ms: int, plan: CallPlan, log: JsonLogger
    ) -> RunRecord:
        """The record as stored (with its location), or as it is when it cannot be stored."""
        key = run_record_name(self.settings.object_prefix, minute_ms)
        stored = record.stored_at(self.sink.location(key))
        data = (json.dumps(stored.to_json(), separators=(",", ":")) + "\n").encode()
        try:
            self.sink.create(key, data, deadline=plan.answer_by)
        except StorageError as error:
            log.error("run record not stored", key=key, reason=str(error))
            # The archive is missing an object: as lost as a snapshot that was not stored.
            return replace(record, status=CallStatus.LOST, error=f"run record not stored: {error}")
        return stored

    @staticmethod
    def _log_summary(record: RunRecord, summary: CallSummary, log: JsonLogger) -> None:
        streams = record.streams
        stream_counts: dict[str, Any] = {}
        if streams is not None:
            stream_counts = {
                "stream_messages": streams.messages,
                "stream_gaps": streams.gaps,
                "stream_reconnects": streams.reconnects,
                "backfilled_trades": streams.backfilled,
                "streams_lost": len(streams.lost),
                "streams_unacknowledged": len(streams.unacknowledged),
            }
        status = record.status
        facts = record.facts
        assert facts is not None  # a call that ran had a plan
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
