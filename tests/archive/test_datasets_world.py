"""The research tables against an independent order-level market (tests/archive/stream_market):
five minutes with a dropped diff, outages and a minute nobody recorded, exported once and read
back with DuckDB alone (tests/archive/datasets_duckdb), never through bitso_archive's readers.
The market's own book is the truth; ``book --at``, ``replay`` and ``trades`` must agree too.
"""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bitso_archive.cli import main
from bitso_archive.compact import compact_hour
from bitso_archive.orderbook import UnknownInstantError
from bitso_archive.replay import book_at, replay
from tests.archive import datasets_duckdb as db
from tests.archive.helpers import Archive, iso, snapshot
from tests.archive.stream_market import BOOK, T0, MinutePlan, World, build_world

PLANS = [
    MinutePlan(),
    MinutePlan(drops=(20_000,)),
    MinutePlan(outages=((30_000, 31_500),)),
    MinutePlan(recorded=False),
    MinutePlan(outages=((40_000, 40_002),)),
]
HOUR = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T11:00"]


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(PLANS)


@pytest.fixture(scope="module")
def archive_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world.archive.write_local(tmp_path_factory.mktemp("archive"))


def run(*args: str) -> int:
    try:
        return main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def tables(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    assert run("export", str(archive_dir), *HOUR, "--out", str(out), "-q") == 0
    return out


@pytest.fixture
def con(tables: Path) -> duckdb.DuckDBPyConnection:
    return db.connect(tables)


def truth(world: World, sequence: int) -> tuple[list[db.Level], list[db.Level]]:
    """The market's book after ``sequence``, as exact (price, amount, orders) rows."""
    bids, asks = world.levels_at([sequence])[sequence]

    def side(levels: Any) -> list[db.Level]:
        return [(Decimal(p), Decimal(a), n) for p, a, n in levels]

    return side(bids), side(asks)


def every(start_ms: int, end_ms: int, step_ms: int) -> range:
    return range(start_ms, end_ms, step_ms)


def test_book_changes_replayed_in_duckdb_is_the_markets_book_and_book_at(
    world: World, archive_dir: Path, con: duckdb.DuckDBPyConnection
) -> None:
    rng = random.Random(3)
    instants = sorted(rng.randrange(T0, T0 + 5 * 60_000) for _ in range(150))
    instants += [span.start_ms for span in world.known_spans()]  # each opening block alone
    known = unknown = 0
    for at_ms in instants:
        from_table = db.book_at(con, BOOK, at_ms)
        try:
            view = book_at(archive_dir, BOOK, at_ms, depth=None)
        except UnknownInstantError:
            assert from_table is None, iso(at_ms)
            unknown += 1
            continue
        assert from_table is not None, iso(at_ms)
        sequence, bids, asks = from_table
        assert sequence == view.sequence, iso(at_ms)
        assert (bids, asks) == truth(world, sequence), iso(at_ms)
        assert bids == [(lv.price, lv.amount, lv.orders) for lv in view.bids]
        known += 1
    assert known > 100 and unknown > 10


def test_coverage_is_the_generators_spans_and_names_each_hole(
    world: World, con: duckdb.DuckDBPyConnection
) -> None:
    spans = db.coverage(con, BOOK)
    assert spans[0].start_ms == T0 and spans[-1].end_ms == T0 + 3_600_000
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(spans))
    known = [(s.start_ms, s.end_ms) for s in spans if s.known]
    assert known == [(s.start_ms, s.end_ms) for s in world.known_spans()]
    holes = {s.reason for s in spans if not s.known}
    assert {"sequence_gap", "outage", "not_recorded", "before_first_anchor"} <= holes
    # The dropped diff and the outages fall inside unknown spans.
    facts = world.minutes[T0 + 60_000]
    ((after, _next),) = facts.gaps
    after_ms = dict(facts.stored)[after]
    hole = db.span_at(spans, after_ms)
    assert hole is not None and (hole.known, hole.reason) == (False, "sequence_gap")
    for minute in (T0 + 120_000, T0 + 240_000):
        ((cut_ms, _back),) = world.minutes[minute].outages
        hole = db.span_at(spans, cut_ms)
        assert hole is not None and (hole.known, hole.reason) == (False, "outage")


