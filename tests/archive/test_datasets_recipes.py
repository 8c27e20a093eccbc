"""The recipes of docs/datasets.md, as written there for BigQuery, transpiled to DuckDB (sqlglot)
and run over exported files; each answer is compared with what ``book --at`` (book_at),
``replay`` and ``trades`` (iter_trades) say of the same archive."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from bitso_archive.cli import main
from bitso_archive.orderbook import UnknownInstantError, UnknownSpan
from bitso_archive.replay import book_at, book_walker, replay
from bitso_archive.sources import open_source
from bitso_archive.trades import iter_trades
from bitso_format import MINUTE_MS, iso_millis, ms_to_datetime
from tests.archive import datasets_duckdb as db
from tests.archive.stream_market import BOOK, T0, T_END, World, build_world

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
TABLES = db.TABLES
DAY = date(2026, 11, 20)
#: The whole hours of the scenario (10:54 to 11:13), exported.
EXPORTED = ("2026-11-20T10:00", "2026-11-20T12:00")


def recipes() -> dict[str, str]:
    found = dict(
        re.findall(r"<!-- recipe: (\w+) -->\n```sql\n(.*?)```", DOCS.read_text(), re.DOTALL)
    )
    assert set(found) == {"book_at", "ohlcv", "spread_and_mid", "trades_with_quote"}
    return found


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(seed=21)


@pytest.fixture(scope="module")
def con(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    out = tmp_path_factory.mktemp("tables")
    span = ["--start", EXPORTED[0], "--end", EXPORTED[1]]
    assert main(["export", str(archive_dir), *span, "--out", str(out), "-q"]) == 0
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("CREATE SCHEMA bitso_books")  # the BigQuery dataset's name
    for table in TABLES:
        connection.execute(
            f"CREATE VIEW bitso_books.{table} AS SELECT * FROM read_parquet("
            f"'{out}/{table}/*/*/*/*/*/*.parquet', hive_partitioning = true)"
        )
    return connection


def run_recipe(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> list[dict[str, Any]]:
    (sql,) = sqlglot.transpile(recipes()[name], read="bigquery", write="duckdb")
    used = {key: value for key, value in params.items() if f"${key}" in sql}
    assert set(used) == set(re.findall(r"\$(\w+)", sql)), sql
    return con.sql(sql, params=used).to_arrow_table().to_pylist()  # type: ignore[no-any-return]


def at(ms: int) -> datetime:
    return ms_to_datetime(ms)


def ms_of(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def spans(world: World, known: bool) -> list[tuple[int, int]]:
    """The generator's spans of the scenario, known or not."""
    return [(a, b) for a, b, reason in world.spans(T0, T_END) if (reason == "known") == known]


def test_the_book_at_an_instant_is_book_at(world: World, archive_dir: Path, con: Any) -> None:
    known_spans = spans(world, known=True)
    instants = [start + offset for start, _end in known_spans for offset in (0, 1, 777)]
    instants += [start for start, _end in spans(world, known=False)]
    known = 0
    for at_ms in instants:
        got = run_recipe(con, "book_at", book=BOOK, at=at(at_ms))
        try:
            view = book_at(archive_dir, BOOK, at_ms, depth=None)
        except UnknownInstantError:
            assert got == [], iso_millis(at_ms)
            continue
        expected = [
            {"side": side, "price": lv.price, "amount": lv.amount, "orders": lv.orders}
            for side, levels in (("bid", view.bids), ("ask", view.asks))
            for lv in levels
        ]
        assert got == expected, iso_millis(at_ms)
        known += 1
    assert known == 3 * len(known_spans) >= 15


