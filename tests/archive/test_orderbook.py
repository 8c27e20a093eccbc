"""The pure reconstruction: the order-level book, the chain of an anchor across cuts, known and
unknown spans and their names, watched time from the records, drift."""

from __future__ import annotations

from decimal import Decimal

from bitso_archive.chain import AnchorFeed, BookWalker
from bitso_archive.cut_records import ChannelRecord, CutRecord, LostStreamObject, UnwatchedSpan
from bitso_archive.orderbook import (
    BUY,
    SELL,
    AggregatedSnapshot,
    Anchor,
    BookView,
    Diff,
    KnownSpan,
    OrderBook,
    OrderChange,
    RestingOrder,
    UnknownSpan,
)
from bitso_archive.watched import Watched, watched_time

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


def anchor(sequence: int, received: int, *orders: RestingOrder) -> Anchor:
    return Anchor(f"anchor-{sequence}", sequence, M + received - 80, M + received, orders)


def hole(start: int, end: int, reason: str) -> UnknownSpan:
    return UnknownSpan(M + start, M + end, reason, f"planted {reason}")


def walker(
    diffs: list[Diff],
    anchors: list[Anchor],
    holes: list[UnknownSpan] = (),  # type: ignore[assignment]
    end: int = 60_000,
    snapshots: list[AggregatedSnapshot] = (),  # type: ignore[assignment]
) -> BookWalker:
    by_slot = {a.slot_ms: a for a in anchors}
    watched = Watched("btc_mxn", M - 60_000, M + end, list(holes))
    feed = AnchorFeed(by_slot, by_slot.get)
    return BookWalker("btc_mxn", diffs, feed, watched, M, M + end, snapshots)


def summary(spans: list[KnownSpan | UnknownSpan]) -> list[tuple[int, int, str]]:
    return [
        (s.start_ms - M, s.end_ms - M, "known" if isinstance(s, KnownSpan) else s.reason)
        for s in spans
    ]


def known(found: BookView | UnknownSpan) -> BookView:
    assert isinstance(found, BookView), found
    return found


def refused(found: BookView | UnknownSpan) -> UnknownSpan:
    assert isinstance(found, UnknownSpan), found
    return found


def test_the_book_at_instants_from_an_anchor_through_the_diffs_after_it() -> None:
    a = anchor(10, 1_000, RestingOrder("a", BUY, D("100"), D("1")))
    diffs = [
        diff(9, 900),  # already in the anchor: skipped
        diff(11, 950, opened("b", SELL, "101", "2")),  # above it, though received before it
        diff(12, 2_000, opened("a", BUY, "100", "0.4")),
        diff(13, 2_000, gone("b", SELL, "101")),
        diff(14, 3_000, opened("c", SELL, "102", "5")),
    ]
    walk = walker(diffs, [a])
    assert refused(walk.at(M + 999)).reason == "before_first_anchor"
    first = known(walk.at(M + 1_000))
    assert (first.sequence, first.bids[0].amount, first.asks[0].price) == (11, D("1"), D("101"))
    later = known(walk.at(M + 2_000))  # both diffs received at 2.000 s are in
    assert later.sequence == 13 and later.bids[0].amount == D("0.4") and later.asks == ()
    # Watched, and nothing missing: known after the last diff too (the stream runs on).
    assert known(walk.at(M + 59_999)).sequence == 14


def test_a_missing_sequence_ends_the_chain_at_the_diff_before_it_until_the_next_anchor() -> None:
    a1 = anchor(10, 5_080, RestingOrder("a", BUY, D("100"), D("1")))
    a2 = anchor(40, 30_080, RestingOrder("a", BUY, D("100"), D("2")))
    diffs = [diff(10 + i, 5_000 + 1000 * i) for i in range(1, 11)]  # 11..20, 6 s to 15 s
    diffs += [diff(25, 16_000)]  # 21..24 never came
    diffs += [diff(41 + i, 31_000 + 100 * i) for i in range(3)]  # 41..43
    walk = walker(diffs, [a1, a2])
    assert known(walk.at(M + 14_999)).sequence == 19
    # At 15 s the next diff has not come yet, but it is missing: unknown from the one before.
    gap = refused(walk.at(M + 15_000))
    assert gap.reason == "sequence_gap" and gap.gap is not None
    assert (gap.gap.after, gap.gap.next) == (20, 25)
    assert "sequence gap after 20 (received 2026-11-20T10:00:15.000Z), next 25" in gap.detail
    assert "known again from the next anchor, received 2026-11-20T10:00:30.080Z" in gap.detail
    assert (gap.start_ms, gap.end_ms) == (M + 15_000, M + 30_080)
    assert known(walk.at(M + 30_080)).bids[0].amount == D("2")
    assert summary(walk.finish()) == [
        (0, 5_080, "before_first_anchor"),
        (5_080, 15_000, "known"),
        (15_000, 30_080, "sequence_gap"),
        (30_080, 60_000, "known"),
    ]


