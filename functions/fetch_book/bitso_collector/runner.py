"""One call, read top to bottom: plan, claim the minute, fetch on the grid, record.

The instance keeps what outlives a call: the rate window (`Pacer`), the pace after a throttling
reply (`PaceKeeper`) and, with `STREAMS`, the stream session (the WebSocket, cut by each call).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bitso_format import MINUTE_MS, claim_name, iso_millis, iso_minute, seconds_to_ms
from bitso_logs import JsonLogger, trace_fields

from .call_options import CallOptions
from .call_summary import CallSummary, summarise
from .clock import Clock
from .config import Settings
from .errors import StorageError
from .grid import slot_spacing
from .ledger import SlotLedger
from .outcomes import CallStatus, Outcome
from .plan import CallPlan, plan_call
from .rate_guard import Pacer
from .recorder import CallRecorder
from .run_record import (
    BackOffFacts,
    CallFacts,
    RunRecord,
    StreamsPart,
    claimed_reason,
    log_not_run,
    log_summary,
    store_record,
)
from .sinks.base import Sink
from .slot_policy import SNAPSHOTS_ONLY, SlotPolicy
from .snapshot_writer import SnapshotWriter, StorageOptions
from .strategies import FetchJob, Strategy
from .strategies.base import TIMEOUT_HEADROOM_S
from .throttle_backoff import LOCKOUT_S, PaceKeeper, PaceMode, PacePolicy

if TYPE_CHECKING:
    from .streams.session import PendingCut, StreamSession

#: How long a shutdown may take to store the stream's last cut (Cloud Run allows 10 s after
#: SIGTERM; the rest is for the process to exit).
SHUTDOWN_BUDGET_S = 8.0


def call_status(
    summary: CallSummary, missed_late: int, streams: StreamsPart | None = None
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


@dataclass(frozen=True)
class _Call:
    """What one call carries from its plan to its record."""

    run_id: str
    arrived: float
    cpu_start: float
    plan: CallPlan
    mode: PaceMode
    facts: CallFacts
    log: JsonLogger

    @property
    def minute_ms(self) -> int:
        return seconds_to_ms(self.plan.minute_start)


@dataclass(frozen=True)
class _Fetched:
    """What a call's fetching left for its record."""

    summary: CallSummary
    streams: StreamsPart | None