def test_one_minute_bars_and_vwap_are_the_trades(archive_dir: Path, con: Any) -> None:
    got = run_recipe(con, "ohlcv", book=BOOK, day=DAY)
    minutes: dict[int, list[Any]] = defaultdict(list)
    for chunk in iter_trades(archive_dir, *EXPORTED, [BOOK]):
        for trade in chunk:
            minutes[trade.created_ms - trade.created_ms % MINUTE_MS].append(trade)
    assert [ms_of(row["minute"]) for row in got] == sorted(minutes)
    for row in got:
        trades = sorted(minutes[ms_of(row["minute"])], key=lambda t: t.tid)
        prices = [Decimal(t.price) for t in trades]
        volume = sum((Decimal(t.amount) for t in trades), Decimal(0))
        notional = sum((Decimal(t.price) * Decimal(t.amount) for t in trades), Decimal(0))
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            prices[0],
            max(prices),
            min(prices),
            prices[-1],
        )
        assert (row["volume"], row["trades"]) == (volume, len(trades))
        # BigQuery divides NUMERICs exactly (9 decimals); DuckDB in floating point.
        assert abs(Decimal(str(row["vwap"])) - notional / volume) < Decimal("1e-9") * prices[0]
    assert len(got) >= 19 and sum(r["trades"] for r in got) > 2000


def test_spread_and_mid_over_time_are_replays_best_levels(archive_dir: Path, con: Any) -> None:
    start, end = T0, T0 + 5 * MINUTE_MS
    got = run_recipe(con, "spread_and_mid", book=BOOK, day=DAY, start=at(start), end=at(end))
    # The table's known spans: a quote is in force until the next or the end of its own span.
    known = [
        (r["s"], r["e"])
        for r in db.rows(
            con,
            'SELECT epoch_ms(start) AS s, epoch_ms("end") AS e FROM bitso_books.coverage '
            "WHERE known ORDER BY start",
        )
    ]
    assert len(got) > 20
    every = {i.at_ms: i.view for i in replay(archive_dir, BOOK, start, end, 1000, depth=1)}
    checked = 0
    for row, following in zip(got, [*got[1:], None], strict=True):
        since, until = ms_of(row["since"]), ms_of(row["until"])
        view = book_at(archive_dir, BOOK, since, depth=1)
        bid, ask = view.bids[0].price, view.asks[0].price
        assert (row["mid"], row["spread"]) == ((bid + ask) / 2, ask - bid), iso_millis(since)
        ((_span_start, span_end),) = [(a, b) for a, b in known if a <= since < b]
        next_since = ms_of(following["since"]) if following else span_end
        assert until == min(span_end, next_since)
        # Replay agrees in between (up to the range's end: the last quote may run past it).
        for second in range(since + (-since) % 1000, min(until, end), 1000):
            replayed = every[second]
            assert replayed is not None
            assert (replayed.bids[0].price, replayed.asks[0].price) == (bid, ask)
            checked += 1
    assert checked > 100


def test_each_trade_gets_the_quote_in_force(archive_dir: Path, con: Any) -> None:
    start, end = T0, T0 + 5 * MINUTE_MS
    got = run_recipe(con, "trades_with_quote", book=BOOK, day=DAY, start=at(start), end=at(end))
    trades = {t.tid: t for chunk in iter_trades(archive_dir, *EXPORTED, [BOOK]) for t in chunk}
    expected_tids = sorted(tid for tid, t in trades.items() if start <= t.received_ms < end)
    assert [row["tid"] for row in got] == expected_tids
    # The book when each trade was received, by the walker of book --at, in one pass.
    walker, _stream = book_walker(open_source(archive_dir), BOOK, start, end)
    quoted = 0
    for row in sorted(got, key=lambda r: trades[r["tid"]].received_ms):
        trade = trades[row["tid"]]
        found = walker.at(trade.received_ms, depth=1)
        view = None if isinstance(found, UnknownSpan) else found
        if view is None or trade.source != "stream":
            assert (row["bid_price"], row["ask_price"]) == (None, None), row["tid"]
            continue
        assert (row["bid_price"], row["ask_price"]) == (view.bids[0].price, view.asks[0].price)
        assert ms_of(row["quoted_at"]) <= trade.received_ms
        quoted += 1
    assert 0.6 * len(got) < quoted < len(got)  # some fall in unknown spans, or were backfilled


def test_each_recipe_is_valid_bigquery_and_filters_partitions() -> None:
    for name, sql in recipes().items():
        parsed = sqlglot.parse_one(sql, read="bigquery")
        assert parsed is not None, name
        tables = {t.name for t in parsed.find_all(sqlglot.exp.Table) if t.db == "bitso_books"}
        assert tables, name
        # Every table read is filtered on its book and day partitions (required in BigQuery).
        assert sql.count("book = @book") >= len(tables), name
        assert "EXTRACT(DAY FROM" in sql, name
