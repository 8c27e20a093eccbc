"""Invariants every strategy keeps whatever the latency, checked against what the fake Bitso saw
and what the sink holds (never against how fast this machine is).

Each test runs a compressed minute (`PERIOD_MS`) through `runner.Collector`, the fake's rolling
window scaled alike, on a clock shifted so the call starts just before a minute boundary: no test
depends on where in the wall-clock minute it runs.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bitso_collector.app import HTTP_STATUS
from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings
from bitso_collector.grid import Slot, slot_spacing
from bitso_collector.plan import ANSWER_MARGIN_S
from bitso_collector.rate_guard import Pacer
from bitso_collector.runner import Collector
from bitso_collector.sinks import LocalSink
from bitso_collector.strategies import make_strategy
from bitso_format import grid_minute, parse_rfc3339
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import Behaviour, FakeBitso, RequestLog

#: Starts are checked to tens of milliseconds: not beside other tests' load (`make test`).
pytestmark = pytest.mark.serial
PERIOD_MS = 4000
PERIOD = PERIOD_MS / 1000
RPM = 30  # a slot every 133 ms: the fake's "typical" replies (median 200 ms) are slower
BOOKS = ("btc_mxn", "eth_mxn")
STRATEGIES = ("sequential", "threaded", "asyncio")
CONCURRENT = ("threaded", "asyncio")
MAX_LATE = slot_spacing(RPM, PERIOD_MS) / 2  # what the runner plans with
#: How long a request of a concurrent strategy may wait: 7 slots (8 in flight), 0.93 s here.
REPLY_TIMEOUT = 7 * slot_spacing(RPM, PERIOD_MS)
#: From a request leaving the collector to the fake's handler noting it, on 127.0.0.1.
ARRIVAL_SLACK = 0.03
#: How long before the first minute boundary the first call arrives.
LEAD = 0.1
#: A call answers `ANSWER_MARGIN_S` before its minute ends. The runner shrinks that margin with
#: the compressed minute (to 1.3 ms here), but the scheduling noise it absorbs does not shrink,
#: so a call's return is held to the noise a real minute's margin absorbs (18.7 ms past the end).
RETURN_SLACK = ANSWER_MARGIN_S * (1 - PERIOD / 60)


class CompressedFake(FakeBitso):
    """The fake Bitso, its "typical" replies (median 200 ms, slower than a slot here) cut off
    short of the reply timeout: at this compression its 1.5 s tail would be a 22 s reply in a
    real minute, and a timeout rather than a slow reply."""

    def latency(self) -> float:
        return min(super().latency(), REPLY_TIMEOUT - 0.05)


class RecordingPacer(Pacer):
    """The collector's pacer, also keeping every start it records (on the collector's clock)."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        super().__init__(limit, window_seconds)
        self.all_starts: list[float] = []

    def record(self, started_at: float) -> None:
        self.all_starts.append(started_at)
        super().record(started_at)


@dataclass
class Harness:
    name: str
    fake: FakeBitso
    collector: Collector
    clock: ShiftedClock
    pacer: RecordingPacer
    root: Path
    first_minute: float  # start of the first minute, on the collector's clock

    def align(self) -> None:
        """Move the collector's clock so the first minute begins `LEAD` seconds from now."""
        self.clock.shift = self.first_minute - LEAD - time.time()

    def call(self, index: int = 0, **options: Any) -> tuple[dict[str, Any], float]:
        """The call for minute `index` (scheduled at its start): its record and when it returned.

        Claims and run records are named by the wall-clock minute (`HHMM`), which several
        compressed minutes share, so each call gets its own sink root.
        """
        minute_start = self.first_minute + index * PERIOD
        self.collector.sink = LocalSink(self.root / f"call{index}")
        record = self.collector.run(CallOptions(schedule_time=minute_start, **options)).to_json()
        return record, self.clock.now()

    def at(self, index: int, seconds: float) -> float:
        """Real-clock delay until `seconds` into minute `index` (for timers changing the fake)."""
        return self.first_minute + index * PERIOD + seconds - self.clock.now()

    def requests(self) -> list[tuple[float, RequestLog]]:
        """The fake's order book requests, each with its start on the collector's clock.

        The fake logs a request when it answers (its `at` is when it began), so this first waits
        for replies the collector stopped waiting for (at most the longest latency, 0.9 s).
        """
        give_up = time.monotonic() + 3
        while len(self.fake.requests) < len(self.pacer.all_starts) and time.monotonic() < give_up:
            time.sleep(0.02)
        return sorted(
            ((entry.at + self.clock.shift, entry) for entry in list(self.fake.requests)),
            key=lambda pair: pair[0],
        )

    def stored(self) -> list[dict[str, Any]]:
        return [
            json.loads(path.read_text())
            for path in sorted(self.root.rglob("*.json"))
            if "_runs" not in path.parts
        ]