def test_book_snapshots_are_replay_and_nothing_inside_unknown_spans(
    archive_dir: Path, con: duckdb.DuckDBPyConnection
) -> None:
    got = db.rows(
        con,
        "SELECT epoch_ms(timestamp) AS at_ms, sequence, side, level, price, amount, orders "
        "FROM book_snapshots WHERE book = $book ORDER BY at_ms, side DESC, level",
        book=BOOK,
    )
    expected = []
    for instant in replay(archive_dir, BOOK, T0, T0 + 3_600_000, 1000, depth=25):
        if instant.view is None:
            continue
        for side, levels in (("bid", instant.view.bids), ("ask", instant.view.asks)):
            expected += [
                {
                    "at_ms": instant.at_ms,
                    "sequence": instant.view.sequence,
                    "side": side,
                    "level": number,
                    "price": level.price,
                    "amount": level.amount,
                    "orders": level.orders,
                }
                for number, level in enumerate(levels)
            ]
    assert len(got) > 4 * 45 * 50
    assert got == expected
    inside = db.rows(
        con,
        "SELECT count(*) AS n FROM book_snapshots s, coverage c WHERE NOT c.known "
        'AND s.timestamp >= c.start AND s.timestamp < c."end"',
    )
    assert inside == [{"n": 0}]


def test_quotes_hold_the_markets_best_levels(world: World, con: duckdb.DuckDBPyConnection) -> None:
    checked = 0
    for span in world.known_spans():
        for at_ms in every(span.start_ms, span.end_ms, 97):
            quote = db.quote_at(con, BOOK, at_ms)
            assert quote is not None, iso(at_ms)
            bids, asks = truth(world, world.received_sequence(at_ms, span))
            assert (quote["bid_price"], quote["bid_amount"], quote["bid_orders"]) == bids[0]
            assert (quote["ask_price"], quote["ask_amount"], quote["ask_orders"]) == asks[0]
            checked += 1
    assert checked > 1000
    # One row per change of the best bid or ask, never two alike in a row within a span.
    changes = db.rows(
        con,
        "SELECT bid_price, bid_amount, ask_price, ask_amount, lag(bid_price) OVER w AS pb, "
        "lag(bid_amount) OVER w AS ab, lag(ask_price) OVER w AS pa, lag(ask_amount) OVER w AS aa "
        "FROM quotes q, coverage c WHERE c.known AND q.local_timestamp >= c.start "
        'AND q.local_timestamp < c."end" '
        "WINDOW w AS (PARTITION BY c.start ORDER BY q.local_timestamp, q.sequence)",
    )
    repeated = [
        r
        for r in changes
        if (r["bid_price"], r["bid_amount"], r["ask_price"], r["ask_amount"])
        == (r["pb"], r["ab"], r["pa"], r["aa"])
    ]
    assert len(changes) > 20 and repeated == []


def test_trades_are_the_markets_trades_once(world: World, con: duckdb.DuckDBPyConnection) -> None:
    got = db.rows(
        con,
        "SELECT tid, epoch_ms(timestamp) AS made, price, amount, taker_side, maker_order, source "
        "FROM trades WHERE book = $book ORDER BY tid",
        book=BOOK,
    )
    stored = sorted(t for t in world.stored_tids if T0 <= world.trades[t]["x"] < T0 + 3_600_000)
    assert [r["tid"] for r in got] == stored
    for row in got:
        trade = world.trades[row["tid"]]
        side = "buy" if trade["t"] == 0 else "sell"
        assert (row["made"], row["price"], row["amount"], row["taker_side"]) == (
            trade["x"],
            Decimal(trade["r"]),
            Decimal(trade["a"]),
            side,
        )
        assert row["maker_order"] == (trade["mo"] if row["source"] == "stream" else None)
    assert {r["source"] for r in got} == {"stream", "rest"}


def test_compact_writes_the_same_files_as_export(
    world: World, tables: Path, tmp_path: Path
) -> None:
    root = world.archive.write_local(tmp_path / "archive")
    compact_hour(root, T0, now=T0 + 3_600_000)
    exported = sorted(p.relative_to(tables) for p in tables.rglob("*.parquet"))
    assert len(exported) == 5
    for name in exported:
        assert (root / "compacted" / name).read_bytes() == (tables / name).read_bytes(), name


