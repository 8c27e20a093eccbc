"""The fake Bitso's shared budget: a neighbour's starts count against the window and lockout.

The fake runs on a clock the test sets, so nothing depends on how fast this machine is.
"""

from __future__ import annotations

from bitso_testkit.fake_bitso import Behaviour, FakeBitso

WINDOW = 60.0


class ManualClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_a_neighbour_spends_the_same_budget_and_its_overflow_locks_us_out() -> None:
    clock = ManualClock(1_000.0)
    behaviour = Behaviour(limit=10, window=WINDOW, neighbour_per_window=6)
    with FakeBitso(behaviour, clock=clock) as fake:
        # It has been spending 6 a window (every 10 s) for a window already: 6 in the window.
        assert [n.at for n in fake.neighbour_starts()] == [940.0, 950, 960, 970, 980, 990, 1_000]
        # The window holds the 6 starts after 940; 4 of ours fit, the 5th is refused.
        ours = [fake.admit(1_000.5 + k)[0] for k in range(5)]
        assert ours == [False, False, False, False, True]
        # Refused: locked out for a window, and the neighbour with us.
        clock.at = 1_050.0
        assert fake.admit(1_050.0)[0] is True
        later = [n for n in fake.neighbour_starts() if n.at > 1_000]
        assert [(n.at, n.refused) for n in later] == [
            (1_010.0, True),
            (1_020.0, True),
            (1_030.0, True),
            (1_040.0, True),
            (1_050.0, True),
        ]
        # After the lockout (until 1_064.5) only the starts within the last window count: the
        # neighbour's 6 and our 1 refused at 1_050 of the window, so 3 more of ours fit.
        clock.at = 1_065.0
        assert [fake.admit(1_065.0 + k * 0.1)[0] for k in range(4)] == [False, False, False, True]


def test_without_a_neighbour_the_budget_is_ours_alone() -> None:
    with FakeBitso(Behaviour(limit=3, window=WINDOW), clock=ManualClock(0.0)) as fake:
        assert fake.neighbour_starts() == []
        assert [fake.admit(1_000.0 + k)[0] for k in range(4)] == [False, False, False, True]


def test_full_books_use_plain_decimal_notation() -> None:
    """Bitso never sends `3.4E-7`; the fake's tiny amounts must not either."""
    import re

    from bitso_testkit.fake_bitso import SimulatedBook

    book = SimulatedBook("eth_mxn", seed=3)
    book.rng.randint = lambda a, b: 34  # type: ignore[method-assign]  # 34e-8, the smallest kind
    payload = book.next(aggregate=False)
    for level in payload["bids"] + payload["asks"]:
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", level["amount"]), level
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)?", level["price"]), level
    assert payload["asks"][0]["amount"] == "0.00000034"
