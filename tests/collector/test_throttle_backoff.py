"""The pace after a throttling reply (pure): silence, half pace, earned back, never two in a row."""

from __future__ import annotations

import itertools

import pytest

from bitso_collector.throttle_backoff import (
    LOCKOUT_S,
    PaceMode,
    PacePolicy,
    PaceState,
    after_clean_minute,
    after_throttle,
    initial_state,
)

FULL = 59
POLICY = PacePolicy(full=FULL)
BITSO_LIMIT = 60


def test_a_new_instance_runs_at_the_full_pace() -> None:
    state = initial_state(POLICY)
    assert (state.pace, state.ceiling, state.silent_until) == (FULL, FULL, None)
    assert state.mode(1_000.0, FULL) is PaceMode.FULL


def test_a_throttle_means_a_lockout_of_silence_then_half_the_pace() -> None:
    replied = 1_000_020.5
    state = after_throttle(initial_state(POLICY), POLICY, FULL, replied)
    assert state.silent_until == replied + LOCKOUT_S
    assert state.throttled_at == replied
    assert state.pace == FULL // 2 == 29
    assert state.ceiling == FULL - 1  # the throttled pace is not tried again soon
    assert state.mode(replied + 59.999, FULL) is PaceMode.BACKING_OFF
    assert state.mode(replied + LOCKOUT_S, FULL) is PaceMode.RECOVERING


def test_the_pace_is_earned_back_a_step_a_clean_minute_up_to_the_ceiling() -> None:
    state = after_throttle(initial_state(POLICY), POLICY, FULL, 0.0)
    paces = []
    while state.pace < state.ceiling:
        paces.append(state.pace)
        state = after_clean_minute(state, POLICY, state.pace)
    assert paces[:4] == [29, 32, 35, 38]
    assert paces[-1] < state.pace == state.ceiling == FULL - 1
    # Only after `patience` clean minutes at the ceiling is one slot more tried.
    for _ in range(state.patience):
        assert state.pace == FULL - 1
        state = after_clean_minute(state, POLICY, state.pace)
    assert state.pace == FULL
    assert state.mode(LOCKOUT_S, FULL) is PaceMode.FULL


def test_the_share_bitso_left_us_caps_the_recovery() -> None:
    # 30 of ours were accepted in the window before the refusal: a neighbour spent the other 30.
    state = after_throttle(initial_state(POLICY), POLICY, FULL, 0.0, share=30)
    assert (state.pace, state.ceiling) == (29, 29)
    state = after_throttle(initial_state(POLICY), POLICY, FULL, 0.0, share=10)
    assert (state.pace, state.ceiling) == (9, 9)
    for _ in range(5):
        state = after_clean_minute(state, POLICY, state.pace)
    assert state.pace == 9


def test_a_second_throttle_caps_the_pace_at_the_last_clean_one() -> None:
    state = after_throttle(initial_state(POLICY), POLICY, FULL, 0.0)
    state = after_clean_minute(state, POLICY, 29)  # 29 ran clean, 32 next
    state = after_throttle(state, POLICY, 32, 200.0)
    assert (state.pace, state.ceiling) == (16, 29)
    assert state.patience == 4 * POLICY.patience  # doubled by each throttle


def test_patience_is_capped_and_restored_at_the_full_pace() -> None:
    policy = PacePolicy(full=10, patience=2, max_patience=5)
    state = initial_state(policy)
    for at in range(5):
        state = after_throttle(state, policy, state.pace, float(at))
    assert state.patience == 5
    while state.pace < policy.full:
        state = after_clean_minute(state, policy, state.pace)
    state = after_clean_minute(state, policy, state.pace)
    assert state.patience == policy.patience


@pytest.mark.parametrize(
    "changes", [{"full": 0}, {"recovery_step": 0}, {"patience": 0}, {"max_patience": 1}]
)
def test_a_bad_policy_is_refused(changes: dict[str, int]) -> None:
    values = {"full": FULL, "patience": 15, **changes}
    with pytest.raises(ValueError, match="invalid pace policy"):
        PacePolicy(**values)


def simulate(neighbour: list[int], policy: PacePolicy = POLICY) -> tuple[list[int], list[bool]]:
    """Minute by minute against Bitso's per-minute budget shared with a neighbour spending
    `neighbour[m]` in minute m: our pace each minute (0 when silent all minute) and whether the
    minute was throttled. A throttle comes halfway through its minute, so the silence ends
    halfway through the next one."""
    state: PaceState = initial_state(policy)
    paces, throttled = [], []
    for minute, theirs in enumerate(neighbour):
        start = minute * 60.0
        silent_all_minute = state.silent_until is not None and state.silent_until >= start + 60
        pace = 0 if silent_all_minute else state.pace
        over = pace > 0 and pace + theirs > BITSO_LIMIT
        paces.append(pace)
        throttled.append(over)
        if over:
            state = after_throttle(state, policy, pace, start + 30)
        elif pace:
            state = after_clean_minute(state, policy, pace)
    return paces, throttled


def test_a_neighbour_spending_30_a_minute_costs_a_share_never_two_lockouts_in_a_row() -> None:
    day = 24 * 60
    paces, throttled = simulate([30] * day)
    assert not any(a and b for a, b in itertools.pairwise(throttled))
    assert sum(throttled) <= 8, "lockouts must grow rarer, not recur every few minutes"
    assert sum(throttled[day // 2 :]) <= 1
    # Our share: the budget minus the neighbour's, most of the time.
    settled = paces[60:]
    assert sum(p >= 29 for p in settled) / len(settled) > 0.9
    # At most a probe one above the share, and one step past it when the probe ran clean.
    assert max(settled) <= 30 + 1 + POLICY.recovery_step - 1


def test_the_full_pace_comes_back_when_the_neighbour_leaves() -> None:
    paces, throttled = simulate([30] * 120 + [0] * 600)
    assert paces[-1] == FULL
    assert not any(throttled[120:])
