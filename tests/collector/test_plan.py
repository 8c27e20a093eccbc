"""A call's plan: which slots, and deadlines that fit inside its minute."""

from __future__ import annotations

import pytest

from bitso_collector.call_options import CallOptions
from bitso_collector.config import Settings
from bitso_collector.outcomes import CallStatus
from bitso_collector.plan import plan_call
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


@pytest.mark.parametrize(
    ("arrival", "refused"),
    [
        (-10.0, None),  # at most 10 s ahead is served
        (-10.5, CallStatus.TOO_EARLY),
        (59.45, None),  # slot 58 (58.983 s) may start until 59.491 s
        (59.5, CallStatus.TOO_LATE),
        (60.0, CallStatus.TOO_LATE),  # the minute is over
        (-365 * 86400.0, CallStatus.TOO_EARLY),
    ],
)
def test_a_call_that_can_serve_none_of_its_minute_is_refused(
    arrival: float, refused: CallStatus | None
) -> None:
    plan = plan_call(Settings(), CallOptions(schedule_time=MINUTE), now=MINUTE + arrival)
    assert (plan.refused.status if plan.refused else None) is refused


def test_a_window_with_no_slot_in_it_is_not_a_refusal() -> None:
    """Slots at 0 s and 30 s and a 5 s window from 16 s: nothing to request, but not late."""
    options = CallOptions(schedule_time=MINUTE, duration_seconds=5)
    plan = plan_call(Settings(requests_per_minute=2), options, now=MINUTE + 16)
    assert plan.coverage.planned == [] and plan.refused is None