@pytest.fixture(params=STRATEGIES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    name: str = request.param
    behaviour = Behaviour(latency="typical", limit=RPM + 1, window=PERIOD)
    with CompressedFake(behaviour) as fake:
        settings = Settings(books=BOOKS, api_url=fake.url, requests_per_minute=RPM, strategy=name)
        first_ms = (int(time.time() * 1000) // PERIOD_MS + 1) * PERIOD_MS
        clock = ShiftedClock(0.0)
        strategy = make_strategy(name, fake.url, None)
        collector = Collector(
            settings, LocalSink(tmp_path), strategy, clock, JsonLogger(io.StringIO()), PERIOD_MS
        )
        pacer = RecordingPacer(RPM, PERIOD)
        collector.pacer = pacer
        harness = Harness(name, fake, collector, clock, pacer, tmp_path, first_ms / 1000)
        harness.align()
        try:
            yield harness
        finally:
            strategy.close()


# -- the invariants ---------------------------------------------------------------------------
def slot_at_or_before(moment: float) -> Slot:
    minute = int(moment * 1000 // PERIOD_MS)
    return [slot for slot in grid_minute(minute, RPM, BOOKS, PERIOD_MS) if slot.at <= moment][-1]


def assert_one_start_per_slot(h: Harness) -> None:
    """Every request starts within [slot, slot + max_late] of a slot of its book, and no slot is
    requested twice: seen from the fake (arrivals) and from the collector (its own starts)."""
    requests = h.requests()
    assert len(requests) == len(h.pacer.all_starts)
    seen: set[int] = set()
    for moment, entry in requests:
        slot = slot_at_or_before(moment)
        assert moment - slot.at <= MAX_LATE + ARRIVAL_SLACK, (h.name, moment, slot)
        assert entry.book == slot.book, (h.name, entry, slot)
        assert slot.number not in seen, f"{h.name}: two requests for slot {slot}"
        seen.add(slot.number)
    for started in h.pacer.all_starts:
        slot = slot_at_or_before(started)
        assert started >= slot.at
        assert started - slot.at <= MAX_LATE + 0.01, (h.name, started, slot)
    assert {slot_at_or_before(s).number for s in h.pacer.all_starts} == seen


def assert_rolling_window(h: Harness) -> None:
    """No window of one period holds more than RPM starts: exactly for the collector's own start
    times, and for the fake's arrival times give or take the arrival slack."""
    own = sorted(h.pacer.all_starts)
    for first, last in zip(own, own[RPM:], strict=False):
        assert last - first >= PERIOD - 1e-6, (h.name, first, last)
    arrived = [moment for moment, _ in h.requests()]
    for first, last in zip(arrived, arrived[RPM:], strict=False):
        assert last - first >= PERIOD - ARRIVAL_SLACK, (h.name, first, last)


def assert_stored_as_served(h: Harness) -> tuple[list[dict[str, Any]], int]:
    """Every stored snapshot is a reply the fake served, with the same levels; returns them and
    how many served replies were not stored."""
    served = {(entry["book"], int(entry["sequence"])): entry for entry in list(h.fake.served)}
    stored = h.stored()
    for document in stored:
        reply = served[(document["book"], document["sequence"])]
        for side in ("bids", "asks"):
            levels = [{"price": lvl["price"], "amount": lvl["amount"]} for lvl in reply[side]]
            assert document[side] == levels
        slot_at = document["slot"]
        assert document["requested_at"] >= slot_at  # ISO strings of one format sort as times
    return stored, len(served) - len(stored)


# -- the scenarios ----------------------------------------------------------------------------
def test_slow_out_of_order_replies_are_all_stored(harness: Harness) -> None:
    """Replies slower than the slot spacing, one of them much slower, so they complete in another
    order than they started: every slot still starts once, on time, and every reply is stored."""
    h = harness
    h.fake.configure(script=["ok", "slow"], slow_seconds=0.6)
    record, returned = h.call(0, duration_seconds=2)

    assert returned < h.first_minute + PERIOD + RETURN_SLACK
    assert_one_start_per_slot(h)
    assert_rolling_window(h)
    stored, not_stored = assert_stored_as_served(h)
    assert not_stored == 0  # every reply the fake served was stored
    assert record["written"] == len(stored) == len(h.fake.served) > 0
    assert record["requests_sent"] == len(h.fake.requests)
    assert record["throttled"] == record["abandoned"] == 0 and not record["lost"]
    if h.name in CONCURRENT:
        assert record["status"] == "ok", record["failed"]
        assert record["written"] == record["slots_planned"]
        by_start = sorted(stored, key=lambda document: document["requested_at"])
        received = [document["received_at"] for document in by_start]
        assert received != sorted(received), "replies should have completed out of order"


@pytest.mark.slow
def test_consecutive_calls_keep_the_window_and_the_deadline(harness: Harness) -> None:
    """Two back-to-back minutes; from 70% of the first one on, every request hangs. Each call
    returns before its minute ends, every hung request ends timed out (just before the deadline)
    or abandoned (at it), and no period-long window spanning both calls holds more than RPM
    starts."""
    h = harness
    hang = threading.Timer(h.at(0, 0.7 * PERIOD), h.fake.configure, kwargs={"default": "hang"})
    hang.start()
    try:
        first, returned = h.call(0)
    finally:
        hang.cancel()
    assert returned < h.first_minute + PERIOD + RETURN_SLACK
    hung = [entry for entry in h.fake.requests if entry.fault == "hang"]
    h.fake.configure(default="ok")
    second, returned = h.call(1)
    assert returned < h.first_minute + 2 * PERIOD + RETURN_SLACK

    assert hung, "some requests should have hung"
    ended_unanswered = first["abandoned"] + first["failed"].get("timeout", 0)
    assert ended_unanswered >= len(hung)
    assert_one_start_per_slot(h)
    assert_rolling_window(h)
    assert [entry.status for entry in h.fake.requests].count(420) == 0
    assert first["requests_sent"] + second["requests_sent"] == len(h.fake.requests)
    stored, not_stored = assert_stored_as_served(h)
    unanswered = ended_unanswered + second["abandoned"] + second["failed"].get("timeout", 0)
    assert not_stored <= unanswered - len(hung)
    assert first["written"] + second["written"] == len(stored) > 0
    assert not first["lost"] and not second["lost"]


def test_a_throttling_reply_stops_the_minute(harness: Harness) -> None:
    h = harness
    h.fake.configure(latency=0.02, script=["ok", "ok", "ok", "throttle"])
    record, returned = h.call(0)

    assert returned < h.first_minute + PERIOD + RETURN_SLACK
    statuses = [entry.status for _, entry in h.requests()]
    assert statuses == [200, 200, 200, 420], "no request may follow the throttling reply"
    assert record["status"] == "throttled" and HTTP_STATUS[record["status"]] == 503
    assert record["throttled"] == 1 and record["requests_sent"] == 4
    assert record["skipped_after_throttle"] == record["slots_planned"] - 4
    assert_one_start_per_slot(h)
    stored, not_stored = assert_stored_as_served(h)
    assert record["written"] == len(stored) == 3 and not_stored == 0


class TimedLog(io.StringIO):
    """A log stream that notes when (on the collector's clock) each line was written."""

    def __init__(self, clock: ShiftedClock) -> None:
        super().__init__()
        self.clock = clock
        self.lines: list[tuple[float, dict[str, Any]]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.lines.append((self.clock.now(), json.loads(line)))
        return len(text)


@pytest.mark.slow
@pytest.mark.parametrize("harness", CONCURRENT, indirect=True)
def test_hung_replies_cost_only_their_own_slots_and_are_logged_at_once(harness: Harness) -> None:
    """The first 8 replies of a minute (as many as may be in flight) never come: each times out
    after its reply timeout, so the in-flight limit never fills and every later slot is stored;
    each timeout is logged as it happens, not when the minute ends."""
    h = harness
    stream = TimedLog(h.clock)
    h.collector.log = JsonLogger(stream)
    h.fake.configure(latency=0.02, script=["hang"] * 8)
    record, _ = h.call(0)

    assert record["failed"] == {"timeout": 8}, record["failed"]
    assert record["written"] == record["slots_planned"] - 8 > 0
    assert record["abandoned"] == 0 and not record["lost"]
    warnings = [(at, line) for at, line in stream.lines if line["message"] == "slot failed"]
    assert len(warnings) == 8
    for logged_at, line in warnings:
        assert line["severity"] == "WARNING" and line["reason"] == "timeout"
        slot_at = parse_rfc3339(line["slot"]) / 1000
        assert slot_at + REPLY_TIMEOUT <= logged_at < slot_at + REPLY_TIMEOUT + MAX_LATE
