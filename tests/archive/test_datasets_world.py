"""The research tables against an independent order-level market (tests/archive/stream_market):
10:54 to 11:13 recorded as five instances would (cuts at every call's end and across 11:00, an
outage, freezes with late receipts, a dropped diff, a rollout, a crash, a new instance after a
shutdown), exported once and read back with DuckDB alone (tests/archive/datasets_duckdb), never
through bitso_archive's readers. The market's own book is the truth, the generator's account of
when the book can be known (written from the contract) is the truth of ``coverage``, and
``book --at``, ``replay`` and ``trades`` must agree too.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bitso_archive.compact import compact_hour
from bitso_archive.orderbook import BookView, UnknownInstantError, UnknownSpan
from bitso_archive.replay import book_at, book_walker, replay
from bitso_archive.sources import open_source
from tests.archive import datasets_duckdb as db
from tests.archive.helpers import Archive, cli_exit_code, iso, ms, run_record, snapshot
from tests.archive.stream_market import BOOK, T0, T_END, World

#: The whole hours the scenario falls in: what compact writes too.
HOURS = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T12:00"]
HOURS_MS = (ms("2026-11-20T10:00:00Z"), ms("2026-11-20T12:00:00Z"))
HOUR = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T11:00"]
KNOWN = "known"


@pytest.fixture(scope="module")
def tables(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    assert cli_exit_code("export", str(archive_dir), *HOURS, "--out", str(out), "-q") == 0
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


def known_spans(world: World) -> list[tuple[int, int]]:
    return [(start, end) for start, end, reason in world.spans(T0, T_END) if reason == KNOWN]


@pytest.fixture(scope="module")
def known_sequence(world: World) -> Callable[[int], int]:
    """The sequence of the book at a known instant (World.truth_at's, faster): its anchor's, or
    the last diff's received by then, whichever is later."""
    sequences = sorted(world.merged)
    received = [world.merged[q] for q in sequences]  # merged receipts never go back
    anchors = sorted(world.anchors, key=lambda a: a.received_ms)
    anchor_receipts = [a.received_ms for a in anchors]

    def sequence(at_ms: int) -> int:
        anchor = anchors[bisect.bisect_right(anchor_receipts, at_ms) - 1]
        index = bisect.bisect_right(received, at_ms)
        return max(anchor.sequence, sequences[index - 1] if index else 0)

    return sequence


def reason_at(spans: list[tuple[int, int, str]], at_ms: int) -> str:
    index = bisect.bisect_right([start for start, _end, _reason in spans], at_ms) - 1
    return spans[index][2]


def merged(spans: list[db.CoverageSpan]) -> list[tuple[int, int, str]]:
    """The table's spans as (from, to, "known" or the reason), adjacent ones of one reason
    merged (the table starts a span at every anchor and every hour)."""
    out: list[tuple[int, int, str]] = []
    for span in spans:
        reason = KNOWN if span.known else span.reason
        if out and out[-1][1] == span.start_ms and out[-1][2] == reason:
            out[-1] = (out[-1][0], span.end_ms, reason)
        else:
            out.append((span.start_ms, span.end_ms, reason))
    return out


def test_book_changes_replayed_in_duckdb_is_the_markets_book_and_book_at(
    world: World,
    archive_dir: Path,
    con: duckdb.DuckDBPyConnection,
    known_sequence: Callable[[int], int],
) -> None:
    """At random instants (the reader's walker, the engine of ``book --at``, answers them in
    one pass) and at the first instant of every known span (``book --at`` itself)."""
    rng = random.Random(3)
    instants = sorted(rng.randrange(T0, T_END) for _ in range(300))
    walker, _stream = book_walker(open_source(archive_dir), BOOK, T0, T_END)
    answers: list[tuple[int, BookView | UnknownSpan]] = [
        (at_ms, walker.at(at_ms, depth=None)) for at_ms in instants
    ]
    starts = {start for start, _end in known_spans(world)}
    starts |= {span.start_ms for span in db.coverage(con, BOOK) if span.known}
    for at_ms in sorted(starts):
        try:
            answers.append((at_ms, book_at(archive_dir, BOOK, at_ms, depth=None)))
        except UnknownInstantError as refused:
            answers.append((at_ms, refused.span))
    spans = world.spans(T0, T_END)
    tables = db.books_at(con, BOOK, [at_ms for at_ms, _view in answers])
    known = unknown = 0
    for at_ms, view in answers:
        from_table = tables.get(at_ms)
        if isinstance(view, UnknownSpan):
            assert from_table is None, iso(at_ms)
            assert view.reason == reason_at(spans, at_ms), iso(at_ms)
            unknown += 1
            continue
        assert from_table is not None, iso(at_ms)
        assert reason_at(spans, at_ms) == KNOWN, iso(at_ms)
        got_sequence, bids, asks = from_table
        assert got_sequence == view.sequence == known_sequence(at_ms), iso(at_ms)
        assert (bids, asks) == truth(world, got_sequence), iso(at_ms)
        assert bids == [(lv.price, lv.amount, lv.orders) for lv in view.bids]
        assert asks == [(lv.price, lv.amount, lv.orders) for lv in view.asks]
        known += 1
    assert known > 250 and unknown > 40


def test_coverage_is_the_generators_spans_and_names_each_hole(
    world: World, con: duckdb.DuckDBPyConnection
) -> None:
    spans = db.coverage(con, BOOK)
    assert (spans[0].start_ms, spans[-1].end_ms) == HOURS_MS
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(spans))
    assert merged(spans) == world.spans(*HOURS_MS)
    # Each hour's file covers its hour: a span is cut at 11:00.
    assert any(span.start_ms == ms("2026-11-20T11:00:00Z") and span.known for span in spans)
    holes = {s.reason for s in spans if not s.known}
    assert holes == {
        "not_recorded",
        "before_first_anchor",
        "sequence_gap",
        "outage",
        "frozen",
        "crash",
        "instance_start",
    }
    assert {s.reason for s in spans if s.known} == {"stream"}