def test_a_gap_right_after_the_anchor_leaves_its_chain_unknown_from_its_receipt() -> None:
    walk = walker([diff(12, 2_000), diff(13, 3_000)], [anchor(10, 1_000)])
    found = refused(walk.at(M + 1_000))
    assert found.reason == "sequence_gap" and found.gap is not None
    assert (found.gap.after, found.gap.after_ms, found.gap.next) == (10, None, 12)
    assert "the sequence of anchor anchor-10" in found.detail
    assert "no later anchor was found" in found.detail


def test_an_anchor_switch_rebuilds_from_the_diffs_received_before_it() -> None:
    """REST may answer with a book the socket has already passed: the diffs above its sequence
    received before it are applied to it."""
    a1 = anchor(10, 1_000, RestingOrder("a", BUY, D("100"), D("1")))
    a2 = anchor(12, 4_000, RestingOrder("a", BUY, D("100"), D("9")))
    diffs = [
        diff(11, 2_000, opened("b", SELL, "101", "1")),
        diff(12, 3_000, opened("b", SELL, "101", "2")),
        diff(13, 3_900, opened("b", SELL, "101", "3")),  # above a2, before its receipt
        diff(14, 5_000, opened("c", SELL, "102", "1")),
    ]
    walk = walker(diffs, [a1, a2])
    assert known(walk.at(M + 3_999)).bids[0].amount == D("1")
    switched = known(walk.at(M + 4_000))
    assert (switched.sequence, switched.bids[0].amount) == (13, D("9"))
    assert switched.asks[0].amount == D("3") and switched.anchor == "anchor-12"


def test_holes_are_named_by_the_records_and_a_freeze_does_not_break_the_chain() -> None:
    a = anchor(10, 1_000, RestingOrder("a", BUY, D("100"), D("1")))
    diffs = [diff(11, 2_000), diff(12, 8_000), diff(13, 8_000), diff(14, 9_000)]
    walk = walker(diffs, [a], [hole(5_000, 8_000, "frozen")])
    assert refused(walk.at(M + 6_000)).reason == "frozen"
    assert known(walk.at(M + 8_000)).sequence == 13  # the burst of late receipts, applied
    assert summary(walk.finish()) == [
        (0, 1_000, "before_first_anchor"),
        (1_000, 5_000, "known"),
        (5_000, 8_000, "frozen"),
        (8_000, 60_000, "known"),
    ]


def test_an_outage_is_crossed_only_when_a_diff_after_it_continues_the_chain() -> None:
    a = anchor(10, 1_000)
    outage = [hole(5_000, 6_000, "outage")]
    crossed = walker([diff(11, 2_000), diff(12, 7_000)], [a], outage)
    assert known(crossed.at(M + 6_500)).sequence == 11  # 12 follows 11: nothing was missed
    lost = walker([diff(11, 2_000), diff(13, 7_000)], [a], outage)
    assert summary(lost.finish()) == [
        (0, 1_000, "before_first_anchor"),
        (1_000, 2_000, "known"),
        (2_000, 5_000, "sequence_gap"),
        (5_000, 6_000, "outage"),
        (6_000, 60_000, "sequence_gap"),
    ]
    silent = walker([diff(11, 2_000)], [a], outage)  # no diff at all after the outage
    assert summary(silent.finish())[-2:] == [(5_000, 6_000, "outage"), (6_000, 60_000, "outage")]
    unproven = refused(walker([diff(11, 2_000)], [a], outage).at(M + 6_500))
    assert unproven.reason == "outage"
    assert "no diff was received after that to show whether any was missed" in unproven.detail


def test_drift_compares_each_snapshot_with_the_book_at_its_sequence() -> None:
    a = anchor(10, 1_000, RestingOrder("a", BUY, D("100"), D("1")))
    diffs = [
        diff(11, 1_500, opened("b", SELL, "101", "2")),
        diff(12, 2_000, opened("c", BUY, "100", "0.5")),
    ]

    def snap(name: str, sequence: int, bid: str, ask: str | None) -> AggregatedSnapshot:
        asks = ((D("101"), D(ask)),) if ask else ()
        return AggregatedSnapshot(name, sequence, M + 1_500, M + 1_600, ((D("100"), D(bid)),), asks)

    walk = walker(
        diffs,
        [a],
        snapshots=[
            snap("before", 9, "1", None),
            snap("at-11", 11, "1", "2"),
            snap("missing-ask", 11, "1", None),
            snap("at-12", 12, "1.50000000", "2"),  # equal values, other spelling: a match
            snap("planted", 12, "1.5", "2.1"),
            snap("beyond", 99, "1", None),
        ],
    )
    walk.finish()
    checks = {c.snapshot: c for c in walk.drift}
    assert {name: c.status for name, c in checks.items()} == {
        "before": "unchecked",
        "at-11": "match",
        "missing-ask": "drift",
        "at-12": "match",
        "planted": "drift",
        "beyond": "unchecked",
    }
    assert checks["planted"].detail == "ask level 0: rebuilt 101 x 2, snapshot 101 x 2.1"
    assert checks["missing-ask"].detail == "asks: rebuilt 1 levels, snapshot 0"