class Collector:
    """Runs calls for one instance (see the module's docstring)."""

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
        policy = PacePolicy(
            settings.requests_per_minute, lockout_s=LOCKOUT_S * period_ms / MINUTE_MS
        )
        self.pace = PaceKeeper(policy, self.pacer)
        self.streams: StreamSession | None = None
        self._streams_lock = threading.Lock()
        if settings.streams:
            # Imported with the instance, not in a call (aiohttp takes ~0.1 s to import, which
            # would make a minute's first slot late), and only when streams are on.
            from .streams.session import StreamSession  # noqa: PLC0415

            self._session_type: type[StreamSession] | None = StreamSession
        else:
            self._session_type = None

    # -- one call ---------------------------------------------------------------------------
    def run(self, options: CallOptions) -> RunRecord:
        """The run record of one call (stored, unless the minute was claimed already)."""
        call = self._plan(options)
        refused = self._claim(call)
        if refused is not None:
            return refused
        return self._record(call, options, self._fetch(call))

    def _plan(self, options: CallOptions) -> _Call:
        arrived = self.clock.now()
        cpu_start = time.process_time()
        pace = self.pace.state
        plan = plan_call(self.settings, options, arrived, self.period_ms, pace.pace)
        run_id = uuid.uuid4().hex
        log = self.log.bind(
            run_id=run_id,
            minute=iso_minute(seconds_to_ms(plan.minute_start)),
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
        mode = pace.mode(max(plan.minute_start, arrived), self.pace.policy.full)
        return _Call(run_id, arrived, cpu_start, plan, mode, facts, log)

    def _back_off(self, call: _Call) -> BackOffFacts:
        return BackOffFacts.of(call.mode, self.pace.state, self.pace.policy.full)

    def _claim(self, call: _Call) -> RunRecord | None:
        """None when the call may spend its minute; else the record of a call that did not."""
        plan, arrived = call.plan, call.arrived
        if plan.refused is not None:
            record = RunRecord(
                call.run_id,
                arrived,
                arrived,
                plan.refused.status,
                call.facts,
                error=plan.refused.reason,
                back_off=self._back_off(call),
            )
            log_not_run(record, f"{plan.refused.reason}; nothing claimed or requested", call.log)
            return record
        claim = json.dumps(
            {"run_id": call.run_id, "claimed_at": iso_millis(seconds_to_ms(arrived))}
        ).encode()
        name = claim_name(self.settings.object_prefix, call.minute_ms)
        # A claim that lands after fetching would have stopped is of no use to this call.
        try:
            claimed = self.sink.create(name, claim, deadline=plan.deadline)
        except StorageError as error:
            reason = f"cannot claim the minute: {error}"
            record = RunRecord(
                call.run_id,
                arrived,
                self.clock.now(),
                CallStatus.LOST,
                call.facts,
                CallSummary(),
                cpu_ms=round((time.process_time() - call.cpu_start) * 1000, 1),
                error=reason,
                back_off=self._back_off(call),
            )
            log_not_run(record, f"{reason}; nothing requested", call.log, "ERROR")
            return record
        if claimed:
            return None
        reason = claimed_reason(plan.minute_start, arrived, self.period_ms / 1000)
        record = RunRecord(
            call.run_id,
            arrived,
            arrived,
            CallStatus.CLAIMED,
            call.facts,
            error=reason,
            back_off=self._back_off(call),
        )
        log_not_run(record, reason, call.log)
        return record

    def _fetch(self, call: _Call) -> _Fetched:
        """Request the call's slots on the grid, store the replies, cut the stream."""
        plan, log = call.plan, call.log
        pace_used = self.pace.state.pace
        # Nothing goes to Bitso in the silence after a throttling reply: no new socket either
        # (one already open stays open: it sends nothing).
        session = self._open_streams(log) if call.mode is not PaceMode.BACKING_OFF else self.streams
        cutter = _Cutter(session, call.minute_ms, plan, self.clock) if session else None
        storage = StorageOptions(
            self.settings.object_prefix, self.settings.compression, self.settings.aggregate
        )
        ledger = SlotLedger()
        writer = SnapshotWriter(
            self.sink, storage, ledger, self.clock, log, finish_by=plan.finish_by
        )
        # Slots in the silence after a throttling reply are skipped, never requested.
        silent_until = self.pace.state.silent_until if call.mode is PaceMode.BACKING_OFF else None
        silenced = [
            s for s in plan.coverage.planned if silent_until is not None and s.at < silent_until
        ]
        for slot in silenced:
            ledger.settle(slot, Outcome.BACKING_OFF)
        policy: SlotPolicy = session.state if session is not None else SNAPSHOTS_ONLY
        job = FetchJob(
            slots=plan.coverage.planned[len(silenced) :],
            clock=self.clock,
            pacer=self.pacer,
            max_late=plan.max_late,
            deadline=plan.deadline,
            aggregate=self.settings.aggregate,
            recorder=CallRecorder(ledger, writer, storage, log, self.clock, policy),
            slot_spacing=slot_spacing(pace_used, self.period_ms),
            timeout_headroom=TIMEOUT_HEADROOM_S * self.period_ms / MINUTE_MS,
        )
        if cutter is not None:
            cutter.start()
        self.strategy.run(job)
        ledger.close_fetching()
        writer.finish(plan.finish_by)
        streams = cutter.summary() if cutter is not None else None
        view = ledger.view()
        summary = summarise(view)
        self.pace.after_call(
            pace_used,
            summary.throttled > 0,
            summary.requests_sent,
            view.last_throttle_reply,
            view.first_throttled_start,
            self.period_ms / 1000,
        )
        return _Fetched(summary, streams)

    def _record(self, call: _Call, options: CallOptions, fetched: _Fetched) -> RunRecord:
        """The call's run record, stored and logged."""
        plan = call.plan
        # A call that asked for a window of seconds did not ask for the slots before it.
        missed = len(plan.coverage.missed_late) if options.duration_seconds is None else 0
        record = RunRecord(
            call.run_id,
            call.arrived,
            self.clock.now(),
            call_status(fetched.summary, missed, fetched.streams),
            call.facts,
            fetched.summary,
            fetched.streams,
            cpu_ms=round((time.process_time() - call.cpu_start) * 1000, 1),
            back_off=self._back_off(call),
        )
        prefix = self.settings.object_prefix
        record = store_record(self.sink, prefix, record, call.minute_ms, plan.answer_by, call.log)
        log_summary(record, call.log)
        return record

    # -- the instance's stream --------------------------------------------------------------
    def _open_streams(self, log: JsonLogger) -> StreamSession | None:
        """With `STREAMS`, the instance's session: opened by the first call, kept after."""
        if self._session_type is None:
            return None
        with self._streams_lock:
            if self.streams is None:
                self.streams = self._session_type(
                    self.settings.ws_url,
                    self.settings.books,
                    self.settings.streams,
                    self.settings.anchor_every_minutes * MINUTE_MS,
                    self.sink,
                    self.settings.object_prefix,
                    self.clock,
                    log,
                    scale=self.period_ms / MINUTE_MS,
                )
            self.streams.open()
            return self.streams

    def shutdown(self) -> None:
        """The instance is ending (SIGTERM, or the command's exit): store what the stream holds."""
        with self._streams_lock:
            session = self.streams
        if session is not None:
            session.shutdown(self.clock.now() + SHUTDOWN_BUDGET_S)
        self.strategy.close()


class _Cutter:
    """Cuts the instance's stream at the call's `streams_until` on a thread of its own (so no
    slot waits for it) and starts storing the cut; `summary()` waits for the stores."""

    def __init__(self, session: StreamSession, minute_ms: int, plan: CallPlan, clock: Clock):
        self._session = session
        self._minute_ms = minute_ms
        self._plan = plan
        self._clock = clock
        self._pending: PendingCut | None = None
        self._thread = threading.Thread(target=self._cut, name="stream-cut", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _cut(self) -> None:
        self._clock.sleep_until(self._plan.streams_until)
        self._pending = self._session.cut(self._minute_ms, self._plan.finish_by)

    def summary(self) -> StreamsPart | None:
        self._thread.join()
        return self._pending.summary() if self._pending is not None else None
