"""The fake's order-level market: deterministic, exact, and its REST views agree with its diffs."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from bitso_format import DECIMAL_PATTERN
from bitso_testkit.market import (
    AGGREGATED_LEVELS,
    BOOKS,
    ChangeKind,
    Exchange,
    Market,
)

START_MS = 1_795_515_300_000


def run(market: Market, steps: int) -> list[dict[str, Any]]:
    messages = []
    for index in range(steps):
        messages.extend(market.step(START_MS + 7 * index).messages())
    return messages


def apply_diffs(
    orders: dict[str, tuple[str, str]], messages: list[dict[str, Any]]
) -> dict[str, tuple[str, str]]:
    """A client's order-level book after `messages`: oid -> (price, amount), from the diffs
    alone, as Bitso's docs say a client keeps its book."""
    book = dict(orders)
    for message in messages:
        if message["type"] != "diff-orders":
            continue
        for entry in message["payload"]:
            if entry["s"] == "open":
                book[entry["o"]] = (entry["r"], entry["a"])
            else:
                book.pop(entry["o"], None)
    return book


def full_book(payload: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {o["oid"]: (o["price"], o["amount"]) for o in payload["bids"] + payload["asks"]}


def test_the_same_seed_and_times_make_the_same_market() -> None:
    first, second = Market("btc_mxn", seed=3), Market("btc_mxn", seed=3)
    assert run(first, 300) == run(second, 300)
    assert first.order_book(aggregate=False) == second.order_book(aggregate=False)
    assert run(Market("btc_mxn", seed=4), 50) != run(Market("btc_mxn", seed=3), 50)


def test_sequences_rise_by_one_and_every_kind_of_change_happens() -> None:
    market = Market("eth_mxn", seed=1)
    first = market.sequence
    changes = [market.step(START_MS + index) for index in range(600)]
    assert [c.sequence for c in changes] == list(range(first + 1, first + 601))
    assert market.sequence == first + 600
    assert {c.kind for c in changes} == set(ChangeKind)
    diffs = [c.diff_message() for c in changes]
    assert all(d["type"] == "diff-orders" and d["book"] == "eth_mxn" for d in diffs)
    assert all(len(d["payload"]) == 1 for d in diffs)


def test_diff_entries_have_the_fields_bitsos_docs_give_each_status() -> None:
    market = Market("btc_mxn", seed=2)
    seen: dict[ChangeKind, dict[str, Any]] = {}
    for index in range(400):
        change = market.step(START_MS + index)
        seen.setdefault(change.kind, change.diff_message()["payload"][0])
    assert set(seen[ChangeKind.OPEN]) == {"o", "d", "r", "t", "a", "v", "s"}
    assert seen[ChangeKind.OPEN]["s"] == "open"
    assert set(seen[ChangeKind.PARTIAL_FILL]) == {"o", "d", "r", "t", "a", "v", "s"}
    assert set(seen[ChangeKind.CANCEL]) == {"o", "d", "r", "t", "s", "z"}  # no a, no v
    assert seen[ChangeKind.CANCEL]["s"] == "cancelled"
    assert seen[ChangeKind.COMPLETE_FILL]["s"] == "completed"
    assert Decimal(seen[ChangeKind.COMPLETE_FILL]["a"]) == 0
    assert all(entry["t"] in (0, 1) for entry in seen.values())


def test_replaying_the_diffs_on_an_order_level_book_gives_the_later_book() -> None:
    market = Market("xrp_mxn", seed=5)
    run(market, 100)
    anchor = market.order_book(aggregate=False)
    later = run(market, 500)
    rebuilt = apply_diffs(full_book(anchor), later)
    assert rebuilt == full_book(market.order_book(aggregate=False))
    assert int(market.order_book()["sequence"]) == int(anchor["sequence"]) + 500


def test_the_book_at_any_sequence_is_the_diffs_up_to_it() -> None:
    market = Market("btc_mxn", seed=6)
    start = market.order_book(aggregate=False)
    messages = run(market, 300)
    diffs = [m for m in messages if m["type"] == "diff-orders"]
    for cut in (0, 1, 150, 299, 300):
        sequence = int(start["sequence"]) + cut
        past = market.order_book(aggregate=False, sequence=sequence)
        assert past["sequence"] == str(sequence)
        assert full_book(past) == apply_diffs(full_book(start), diffs[:cut])
    with pytest.raises(ValueError, match="outside"):
        market.order_book(sequence=int(start["sequence"]) - 1)


def test_the_aggregated_book_sums_the_orders_by_price_exactly() -> None:
    market = Market("btc_mxn", seed=7)
    run(market, 200)
    orders = market.order_book(aggregate=False)
    levels = market.order_book(aggregate=True)
    assert orders["sequence"] == levels["sequence"]
    for side, best_first in (("bids", True), ("asks", False)):
        sums: dict[Decimal, Decimal] = defaultdict(Decimal)
        for order in orders[side]:
            sums[Decimal(order["price"])] += Decimal(order["amount"])
        expected = sorted(sums.items(), reverse=best_first)[:AGGREGATED_LEVELS]
        got = [(Decimal(level["price"]), Decimal(level["amount"])) for level in levels[side]]
        assert got == expected
        assert len(got) == AGGREGATED_LEVELS  # a deep book fills the 50 levels
        assert all(set(level) == {"book", "price", "amount"} for level in levels[side])
    assert Decimal(levels["bids"][0]["price"]) < Decimal(levels["asks"][0]["price"])


@pytest.mark.parametrize("book", sorted(BOOKS))
def test_prices_and_amounts_are_exact_decimal_strings(book: str) -> None:
    market = Market(book, seed=1)
    messages = run(market, 200)
    texts = []
    for message in messages:
        for entry in message["payload"]:
            texts += [entry[k] for k in ("r", "a", "v") if k in entry]
    payload = market.order_book(aggregate=False)
    texts += [o[k] for o in payload["bids"] + payload["asks"] for k in ("price", "amount")]
    texts += [t[k] for t in market.trades(limit=100) for k in ("price", "amount")]
    assert texts and all(isinstance(t, str) and DECIMAL_PATTERN.fullmatch(t) for t in texts)
    _, price_places, amount_places = BOOKS[book]
    assert all(len(o["price"].split(".")[1]) == price_places for o in payload["bids"])
    assert all(len(o["amount"].partition(".")[2]) == amount_places for o in payload["asks"])


def test_every_fill_is_a_trade_on_the_order_the_diff_names() -> None:
    market = Market("eth_mxn", seed=8)
    amounts = {o.oid: o.amount for o in market.orders()}
    tids = []
    for index in range(800):
        change = market.step(START_MS + index)
        diff = change.diff_message()["payload"][0]
        trades = change.trades_message()
        if change.kind is ChangeKind.OPEN:
            amounts[diff["o"]] = Decimal(diff["a"])
        if change.kind in (ChangeKind.PARTIAL_FILL, ChangeKind.COMPLETE_FILL):
            assert trades is not None
            trade = trades["payload"][0]
            assert trade["mo"] == diff["o"] and trade["r"] == diff["r"]
            assert amounts[diff["o"]] - Decimal(trade["a"]) == Decimal(diff["a"])
            assert trade["t"] == 1 - diff["t"]  # the taker is on the other side
            assert trade["x"] == change.at_ms
            amounts[diff["o"]] = Decimal(diff["a"])
            tids.append(trade["i"])
        else:
            assert trades is None
    assert tids == sorted(tids) and len(set(tids)) == len(tids) > 50


def test_trades_pages_walk_every_trade_once_with_the_marker() -> None:
    market = Market("btc_mxn", seed=9)
    run(market, 1500)
    every = [trade.tid for trade in market.trade_log]
    assert len(every) > 250
    seen: list[int] = []
    marker = None
    while True:
        page = market.trades(sort="desc", limit=100, marker=marker)
        seen += [trade["tid"] for trade in page]
        if len(page) < 100:
            break
        marker = page[-1]["tid"]
    assert seen == every[::-1]
    ascending = market.trades(sort="asc", limit=5, marker=every[9])
    assert [t["tid"] for t in ascending] == every[10:15]
    newest = market.trades()[0]
    assert set(newest) == {"book", "created_at", "amount", "maker_side", "price", "tid"}
    assert newest["created_at"].endswith("+00:00") and newest["maker_side"] in ("buy", "sell")
    for bad, message in [({"limit": 101}, "limit"), ({"sort": "up"}, "sort")]:
        with pytest.raises(ValueError, match=message):
            market.trades(**bad)  # type: ignore[arg-type]


def test_an_exchange_gives_each_book_its_own_market() -> None:
    exchange = Exchange(["btc_mxn", "eth_mxn"], seed=1, start_ms=START_MS)
    assert exchange.knows("btc_mxn") and not exchange.knows("nope_mxn")
    change = exchange.step("eth_mxn", START_MS + 5)
    assert change.book == "eth_mxn"
    assert exchange.order_book("eth_mxn")["sequence"] == str(change.sequence)
    before = exchange.order_book("btc_mxn", aggregate=False)
    assert exchange.order_book("btc_mxn", aggregate=False) == before  # nothing moved there
    with pytest.raises(ValueError, match="unknown book"):
        Market("nope_mxn")
