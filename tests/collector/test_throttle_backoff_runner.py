"""The runner keeps the instance's pace across calls: a call inside the silence after a
throttling reply answers at once and requests nothing, and the calls after it run at the
reduced pace on that pace's grid (a compressed minute, the fake's window scaled alike)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from bitso_collector.app import HTTP_STATUS
from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings
from bitso_collector.runner import Collector
from bitso_collector.sinks import LocalSink
from bitso_collector.strategies import make_strategy
from bitso_collector.throttle_backoff import after_throttle
from bitso_format import claim_name, grid_minute, parse_iso_millis, run_record_name, seconds_to_ms
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import Behaviour, FakeBitso

#: Starts are checked to tens of milliseconds: not beside other tests' load (`make test`).
pytestmark = pytest.mark.serial
PERIOD_MS = 4000
PERIOD = PERIOD_MS / 1000
RPM = 30
BOOKS = ("btc_mxn",)


@pytest.mark.slow
def test_a_call_in_the_silence_answers_at_once_and_the_next_one_runs_at_half_pace(
    tmp_path: Path,
) -> None:
    with FakeBitso(Behaviour(limit=RPM + 1, window=PERIOD)) as fake:
        settings = Settings(books=BOOKS, api_url=fake.url, requests_per_minute=RPM)
        strategy = make_strategy("threaded", fake.url, None)
        first = (int(time.time() * 1000) // PERIOD_MS + 2) * PERIOD
        clock = ShiftedClock(first - 0.05 - time.time())
        collector = Collector(
            settings, LocalSink(tmp_path), strategy, clock, JsonLogger(io.StringIO()), PERIOD_MS
        )
        assert collector.pace.policy.lockout_s == PERIOD  # Bitso's minute, compressed
        # As if the minute before ended on a throttling reply that silences this whole minute.
        replied = first - 0.1
        collector.pace.state = after_throttle(
            collector.pace.state, collector.pace.policy, RPM, replied
        )
        last_slot = first + PERIOD * (1 - 1 / (RPM // 2))
        assert collector.pace.state.silent_until == replied + PERIOD > last_slot

        record = collector.run(CallOptions(schedule_time=first)).to_json()
        answered = clock.now()

        assert fake.requests == []
        assert (record["status"], HTTP_STATUS[record["status"]]) == ("backing_off", 503)
        assert answered - first < 0.5, "a call in the silence answers at once"
        assert record["requests_per_minute"] == RPM // 2
        assert record["failed"] == {"backing_off": RPM // 2} and record["requests_sent"] == 0
        assert record["back_off"]["mode"] == "backing_off"
        assert parse_iso_millis(record["back_off"]["silent_until"]) == seconds_to_ms(
            replied + PERIOD
        )
        # It claimed its minute (no other instance may spend a minute of the lockout) and
        # stored its run record, which says until when.
        minute_ms = seconds_to_ms(first)
        assert (tmp_path / claim_name("", minute_ms)).is_file()
        assert record["run_record"] == str(tmp_path / run_record_name("", minute_ms))

        # The next minute is past the silence: half the pace, on that pace's grid.
        collector.sink = LocalSink(tmp_path / "next")  # compressed minutes share HHMM names
        clock.sleep_until(first + PERIOD - 0.05)
        second = collector.run(CallOptions(schedule_time=first + PERIOD)).to_json()
        strategy.close()

    assert (second["status"], second["back_off"]["mode"]) == ("ok", "recovering")
    assert second["requests_per_minute"] == RPM // 2 == second["written"]
    grid = grid_minute(seconds_to_ms(first + PERIOD) // PERIOD_MS, RPM // 2, BOOKS, PERIOD_MS)
    starts = sorted(entry.at + clock.shift for entry in fake.requests)
    assert len(starts) == len(grid)
    for start, slot in zip(starts, grid, strict=True):
        assert 0 <= start - slot.at < 60 / RPM / 2 * PERIOD / 60 + 0.03
    # A clean minute earns pace back.
    assert second["back_off"]["next_requests_per_minute"] == RPM // 2 + 3
