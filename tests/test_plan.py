"""A call's plan: which slots, and deadlines that fit inside its minute."""

from __future__ import annotations

import pytest

from bitso_collector.call_options import CallOptions
from bitso_collector.config import Settings
from bitso_collector.runner import plan_call
from bitso_collector.sinks.gcs import DEADLINE_MARGIN_S, MIN_ATTEMPT_S
from bitso_collector.strategies.base import TIMEOUT_HEADROOM_S

MINUTE = 29_400_000 * 60.0


@pytest.mark.parametrize("arrival", [-0.3, 0.0, 0.4, 30.0])
def test_deadlines_are_ordered_and_inside_the_minute(arrival: float) -> None:
    plan = plan_call(Settings(), CallOptions(schedule_time=MINUTE), now=MINUTE + arrival)
    assert MINUTE < plan.deadline < plan.finish_by < plan.answer_by < MINUTE + 60


def test_the_last_reply_still_gets_a_storage_attempt() -> None:
    """A reply accepted at the last moment has time for one GCS attempt before writes end."""
    plan = plan_call(Settings(), CallOptions(schedule_time=MINUTE), now=MINUTE)
    last_reply = plan.deadline - TIMEOUT_HEADROOM_S
    assert last_reply + MIN_ATTEMPT_S <= plan.finish_by - DEADLINE_MARGIN_S


def test_a_window_ends_its_call_early_but_never_after_the_minute() -> None:
    early = plan_call(
        Settings(), CallOptions(schedule_time=MINUTE, duration_seconds=5), now=MINUTE + 1
    )
    assert early.deadline == pytest.approx(MINUTE + 1 + 5 + 3)
    assert early.answer_by < MINUTE + 60
    late = plan_call(
        Settings(), CallOptions(schedule_time=MINUTE, duration_seconds=30), now=MINUTE + 50
    )
    assert late.answer_by < MINUTE + 60
    assert late.coverage.planned[0].at_ms >= (MINUTE + 50 - 0.6) * 1000
