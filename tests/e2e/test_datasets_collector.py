"""The research tables of an archive the real collector wrote: the functions-framework server as a
process, the fake Bitso REST server and socket driven by one order-level market
(bitso_testkit.market), one call with a dropped diff and a cut socket (each re-anchors the
book), cut at its end while the instance keeps the stream. Every table is exported
with the real command line and read back with DuckDB alone (tests/archive/datasets_duckdb); the
market's own book and trades are the truth, and ``book --at``, ``replay`` and ``load --top`` must
agree with the tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest

from bitso_archive.orderbook import UnknownInstantError
from bitso_archive.replay import book_at, replay
from bitso_format import iso_millis, parse_iso_millis, seconds_to_ms
from bitso_testkit.market import Exchange
from tests.archive import datasets_duckdb as db
from tests.archive.helpers import cli_exit_code
from tests.conftest import StartFunction
from tests.e2e.faulty_minute import (
    BOOKS,
    FakeMarket,
    fake_market,
    market_levels,
    record_faulty_minute,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def market() -> Iterator[FakeMarket]:
    with fake_market(seed=9) as market:
        yield market


@dataclass
class Recorded:
    """One recorded minute, its tables, and what happened to the socket."""

    exchange: Exchange
    data: Path
    tables: Path
    minute_ms: int
    dropped: tuple[str, int]  # (book, sequence) never sent
    cut_ms: int  # when the socket was cut
    call_cut_ms: int  # when the call cut the stream: nothing after it is recorded yet
    con: duckdb.DuckDBPyConnection


def record(
    start_function: StartFunction,
    market: FakeMarket,
    tmp_path: Path,
) -> Recorded:
    server, minute, reply = record_faulty_minute(start_function, market)
    (disconnect,) = reply.json()["streams"]["disconnects"]
    (dropped,) = market.socket.stats.dropped
    minute_ms = seconds_to_ms(minute)
    tables = tmp_path / "tables"
    span = ["--start", iso_millis(minute_ms), "--end", iso_millis(minute_ms + 60_000)]
    assert cli_exit_code("export", str(server.data_dir), *span, "--out", str(tables), "-q") == 0
    return Recorded(
        market.exchange,
        server.data_dir,
        tables,
        minute_ms,
        dropped,
        parse_iso_millis(disconnect["at"]),
        parse_iso_millis(reply.json()["streams"]["cut_at"]),
        db.connect(tables),
    )


@pytest.mark.timeout(240)
def test_every_table_of_what_the_collector_recorded_is_the_markets_truth(
    start_function: StartFunction,
    market: FakeMarket,
    tmp_path: Path,
) -> None:
    recorded = record(start_function, market, tmp_path)
    for book in BOOKS:
        check_book_changes(recorded, book)
        check_book_snapshots(recorded, book)
        check_quotes(recorded, book)
    check_trades(recorded)
    check_coverage(recorded)
    check_load_top(recorded, tmp_path)


def check_book_changes(recorded: Recorded, book: str) -> None:
    """Replayed to an instant in DuckDB: the market's book, and what ``book --at`` says."""
    known = unknown = 0
    for at_ms in range(recorded.minute_ms, recorded.minute_ms + 60_000, 200):
        from_table = db.book_at(recorded.con, book, at_ms)
        try:
            view = book_at(recorded.data, book, at_ms, depth=None)
        except UnknownInstantError:
            assert from_table is None, f"{book} {iso_millis(at_ms)}"
            unknown += 1
            continue
        assert from_table is not None, f"{book} {iso_millis(at_ms)}"
        sequence, bids, asks = from_table
        assert sequence == view.sequence
        assert (bids, asks) == market_levels(recorded.exchange, book, sequence), iso_millis(at_ms)
        assert (bids, asks) == (
            [(lv.price, lv.amount, lv.orders) for lv in view.bids],
            [(lv.price, lv.amount, lv.orders) for lv in view.asks],
        )
        known += 1
    assert known > 80 and unknown > 10, (book, known, unknown)


def check_book_snapshots(recorded: Recorded, book: str) -> None:
    """book_snapshots is ``replay`` every 1 s at depth 25."""
    got = db.rows(
        recorded.con,
        "SELECT epoch_ms(timestamp) AS at_ms, sequence, side, level, price, amount, orders "
        "FROM book_snapshots WHERE book = $book ORDER BY at_ms, side DESC, level",
        book=book,
    )
    expected = [
        (instant.at_ms, instant.view.sequence, side, number, lv.price, lv.amount, lv.orders)
        for instant in replay(
            recorded.data, book, recorded.minute_ms, recorded.minute_ms + 60_000, 1000, depth=25
        )
        if instant.view is not None
        for side, levels in (("bid", instant.view.bids), ("ask", instant.view.asks))
        for number, lv in enumerate(levels)
    ]
    assert len(expected) > 10 * 50
    assert [tuple(r.values()) for r in got] == expected


