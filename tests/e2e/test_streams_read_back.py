"""The reader against what the real collector wrote: the functions-framework server as a process,
the fake Bitso REST server and fake socket both driven by the shared order-level market
(bitso_testkit.market), one call with a dropped diff and a cut socket, cut at its end. The
market's own book at each sequence is the truth the rebuilt book is compared with."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bitso_archive.gaps import gaps_report
from bitso_archive.orderbook import UnknownInstantError, UnknownSpan
from bitso_archive.replay import book_at, book_walker
from bitso_archive.sources import open_source
from bitso_archive.trades import iter_trades
from bitso_format import iso_millis, parse_iso_millis, seconds_to_ms
from tests.conftest import StartFunction
from tests.e2e.faulty_minute import (
    BOOKS,
    FakeMarket,
    Levels,
    fake_market,
    market_levels,
    record_faulty_minute,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def market() -> Iterator[FakeMarket]:
    with fake_market(seed=5) as market:
        yield market


def rebuilt(view: Any) -> tuple[Levels, Levels]:
    return (
        [(lv.price, lv.amount, lv.orders) for lv in view.bids],
        [(lv.price, lv.amount, lv.orders) for lv in view.asks],
    )


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_reading_back_what_the_collector_recorded_of_the_fake_market(
    start_function: StartFunction,
    market: FakeMarket,
    tmp_path: Path,
) -> None:
    server, minute, reply = record_faulty_minute(start_function, market)
    exchange, socket = market.exchange, market.socket
    record = reply.json()
    minute_ms = seconds_to_ms(minute)
    [(_book, dropped)] = socket.stats.dropped
    (disconnect,) = record["streams"]["disconnects"]
    cut_at = parse_iso_millis(disconnect["at"])
    source = open_source(server.data_dir)

    # The book at every 20 ms of the minute: the market's own book at the sequence the reader
    # says, or a refusal that names why.
    reasons: dict[str, set[str]] = {}
    checked = re_anchored = 0
    for book in BOOKS:
        walker, _stream = book_walker(source, book, minute_ms, minute_ms + 60_000)
        reasons[book] = set()
        anchors: set[str] = set()
        for at_ms in range(minute_ms, minute_ms + 60_000, 20):
            found = walker.at(at_ms, depth=None)
            if isinstance(found, UnknownSpan):
                reasons[book].add(found.reason)
                continue
            assert rebuilt(found) == market_levels(exchange, book, found.sequence), iso_millis(
                at_ms
            )
            checked += 1
            re_anchored += found.anchor not in anchors and bool(anchors)
            anchors.add(found.anchor)
    assert checked > 1000 and re_anchored >= 2  # re-anchored after the gap, after the cut
    # Before the first subscription, and after the call's cut: no cut covers them.
    assert {"not_recorded", "before_first_anchor", "outage"} <= reasons["btc_mxn"]
    assert reasons["btc_mxn"] <= {"not_recorded", "before_first_anchor", "outage", "sequence_gap"}
    assert {"not_recorded", "before_first_anchor", "outage"} <= reasons["eth_mxn"]

    # The instant the last diff before the dropped one arrived, and the disconnect, are refused.
    dropped_before = _received(server.data_dir, "btc_mxn", dropped - 1)
    with pytest.raises(UnknownInstantError) as gap:
        book_at(source, "btc_mxn", dropped_before)
    assert gap.value.reason == "sequence_gap"
    assert f"sequence gap after {dropped - 1}" in str(gap.value)
    assert f"next {dropped + 1}" in str(gap.value)
    with pytest.raises(UnknownInstantError) as outage:
        book_at(source, "btc_mxn", cut_at)
    assert outage.value.reason == "outage"

    # Every trade made while the call recorded, once, in trade id order, as the market made it.
    start_ms = minute_ms - 1000
    end_ms = parse_iso_millis(record["streams"]["cut_at"]) - 500
    (trades,) = list(iter_trades(source, start_ms, end_ms))
    made = sorted(
        (
            trade
            for market in exchange.markets.values()
            for trade in market.trade_log
            if start_ms <= trade.created_ms < end_ms
        ),
        key=lambda t: t.tid,
    )
    assert len(made) > 100
    assert [t.tid for t in trades] == [t.tid for t in made]
    for got, truth in zip(trades, made, strict=True):
        assert (Decimal(got.price), Decimal(got.amount), got.created_ms) == (
            truth.price,
            truth.amount,
            truth.created_ms,
        )
        assert got.taker_side == ("sell" if truth.maker_side == "buy" else "buy")
    assert {t.source for t in trades} == {"stream", "rest"}  # the cut's trades were backfilled

    # gaps: the sequence gap, the uncovered time and the reconnect as recorded; no drift.
    report = gaps_report(source, minute_ms, minute_ms + 60_000, now=minute_ms + 60_000).as_dict()
    for book in BOOKS:
        (streamed,) = report["streams"][book]["minutes"]
        recorded_channel = record["streams"]["books"][book]["diff-orders"]
        assert streamed["uncovered_ms"] == recorded_channel["uncovered_ms"] > 0
        assert streamed["reconnects"] == recorded_channel["reconnects"] == 1
        assert streamed["drift"]["mismatched"] == 0 and streamed["drift"]["checked"] > 3
        backfills = {
            u["slot"]
            for u in record["slot_uses"]
            if u["book"] == book and u["use"] == "trades_backfill"
        }
        (snapshots,) = report["books"][book]["minutes"]
        assert backfills and not backfills & set(snapshots["missing"])
    btc_gaps = report["streams"]["btc_mxn"]["minutes"][0]["sequence_gaps"]
    assert {"after": dropped - 1, "next": dropped + 1} in [
        {"after": g["after"], "next": g["next"]} for g in btc_gaps
    ]

    # A planted difference in one checked snapshot is drift, named.
    planted_dir = tmp_path / "planted"
    shutil.copytree(server.data_dir, planted_dir)
    checked_snapshots = [
        c
        for c in gaps_report(planted_dir, minute_ms, minute_ms + 60_000, now=minute_ms + 60_000)
        .streams["eth_mxn"]
        .minutes[0]
        .drift
        if c.status == "match"
    ]
    target = planted_dir / checked_snapshots[0].snapshot
    snapshot = json.loads(target.read_text())
    snapshot["asks"][0]["amount"] = str(Decimal(snapshot["asks"][0]["amount"]) + Decimal("1"))
    target.write_text(json.dumps(snapshot))
    planted = gaps_report(
        planted_dir, minute_ms, minute_ms + 60_000, now=minute_ms + 60_000
    ).as_dict()
    (eth,) = planted["streams"]["eth_mxn"]["minutes"]
    assert eth["drift"]["mismatched"] == 1
    assert eth["drift"]["mismatches"][0]["snapshot"] == checked_snapshots[0].snapshot
    assert eth["drift"]["mismatches"][0]["detail"].startswith("ask level 0: rebuilt")


def _received(data_dir: Path, book: str, sequence: int) -> int:
    """When the collector received the diff of ``sequence`` (from its stored line)."""
    for path in (data_dir / "diff-orders").rglob(f"{book}_*.ndjson.gz"):
        for raw in gzip.decompress(path.read_bytes()).splitlines():
            line = json.loads(raw)
            if line["message"]["sequence"] == sequence:
                return parse_iso_millis(line["received_at"])
    raise AssertionError(f"no diff {sequence} of {book} stored")
