"""The time-lapse clock the end-to-end tests and the benchmarks share (pure arithmetic)."""

from __future__ import annotations

import random

import pytest

from bitso_testkit.timelapse import Timeline

ORIGIN = 1_795_515_323.25


def test_a_plain_time_lapse_runs_speed_times_as_fast_from_its_origin() -> None:
    timeline = Timeline(shift=1000.0, speed=10.0, origin=ORIGIN)
    assert timeline.virtual(ORIGIN) == pytest.approx(ORIGIN + 1000.0)
    assert timeline.virtual(ORIGIN + 6.0) == pytest.approx(ORIGIN + 1060.0)
    assert Timeline.parse("5").virtual(ORIGIN) == ORIGIN + 5  # a shift alone, as before
    assert Timeline.parse(timeline.dump()) == timeline


def test_the_seconds_around_each_minute_start_run_at_the_real_pace() -> None:
    timeline = Timeline(shift=0.0, speed=10.0, origin=ORIGIN, slow_before=1.2, slow_after=0.3)
    minute = (ORIGIN // 60 + 2) * 60

    def real_between(a: float, b: float) -> float:
        return timeline.real(minute + b) - timeline.real(minute + a)

    assert real_between(1.0, 58.0) == pytest.approx(5.7)  # 57 s at 10x
    assert real_between(58.8, 60.3) == pytest.approx(1.5)  # the boundary at 1x
    assert real_between(0.0, 60.0) == pytest.approx(1.5 + 58.5 / 10)
    rng = random.Random(3)
    for _ in range(500):
        real = ORIGIN + rng.uniform(0, 900)
        assert timeline.real(timeline.virtual(real)) == pytest.approx(real, abs=1e-5)