def check_quotes(recorded: Recorded, book: str) -> None:
    """The quote in force at each instant holds the market's best levels then."""
    checked = 0
    for at_ms in range(recorded.minute_ms, recorded.minute_ms + 60_000, 137):
        from_table = db.book_at(recorded.con, book, at_ms)
        quote = db.quote_at(recorded.con, book, at_ms)
        if from_table is None:
            assert quote is None
            continue
        assert quote is not None
        bids, asks = market_levels(recorded.exchange, book, from_table[0])
        assert (quote["bid_price"], quote["bid_amount"], quote["bid_orders"]) == bids[0]
        assert (quote["ask_price"], quote["ask_amount"], quote["ask_orders"]) == asks[0]
        checked += 1
    assert checked > 60


def check_trades(recorded: Recorded) -> None:
    """Every trade the market made while the call recorded, once, as the market made it."""
    last_change = db.rows(
        recorded.con,
        "SELECT max(epoch_ms(local_timestamp)) AS last FROM book_changes WHERE book = 'btc_mxn'",
    )[0]["last"]
    start_ms, end_ms = recorded.minute_ms, last_change - 500  # the export starts at the minute
    got = db.rows(
        recorded.con,
        "SELECT book, tid, epoch_ms(timestamp) AS made, price, amount, taker_side, source "
        "FROM trades WHERE epoch_ms(timestamp) >= $start AND epoch_ms(timestamp) < $end "
        "ORDER BY tid",
        start=start_ms,
        end=end_ms,
    )
    made = sorted(
        (
            (book, trade)
            for book, market in recorded.exchange.markets.items()
            for trade in market.trade_log
            if start_ms <= trade.created_ms < end_ms
        ),
        key=lambda pair: pair[1].tid,
    )
    assert len(made) > 100
    assert [(r["book"], r["tid"]) for r in got] == [(book, t.tid) for book, t in made]
    for row, (_book, truth) in zip(got, made, strict=True):
        taker = "sell" if truth.maker_side == "buy" else "buy"
        assert (row["made"], row["price"], row["amount"], row["taker_side"]) == (
            truth.created_ms,
            truth.price,
            truth.amount,
            taker,
        )
    assert {r["source"] for r in got} == {"stream", "rest"}  # the cut's trades were backfilled


def check_coverage(recorded: Recorded) -> None:
    """The dropped diff and the cut lie inside unknown spans, and no snapshot row is there."""
    book, dropped = recorded.dropped
    assert db.rows(
        recorded.con,
        "SELECT count(*) AS n FROM book_changes WHERE book = $book AND sequence = $seq",
        book=book,
        seq=dropped,
    ) == [{"n": 0}]
    before = db.rows(
        recorded.con,
        "SELECT epoch_ms(local_timestamp) AS at_ms FROM book_changes "
        "WHERE book = $book AND sequence = $seq",
        book=book,
        seq=dropped - 1,
    )
    assert before, "the diff before the dropped one is in book_changes"
    spans = {b: db.coverage(recorded.con, b) for b in BOOKS}
    hole = db.span_at(spans[book], before[0]["at_ms"])
    assert hole is not None and (hole.known, hole.reason) == (False, "sequence_gap")
    for each in BOOKS:
        cut = db.span_at(spans[each], recorded.cut_ms)
        assert cut is not None and (cut.known, cut.reason) == (False, "outage"), each
        assert spans[each][0].start_ms == recorded.minute_ms
        last = spans[each][-1]
        assert (last.start_ms, last.end_ms, last.reason) == (
            recorded.call_cut_ms,
            recorded.minute_ms + 60_000,
            "not_recorded",
        )
    inside = db.rows(
        recorded.con,
        "SELECT count(*) AS n FROM book_snapshots s JOIN coverage c ON s.book = c.book "
        'WHERE NOT c.known AND s.timestamp >= c.start AND s.timestamp < c."end"',
    )
    assert inside == [{"n": 0}]


def check_load_top(recorded: Recorded, tmp_path: Path) -> None:
    """``load --top`` on an archive with anchors: each anchor's best levels are the level
    totals (with more than one order at some), never one order's amount."""
    out = tmp_path / "top.parquet"
    span = [
        "--start",
        iso_millis(recorded.minute_ms),
        "--end",
        iso_millis(recorded.minute_ms + 60_000),
    ]
    assert cli_exit_code("load", str(recorded.data), *span, "--top", "--out", str(out), "-q") == 0
    top = pl.read_parquet(out)
    anchors = [
        json.loads(path.read_text())
        for path in recorded.data.rglob("*.json")
        if '"aggregate":false' in path.read_text().replace(" ", "")
    ]
    assert len(anchors) >= 4  # two books, each anchored and re-anchored after the cut
    several = 0
    for anchor in anchors:
        (row,) = top.filter(
            (pl.col("book") == anchor["book"])
            & (pl.col("sequence") == anchor["sequence"])
            & (pl.col("received_at").dt.epoch("ms") == parse_iso_millis(anchor["received_at"]))
        ).rows(named=True)
        bids, asks = market_levels(recorded.exchange, anchor["book"], anchor["sequence"])
        assert (row["best_bid"], row["best_bid_amount"]) == bids[0][:2]
        assert (row["best_ask"], row["best_ask_amount"]) == asks[0][:2]
        several += bids[0][2] > 1 or asks[0][2] > 1
    assert several  # a best level of many orders, reported whole