def test_a_range_inside_a_known_span_opens_with_the_book_then(
    world: World, archive_dir: Path, tmp_path: Path
) -> None:
    span = world.known_spans()[0]
    start = span.start_ms + 12_345
    out = tmp_path / "part"
    args = ["--start", iso(start), "--end", iso(start + 20_000), "--tables", "book_changes"]
    assert run("export", str(archive_dir), *args, "--out", str(out), "-q") == 0
    con = db.connect(out)
    first = db.rows(
        con,
        "SELECT epoch_ms(local_timestamp) AS at_ms, is_snapshot, count(*) AS n "
        "FROM book_changes GROUP BY ALL ORDER BY at_ms LIMIT 1",
    )
    view = book_at(archive_dir, BOOK, start, depth=None)
    assert first == [{"at_ms": start, "is_snapshot": True, "n": len(view.bids) + len(view.asks)}]
    assert [p.relative_to(out).parts[0] for p in out.rglob("*.parquet")] == ["book_changes"]


def test_hours_without_diffs_fall_back_to_rest_snapshots(tmp_path: Path) -> None:
    archive = Archive()
    books = [
        ([("100.5", "1")], [("101", "2"), ("102", "3")], True),
        ([("100.5", "1.5")], [("101", "2"), ("102", "3")], True),
        ([("100", "4")], [("102", "3")], True),
        # An order-level book (BITSO_AGGREGATE=false) is summed by price first.
        ([("100", "1"), ("100", "0.25"), ("99", "1")], [("102", "3")], False),
    ]
    for number, (bids, asks, aggregate) in enumerate(books):
        snap = snapshot(
            BOOK,
            T0 + number * 1000,
            100 + number,
            [
                {"price": p, "amount": a, **({} if aggregate else {"oid": f"b{i}"})}
                for i, (p, a) in enumerate(bids)
            ],
            [
                {"price": p, "amount": a, **({} if aggregate else {"oid": f"a{i}"})}
                for i, (p, a) in enumerate(asks)
            ],
            aggregate=aggregate,
        )
        archive.add_snapshot(snap)
    root = archive.write_local(tmp_path / "archive")
    out = tmp_path / "tables"
    assert run("export", str(root), *HOUR, "--out", str(out), "-q") == 0
    con = db.connect(out)
    assert {r["source"] for r in db.rows(con, "SELECT DISTINCT source FROM book_changes")} == {
        "rest"
    }
    [(coverage)] = db.coverage(con, BOOK)
    assert (coverage.known, coverage.reason) == (False, "rest_snapshots")
    for number, (bids, asks, aggregate) in enumerate(books):
        received = T0 + number * 1000 + 183
        levels = db.rows(
            con,
            "SELECT side, price, amount, orders FROM (SELECT *, row_number() OVER (PARTITION BY "
            "side, price ORDER BY local_timestamp DESC) AS newest FROM book_changes WHERE "
            "epoch_ms(local_timestamp) <= $at) WHERE newest = 1 AND amount > 0 "
            "ORDER BY side DESC, price DESC",
            at=received,
        )
        expected_bids = sorted({p: a for p, a in bids}.items(), key=lambda x: -Decimal(x[0]))
        if not aggregate:
            expected_bids = [("100", "1.25"), ("99", "1")]
        assert [(r["side"], r["price"], r["amount"]) for r in levels] == [
            *(("bid", Decimal(p), Decimal(a)) for p, a in expected_bids),
            *(
                ("ask", Decimal(p), Decimal(a))
                for p, a in sorted(asks, key=lambda x: -Decimal(x[0]))
            ),
        ], number
        assert {r["orders"] for r in levels} == ({None} if aggregate else {1, 2})
    quotes = db.rows(
        con, "SELECT bid_price, ask_price, ask_amount FROM quotes ORDER BY local_timestamp"
    )
    assert [(r["bid_price"], r["ask_price"]) for r in quotes] == [
        (Decimal("100.5"), Decimal("101")),
        (Decimal("100.5"), Decimal("101")),
        (Decimal("100"), Decimal("102")),
        (Decimal("100"), Decimal("102")),
    ]
    assert not list((out / "book_snapshots").rglob("*.parquet"))  # nothing known, no instant
