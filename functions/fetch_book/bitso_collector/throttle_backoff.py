"""Rate safety across minutes: the pace an instance may request at after a throttling reply.

A throttling reply means Bitso has locked the IP out for a minute, and repeated lockouts can
bring a 24-hour block. So after one the instance sends Bitso nothing until a lockout after the
last throttling reply, then resumes at half the pace that was throttled and earns the pace back
a few slots per clean minute, up to a ceiling. The ceiling is the lowest of: the last pace that
ran clean, one below the pace that was throttled, and one below our share, the number of our
own requests Bitso had accepted in the window before it refused one (the rest of the window was
a neighbour's). Only after a run of clean minutes at that ceiling does it try one slot more (and
climbs on if that runs clean); every throttle doubles that run. A neighbour who keeps spending
part of the budget so costs a share of it, and at worst a lockout that comes ever more rarely,
never two minutes in a row.

Pure: transitions take the times they need. `PaceKeeper` holds one `PaceState` per instance
(the instance's module-level runtime), so a new instance starts at the full pace.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from enum import StrEnum

from .rate_guard import Pacer

#: Bitso's lockout after a throttling reply, in seconds of a real minute.
LOCKOUT_S = 60.0


class PaceMode(StrEnum):
    """How a call's minute is paced; the value is what run records say."""

    FULL = "full"
    #: Inside the silence after a throttling reply: nothing is requested before `silent_until`.
    BACKING_OFF = "backing_off"
    #: After the silence, below the full pace.
    RECOVERING = "recovering"


@dataclass(frozen=True)
class PacePolicy:
    """The rules; `full` is REQUESTS_PER_MINUTE."""

    full: int
    #: The silence after the last throttling reply (scaled with a compressed minute).
    lockout_s: float = LOCKOUT_S
    #: Pace regained after each clean minute, up to the ceiling.
    recovery_step: int = 3
    #: Clean minutes at the ceiling before one slot more is tried; doubled by every throttle.
    patience: int = 15
    max_patience: int = 24 * 60

    def __post_init__(self) -> None:
        if self.full < 1 or self.recovery_step < 1 or not 1 <= self.patience <= self.max_patience:
            raise ValueError(f"invalid pace policy {self}")


@dataclass(frozen=True)
class PaceState:
    #: Slots of the next minute.
    pace: int
    #: The pace earned back to before anything higher is tried.
    ceiling: int
    #: The pace of the latest minute that ran without a throttling reply.
    last_clean_pace: int
    #: Clean minutes in a row at the ceiling (towards `patience`).
    clean_at_ceiling: int
    patience: int
    #: No request may start before this (epoch seconds); None before any throttling reply.
    silent_until: float | None = None
    #: When the latest throttling reply was received.
    throttled_at: float | None = None

    def mode(self, at: float, full: int) -> PaceMode:
        """How a minute that begins at `at` is paced."""
        if self.silent_until is not None and at < self.silent_until:
            return PaceMode.BACKING_OFF
        return PaceMode.FULL if self.pace >= full else PaceMode.RECOVERING


def initial_state(policy: PacePolicy) -> PaceState:
    """A new instance: the full pace, nothing known about neighbours."""
    return PaceState(policy.full, policy.full, policy.full, 0, policy.patience)


def after_throttle(
    state: PaceState,
    policy: PacePolicy,
    pace_used: int,
    replied_at: float,
    share: int | None = None,
) -> PaceState:
    """A minute run at `pace_used` got its last throttling reply at `replied_at`; `share` is how
    many of our requests started in the window before the first refused one (None: unknown)."""
    limits = [pace_used - 1, state.last_clean_pace]
    if share is not None:
        limits.append(share - 1)
    ceiling = max(1, min(limits))
    return replace(
        state,
        pace=max(1, min(pace_used // 2, ceiling)),
        ceiling=ceiling,
        last_clean_pace=min(state.last_clean_pace, ceiling),
        clean_at_ceiling=0,
        patience=min(policy.max_patience, state.patience * 2),
        silent_until=replied_at + policy.lockout_s,
        throttled_at=replied_at,
    )


def after_clean_minute(state: PaceState, policy: PacePolicy, pace_used: int) -> PaceState:
    """A minute run at `pace_used` requested and got no throttling reply."""
    if state.pace < state.ceiling:
        return replace(
            state,
            pace=min(state.ceiling, state.pace + policy.recovery_step),
            last_clean_pace=pace_used,
        )
    if state.ceiling >= policy.full:
        # Back at the full pace: the next throttle starts the patience afresh.
        return replace(state, last_clean_pace=pace_used, patience=policy.patience)
    clean = state.clean_at_ceiling + 1
    if clean < state.patience:
        return replace(state, last_clean_pace=pace_used, clean_at_ceiling=clean)
    # Try one slot more; if that runs clean too, the climb goes on step by step to the full
    # pace, and a throttle on the way sets the ceiling back to the last clean pace.
    return replace(
        state,
        pace=state.ceiling + 1,
        ceiling=policy.full,
        last_clean_pace=pace_used,
        clean_at_ceiling=0,
    )


class PaceKeeper:
    """The instance's pace across its calls (one lock: calls never overlap, but a test's or a
    bench's may), and what each call's run record says of it."""

    def __init__(self, policy: PacePolicy, pacer: Pacer) -> None:
        self.policy = policy
        self.state = initial_state(policy)
        self._pacer = pacer
        self._lock = threading.Lock()

    def after_call(
        self,
        pace_used: int,
        throttled: bool,
        requests_sent: int,
        last_throttle_reply: float | None,
        first_throttled_start: float | None,
        window_s: float,
    ) -> PaceState:
        """The state after a call that ran at `pace_used`."""
        with self._lock:
            if throttled and last_throttle_reply is not None:
                share = None
                if first_throttled_start is not None:
                    first = first_throttled_start
                    share = self._pacer.starts_between(first - window_s, first)
                self.state = after_throttle(
                    self.state, self.policy, pace_used, last_throttle_reply, share
                )
            elif requests_sent:
                self.state = after_clean_minute(self.state, self.policy, pace_used)
            return self.state