def test_a_chains_last_diff_before_a_gap_is_kept(
    world: World, con: duckdb.DuckDBPyConnection
) -> None:
    spans = merged(db.coverage(con, BOOK))
    gaps = [
        (start, before)
        for (_s, before_end, before), (start, _e, reason) in itertools.pairwise(spans)
        if reason == "sequence_gap" and before == KNOWN and before_end == start
    ]
    assert len(gaps) >= 3  # the dropped diff, the crash, the shutdown before a new instance
    for start, _before in gaps:
        last = db.rows(
            con,
            "SELECT max(sequence) AS sequence FROM book_changes "
            "WHERE NOT is_snapshot AND epoch_ms(local_timestamp) = $at",
            at=start,
        )
        # The last diff received before the first missing sequence, at the gap's first instant.
        stamped = [q for q, received in world.merged.items() if received == start]
        assert last == [{"sequence": max(stamped)}], iso(start)


def test_changes_and_quotes_carry_bitsos_time_of_each_diff(
    world: World, con: duckdb.DuckDBPyConnection
) -> None:
    sent = {event.sequence: event.time_ms for event in world.events}
    changes = db.rows(
        con,
        "SELECT DISTINCT sequence, epoch_ms(timestamp) AS sent FROM book_changes "
        "WHERE NOT is_snapshot",
    )
    assert len(changes) > 5000
    assert all(row["sent"] == sent[row["sequence"]] for row in changes)
    # An opening block, and its quote, carry the time of the last diff they include: none
    # when nothing was received after the anchor by then.
    for table, where in (("book_changes", "WHERE is_snapshot"), ("quotes", "")):
        found = db.rows(
            con, f"SELECT DISTINCT sequence, epoch_ms(timestamp) AS sent FROM {table} {where}"
        )
        assert len(found) >= 10  # a block at every known span's start (and the quotes)
        assert all(row["sent"] in (sent[row["sequence"]], None) for row in found), table
        assert any(row["sent"] is not None for row in found), table  # 11:00, after a freeze


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
    for instant in replay(archive_dir, BOOK, T0, T_END, 1000, depth=25):
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
    assert len(got) > 800 * 50
    assert got == expected
    inside = db.rows(
        con,
        "SELECT count(*) AS n FROM book_snapshots s, coverage c WHERE NOT c.known "
        'AND s.timestamp >= c.start AND s.timestamp < c."end"',
    )
    assert inside == [{"n": 0}]


def test_quotes_hold_the_markets_best_levels(
    world: World, con: duckdb.DuckDBPyConnection, known_sequence: Callable[[int], int]
) -> None:
    spans = known_spans(world)
    for start, _end in spans:  # the fast account is the generator's
        assert known_sequence(start + 500) == world.truth_at(start + 500)[1]
    instants = [at_ms for start, end in spans for at_ms in range(start, end, 331)]
    quotes = db.quotes_at(con, BOOK, instants)
    assert sorted(quotes) == instants  # a quote in force at every known instant
    books = world.levels_at(known_sequence(at_ms) for at_ms in instants)
    for at_ms in instants:
        quote = quotes[at_ms]
        bids, asks = books[known_sequence(at_ms)]
        assert (quote["bid_price"], quote["bid_amount"], quote["bid_orders"]) == (
            Decimal(bids[0][0]),
            Decimal(bids[0][1]),
            bids[0][2],
        ), iso(at_ms)
        assert (quote["ask_price"], quote["ask_amount"], quote["ask_orders"]) == (
            Decimal(asks[0][0]),
            Decimal(asks[0][1]),
            asks[0][2],
        ), iso(at_ms)
    assert len(instants) > 2500
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
    assert len(changes) > 40 and repeated == []


