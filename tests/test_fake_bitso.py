"""The fake Bitso's shared budget: a neighbour's starts count against the window and lockout.

Times are given to `admit` directly, in a window far longer than the test takes, so the
neighbour's schedule (which runs on the real clock) never gets ahead of them.
"""

from __future__ import annotations

from bitso_testkit.fake_bitso import Behaviour, FakeBitso

WINDOW = 1_000.0


def test_a_neighbour_spends_the_same_budget_and_its_overflow_locks_us_out() -> None:
    with FakeBitso(Behaviour(limit=10, window=WINDOW, neighbour_per_window=6)) as fake:
        begin = fake.neighbour_starts()[0].at
        # By 0.99 of a window the neighbour has started 6 times (every 1/6); 4 of ours fit.
        ours = [fake.admit(begin + 990 + k)[0] for k in range(5)]
        assert ours == [False, False, False, False, True]
        # Our 5th start was over the limit: locked out for a window, the neighbour too.
        assert fake.admit(begin + 1_550)[0] is True
        neighbour = fake.neighbour_starts()
        assert [round((n.at - begin) * 6 / WINDOW, 6) for n in neighbour] == list(range(10))
        assert [n.refused for n in neighbour] == [False] * 6 + [True] * 4
        # After the lockout only the starts within the last window count.
        assert fake.admit(begin + 3_200)[0] is False


def test_without_a_neighbour_the_budget_is_ours_alone() -> None:
    with FakeBitso(Behaviour(limit=3, window=WINDOW)) as fake:
        assert fake.neighbour_starts() == []
        assert [fake.admit(1_000.0 + k)[0] for k in range(4)] == [False, False, False, True]
