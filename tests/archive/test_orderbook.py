"""The pure reconstruction: order-level book, sequence chains, known and unknown spans, drift."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bitso_archive.orderbook import (
    BUY,
    SELL,
    AggregatedSnapshot,
    Anchor,
    Diff,
    KnownSpan,
    Minute,
    MinuteBooks,
    OrderBook,
    OrderChange,
    RestingOrder,
    UnknownInstantError,
    UnknownSpan,
    chain_of,
    check_drift,
    coverage,
    sequence_gaps,
)

M = 1_795_168_800_000  # 2026-11-20T10:00:00Z
D = Decimal


def opened(oid: str, side: int, price: str, amount: str) -> OrderChange:
    return OrderChange(oid, side, D(price), D(amount))


def gone(oid: str, side: int, price: str) -> OrderChange:
    return OrderChange(oid, side, D(price), None)


def levels(book: OrderBook, side: int) -> list[tuple[str, str, int]]:
    return [(format(lv.price, "f"), format(lv.amount, "f"), lv.orders) for lv in book.side(side)]


def test_open_sets_cancel_and_complete_remove_levels_best_first() -> None:
    book = OrderBook(
        [
            RestingOrder("a", BUY, D("100.00"), D("1.00000000")),
            RestingOrder("b", BUY, D("100.00"), D("0.50000000")),
            RestingOrder("c", BUY, D("99.50"), D("2.00000000")),
            RestingOrder("x", SELL, D("101.00"), D("0.10000000")),
            RestingOrder("y", SELL, D("100.50"), D("0.20000000")),
        ]
    )
    assert levels(book, BUY) == [("100.00", "1.50000000", 2), ("99.50", "2.00000000", 1)]
    assert levels(book, SELL) == [("100.50", "0.20000000", 1), ("101.00", "0.10000000", 1)]
    book.change(opened("a", BUY, "100.00", "0.25000000"))  # partly filled: its new amount
    book.change(gone("c", BUY, "99.50"))  # cancelled
    book.change(gone("y", SELL, "100.50"))  # completed
    book.change(opened("z", SELL, "100.75", "3.00000000"))  # a new order
    assert levels(book, BUY) == [("100.00", "0.75000000", 2)]
    assert levels(book, SELL) == [("100.75", "3.00000000", 1), ("101.00", "0.10000000", 1)]
    assert len(book) == 4


def test_an_order_that_moves_leaves_its_old_level_and_unknown_removals_change_nothing() -> None:
    book = OrderBook([RestingOrder("a", BUY, D("100"), D("1"))])
    book.change(opened("a", BUY, "98", "1"))
    book.change(gone("never-seen", SELL, "120"))
    assert levels(book, BUY) == [("98", "1", 1)]
    assert levels(book, SELL) == []


def test_prices_written_differently_are_one_level_and_sums_stay_exact() -> None:
    book = OrderBook()
    book.change(opened("a", SELL, "7190", "0.1"))
    book.change(opened("b", SELL, "7190.00", "0.2"))
    book.change(opened("c", SELL, "7190.5", "0.00000001"))
    (first, second) = book.side(SELL)
    assert (first.price, first.amount, first.orders) == (D("7190"), D("0.3"), 2)
    assert format(first.amount, "f") == "0.3"  # 0.1 + 0.2, exactly (no float)
    assert second.amount == D("0.00000001")
    assert [lv.price for lv in book.side(SELL, depth=1)] == [D("7190")]


def test_depth_keeps_the_best_levels_of_each_side() -> None:
    book = OrderBook(
        [RestingOrder(f"b{i}", BUY, D(100 - i), D(1)) for i in range(5)]
        + [RestingOrder(f"s{i}", SELL, D(101 + i), D(1)) for i in range(5)]
    )
    assert [lv.price for lv in book.side(BUY, 2)] == [D(100), D(99)]
    assert [lv.price for lv in book.side(SELL, 2)] == [D(101), D(102)]


def diff(sequence: int, received: int, *changes: OrderChange) -> Diff:
    return Diff(sequence, M + received, changes)


def anchor(sequence: int, received: int, *orders: RestingOrder, name: str = "") -> Anchor:
    return Anchor(name or f"anchor-{sequence}", sequence, M + received, orders)


def test_chain_skips_what_the_anchor_holds_and_stops_at_a_jump() -> None:
    diffs = [
        diff(9, 100),  # already in the anchor (received after it: skipped)
        diff(11, 150),
        diff(12, 200),
        diff(14, 300),  # 13 never came
        diff(15, 400),
    ]
    chain = chain_of(anchor(10, 120), diffs)
    assert (chain.end, chain.last_sequence, chain.known_until_ms) == (3, 12, M + 200)
    assert chain.gap is not None
    assert (chain.gap.after, chain.gap.next, chain.gap.after_ms) == (12, 14, M + 200)
    assert [(g.after, g.next) for g in sequence_gaps(diffs)] == [(9, 11), (12, 14)]


def test_a_repeated_sequence_breaks_the_chain_too() -> None:
    chain = chain_of(anchor(10, 0), [diff(11, 10), diff(12, 20), diff(11, 30), diff(13, 40)])
    assert chain.gap is not None and (chain.gap.after, chain.gap.next) == (12, 11)
    assert chain.known_until_ms == M + 20


def test_coverage_names_every_unknown_span() -> None:
    a1 = anchor(10, 5_080, RestingOrder("a", BUY, D("100"), D("1")))
    a2 = anchor(40, 30_080, RestingOrder("a", BUY, D("100"), D("2")))
    diffs = [diff(10 + i, 5_000 + 1000 * i) for i in range(1, 11)]  # 11..20, 6 s to 15 s
    diffs += [diff(25, 16_000)]  # 21..24 lost
    diffs += [diff(41 + i, 31_000 + 100 * i) for i in range(3)]  # 41..43, last at 31.2 s
    spans = coverage(Minute("btc_mxn", M, diffs, [a2, a1]))
    summary = [
        (s.start_ms - M, s.end_ms - M, "known" if isinstance(s, KnownSpan) else s.reason)
        for s in spans
    ]
    assert summary == [
        (0, 5_080, "before_first_anchor"),
        (5_080, 15_000, "known"),
        (15_000, 30_080, "sequence_gap"),
        (30_080, 31_200, "known"),
        (31_200, 60_000, "after_last_diff"),
    ]
    gap_span = spans[2]
    assert isinstance(gap_span, UnknownSpan) and gap_span.gap is not None
    assert (gap_span.gap.after, gap_span.gap.next) == (20, 25)
    assert "sequence gap after 20" in gap_span.detail and "next 25" in gap_span.detail
    assert "2026-11-20T10:00:30.080Z" in gap_span.detail  # when it is known again


def test_no_anchor_and_an_anchor_without_diffs_know_nothing() -> None:
    (only,) = coverage(Minute("btc_mxn", M, [diff(5, 1_000)], []))
    assert isinstance(only, UnknownSpan) and only.reason == "no_anchor"
    spans = coverage(Minute("btc_mxn", M, [], [anchor(5, 5_080)]))
    assert [s.reason for s in spans if isinstance(s, UnknownSpan)] == [
        "before_first_anchor",
        "after_last_diff",
    ]
    assert not any(isinstance(s, KnownSpan) for s in spans)


def test_minute_books_at_instants_including_a_step_back_and_the_refusals() -> None:
    a = anchor(10, 1_000, RestingOrder("a", BUY, D("100"), D("1")))
    diffs = [
        diff(11, 1_500, opened("b", SELL, "101", "2")),
        diff(12, 2_000, opened("a", BUY, "100", "0.4")),
        diff(13, 2_000, gone("b", SELL, "101")),
        diff(14, 3_000, opened("c", SELL, "102", "5")),
    ]
    books = MinuteBooks(Minute("btc_mxn", M, diffs, [a]))
    first = books.at(M + 1_000)
    assert (first.sequence, first.bids[0].amount, first.asks) == (10, D("1"), ())
    later = books.at(M + 2_000)  # both diffs received at 2.000 s are in
    assert later.sequence == 13 and later.bids[0].amount == D("0.4") and later.asks == ()
    back = books.at(M + 1_700)
    assert back.sequence == 11 and back.asks[0].price == D("101")
    assert books.at(M + 2_999).sequence == 13
    with pytest.raises(UnknownInstantError) as refused:
        books.at(M + 3_000)  # the last diff's receipt: nothing after it is recorded
    assert refused.value.reason == "after_last_diff"
    assert "btc_mxn at 2026-11-20T10:00:03.000Z is unknown" in str(refused.value)
    with pytest.raises(UnknownInstantError) as early:
        books.at(M + 999)
    assert early.value.reason == "before_first_anchor"


def test_drift_compares_with_the_book_at_the_snapshots_sequence() -> None:
    a = anchor(10, 1_000, RestingOrder("a", BUY, D("100"), D("1")))
    diffs = [
        diff(11, 1_500, opened("b", SELL, "101", "2")),
        diff(12, 2_000, opened("c", BUY, "100", "0.5")),
    ]
    minute = Minute("btc_mxn", M, diffs, [a])

    def snap(name: str, sequence: int, bid: str, ask: str | None) -> AggregatedSnapshot:
        asks = ((D("101"), D(ask)),) if ask else ()
        return AggregatedSnapshot(name, sequence, M, ((D("100"), D(bid)),), asks)

    checks = check_drift(
        minute,
        [
            snap("at-11", 11, "1", "2"),
            snap("at-12", 12, "1.50000000", "2"),  # equal values, other spelling: a match
            snap("planted", 12, "1.5", "2.1"),
            snap("before", 9, "1", None),
            snap("missing-ask", 11, "1", None),
        ],
    )
    assert [(c.snapshot, c.status) for c in checks] == [
        ("at-11", "match"),
        ("at-12", "match"),
        ("planted", "drift"),
        ("before", "unchecked"),
        ("missing-ask", "drift"),
    ]
    assert checks[2].detail == "ask level 0: rebuilt 101 x 2, snapshot 101 x 2.1"
    assert checks[4].detail == "asks: rebuilt 1 levels, snapshot 0"


def test_an_anchor_that_lists_an_order_twice_keeps_the_later_one() -> None:
    book = OrderBook(
        [
            RestingOrder("a", BUY, D("100"), D("1")),
            RestingOrder("b", BUY, D("99"), D("2")),
            RestingOrder("a", SELL, D("105"), D("3")),
        ]
    )
    assert levels(book, BUY) == [("99", "2", 1)]
    assert levels(book, SELL) == [("105", "3", 1)]
    book.change(gone("b", BUY, "99"))
    assert levels(book, BUY) == []


def test_an_outage_ends_the_known_span_at_the_last_diff_before_it_even_without_a_jump() -> None:
    a1 = anchor(10, 1_000)
    a2 = anchor(24, 9_000)
    diffs = [diff(11 + i, 2_000 + 500 * i) for i in range(10)]  # 11..20, 2.0 s to 6.5 s
    diffs += [diff(21 + i, 7_500 + 500 * i) for i in range(10)]  # resubscribed: 21 follows 20
    minute = Minute("btc_mxn", M, diffs, [a1, a2], disconnects=[M + 6_800])
    summary = [
        (s.start_ms - M, s.end_ms - M, "known" if isinstance(s, KnownSpan) else s.reason)
        for s in coverage(minute)
    ]
    assert summary == [
        (0, 1_000, "before_first_anchor"),
        (1_000, 6_500, "known"),
        (6_500, 9_000, "outage"),
        (9_000, 12_000, "known"),
        (12_000, 60_000, "after_last_diff"),
    ]
    with pytest.raises(UnknownInstantError) as refused:
        MinuteBooks(minute).at(M + 7_000)
    assert refused.value.reason == "outage"
    assert "the socket was lost at 2026-11-20T10:00:06.800Z" in str(refused.value)
    assert "sequence 20 (received 2026-11-20T10:00:06.500Z)" in str(refused.value)
    # Drift follows the sequence, which the outage did not break: the first anchor still
    # rebuilds sequence 25 exactly.
    (check,) = check_drift(minute, [AggregatedSnapshot("s", 25, M, (), ())])
    assert check.status == "match"