def test_trades_are_every_stored_trade_once(world: World, con: duckdb.DuckDBPyConnection) -> None:
    got = db.rows(
        con,
        "SELECT tid, epoch_ms(timestamp) AS made, price, amount, value, taker_side, maker_order, "
        "source FROM trades WHERE book = $book ORDER BY tid",
        book=BOOK,
    )
    stored = world.streamed_tids | world.backfilled_tids
    assert [r["tid"] for r in got] == sorted(stored)
    for row in got:
        trade = world.trades[row["tid"]]
        side = "buy" if trade["t"] == 0 else "sell"
        assert (row["made"], row["price"], row["amount"], row["taker_side"]) == (
            trade["x"],
            Decimal(trade["r"]),
            Decimal(trade["a"]),
            side,
        )
        streamed = row["tid"] in world.streamed_tids
        assert row["source"] == ("stream" if streamed else "rest")
        assert (row["maker_order"], row["value"]) == (
            (trade["mo"], Decimal(trade["v"])) if streamed else (None, None)
        )
    assert {r["source"] for r in got} == {"stream", "rest"}


def test_compact_writes_the_same_files_as_export(
    world: World, tables: Path, tmp_path: Path
) -> None:
    root = world.archive.write_local(tmp_path / "archive")
    for hour in ("2026-11-20T10", "2026-11-20T11"):
        compact_hour(root, hour, now="2026-11-20T12:05")
    exported = sorted(p.relative_to(tables) for p in tables.rglob("*.parquet"))
    assert len(exported) == 10  # five tables, two hours
    for name in exported:
        assert (root / "compacted" / name).read_bytes() == (tables / name).read_bytes(), name


def test_a_range_inside_a_known_span_opens_with_the_book_then(
    world: World, archive_dir: Path, tmp_path: Path
) -> None:
    start_ms, end_ms = max(known_spans(world), key=lambda span: span[1] - span[0])
    start = start_ms + 12_345
    assert start + 20_000 < end_ms
    out = tmp_path / "part"
    args = ["--start", iso(start), "--end", iso(start + 20_000), "--tables", "book_changes"]
    assert cli_exit_code("export", str(archive_dir), *args, "--out", str(out), "-q") == 0
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
    assert cli_exit_code("export", str(root), *HOUR, "--out", str(out), "-q") == 0
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


def test_a_quiet_hour_the_stream_watched_is_known_from_its_anchor(tmp_path: Path) -> None:
    """No diff received all hour, but every cut watched the channel: the book is its anchor's
    (summed by price), known from the anchor to the last cut, not sampled from REST."""
    archive = Archive()
    hour = ms("2026-11-20T10:00:00Z")
    slot = hour + 5_000
    bids = [("100", "1"), ("100", "0.25"), ("99", "2")]
    anchor = snapshot(
        BOOK,
        slot,
        700,
        [{"price": p, "amount": a, "oid": f"b{i}"} for i, (p, a) in enumerate(bids)],
        [{"price": "101", "amount": "3", "oid": "a0"}],
        aggregate=False,
    )
    archive.add_snapshot(anchor)
    archive.add_snapshot(snapshot(BOOK, slot + 10_000, 700))  # an aggregated one, not used
    covered_from = hour + 150
    for minute in range(3):
        minute_ms = hour + minute * 60_000
        cut = minute_ms + 58_500
        record = run_record(minute_ms, [BOOK], 12)
        channel = {
            "messages": 0,
            "objects": [],
            "covers": {"from": iso(covered_from), "to": iso(cut)},
            "continuous": minute > 0,
            "unwatched": [],
        }
        record["streams"] = {
            "instance": "0badcafe",
            "cut_at": iso(cut),
            "books": {BOOK: {"diff-orders": channel}},
        }
        if minute == 0:
            record["slot_uses"] = [{"book": BOOK, "slot": iso(slot), "use": "anchor"}]
        archive.add_run(record)
        covered_from = cut
    root = archive.write_local(tmp_path / "archive")
    out = tmp_path / "tables"
    assert cli_exit_code("export", str(root), *HOUR, "--out", str(out), "-q") == 0
    con = db.connect(out)
    received = slot + 183
    assert merged(db.coverage(con, BOOK)) == [
        (hour, hour + 150, "not_recorded"),
        (hour + 150, received, "before_first_anchor"),
        (received, hour + 2 * 60_000 + 58_500, KNOWN),
        (hour + 2 * 60_000 + 58_500, hour + 3_600_000, "not_recorded"),
    ]
    changes = db.rows(
        con,
        "SELECT epoch_ms(local_timestamp) AS at_ms, sequence, is_snapshot, side, price, amount, "
        "orders, source FROM book_changes ORDER BY side DESC, price DESC",
    )
    assert [(r["side"], r["price"], r["amount"], r["orders"]) for r in changes] == [
        ("bid", Decimal("100"), Decimal("1.25"), 2),
        ("bid", Decimal("99"), Decimal("2"), 1),
        ("ask", Decimal("101"), Decimal("3"), 1),
    ]
    assert {(r["at_ms"], r["sequence"], r["is_snapshot"], r["source"]) for r in changes} == {
        (received, 700, True, "stream")
    }
    instants = db.rows(con, "SELECT count(DISTINCT timestamp) AS n FROM book_snapshots")
    whole_seconds = range(-(-received // 1000) * 1000, hour + 2 * 60_000 + 58_500, 1000)
    assert instants == [{"n": len(whole_seconds)}]