def cut(
    name: str,
    instance: str,
    covers: tuple[int, int],
    *,
    shutdown: bool = False,
    unwatched: tuple[tuple[int, int, str], ...] = (),
    lost: tuple[str, ...] = (),
    objects: tuple[str, ...] = (),
) -> CutRecord:
    channel = ChannelRecord(
        messages=0,
        first_sequence=None,
        last_sequence=None,
        reconnects=0,
        uncovered_ms=0,
        backfilled=0,
        sequence_gaps=(),
        objects=objects,
        covers=(M + covers[0], M + covers[1]),
        first_received_ms=None,
        last_received_ms=None,
        continuous=True,
        unwatched=tuple(UnwatchedSpan(M + a, M + b, why) for a, b, why in unwatched),
    )
    return CutRecord(
        name=name,
        named_ms=M + covers[1] - covers[1] % 60_000,
        shutdown=shutdown,
        instance=instance,
        instance_started_ms=None,
        cut_ms=M + covers[1],
        disconnects=(),
        channels={("btc_mxn", "diff-orders"): channel},
        lost=tuple(LostStreamObject("btc_mxn", "diff-orders", o, "storage: 503") for o in lost),
        anchor_slots=frozenset(),
        backfill_slots=frozenset(),
    )


def test_watched_time_names_every_hole_between_and_inside_the_cuts() -> None:
    records = [
        cut("a1", "aaaaaaaa", (1_000, 58_000)),
        cut("a2", "aaaaaaaa", (58_000, 118_000), unwatched=((70_000, 75_000, "outage"),)),
        cut("a-stop", "aaaaaaaa", (118_000, 130_000), shutdown=True),
        cut("b1", "bbbbbbbb", (140_000, 178_000), unwatched=((150_000, 160_000, "frozen"),)),
        # c watched all of b's freeze: no hole there
        cut("c1", "cccccccc", (145_000, 238_000)),
        cut("c2", "cccccccc", (238_000, 298_000)),
        # c's cut of 358 s is missing; its next one covers from it
        cut("c4", "cccccccc", (358_000, 418_000)),
        cut("d1", "dddddddd", (450_000, 478_000)),
    ]
    watched = watched_time(records, "btc_mxn", "diff-orders", M, M + 500_000)
    assert [(h.start_ms - M, h.end_ms - M, h.reason) for h in watched.holes] == [
        (0, 1_000, "not_recorded"),
        (70_000, 75_000, "outage"),
        (130_000, 140_000, "instance_start"),
        (298_000, 358_000, "not_recorded"),
        (418_000, 450_000, "crash"),
        (478_000, 500_000, "not_recorded"),
    ]
    details = [h.detail for h in watched.holes]
    assert "instance aaaaaaaa shut down at 2026-11-20T10:02:10.000Z (a-stop)" in details[2]
    assert "no record of instance cccccccc covers this" in details[3]
    assert "instance cccccccc's last cut was at 2026-11-20T10:06:58.000Z (c4)" in details[4]
    assert "no shutdown record followed" in details[4]
    assert "after the last cut recorded" in details[5]
    assert watched.hole_at(M + 155_000) is None


def test_an_object_a_cut_lost_or_that_is_gone_is_a_hole_of_its_hour() -> None:
    """The cut of 10:59 covers 10:58:58 to 11:00:58: one object an hour."""
    ten = "diff-orders/2026/11/20/10/btc_mxn_20261120T1059Z.ndjson.gz"
    eleven = "collector/diff-orders/2026/11/20/11/btc_mxn_20261120T1059Z.ndjson.gz"
    span = (3_538_000, 3_658_000)
    records = [cut("a1", "aaaaaaaa", span, lost=(ten,))]
    (lost,) = watched_time(records, "btc_mxn", "diff-orders", M, M + 4_000_000).holes[1:-1]
    assert (lost.start_ms - M, lost.end_ms - M, lost.reason) == (
        3_538_000,
        3_600_000,
        "not_recorded",
    )
    assert f"the cut's object {ten} was not stored (storage: 503)" in lost.detail
    records = [cut("a1", "aaaaaaaa", span, objects=(ten, eleven))]
    gone = watched_time(
        records, "btc_mxn", "diff-orders", M, M + 4_000_000, present=lambda name: name == ten
    ).holes[1:-1]
    assert [(h.start_ms - M, h.end_ms - M, h.reason) for h in gone] == [
        (3_600_000, 3_658_000, "not_recorded")
    ]
    assert f"the object {eleven} that a1 names is not in the archive" in gone[0].detail


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
