"""Reading streams back against an independent order-level market (tests/archive/stream_market).

Five minutes from 10:00: a clean one; one with a dropped diff; one with an outage (diffs lost,
a reconnect, trades backfilled) and a planted drift; one nobody recorded; one with a short
outage. The market's own book is the truth the rebuilt book is compared with.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from bitso_archive.cli import main
from bitso_archive.compact import compact_hour
from bitso_archive.orderbook import UnknownInstantError
from bitso_archive.replay import book_at
from bitso_archive.trades import iter_trades
from tests.archive.helpers import iso
from tests.archive.stream_market import (
    BOOK,
    CLOSE_MS,
    T0,
    MinutePlan,
    Span,
    World,
    build_world,
    chain_end,
    rest_time,
)

PLANS = [
    MinutePlan(),
    MinutePlan(drops=(20_000,)),
    MinutePlan(outages=((30_000, 31_500),), planted=(5,)),
    MinutePlan(recorded=False),
    MinutePlan(outages=((40_000, 40_002),)),
]
RANGE = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T10:05"]


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(PLANS)


@pytest.fixture(scope="module")
def archive_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world.archive.write_local(tmp_path_factory.mktemp("streams"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def as_text(view: Any) -> tuple[Any, Any]:
    def side(levels: Any) -> tuple[tuple[str, str, int], ...]:
        return tuple((format(lv.price, "f"), format(lv.amount, "f"), lv.orders) for lv in levels)

    return side(view.bids), side(view.asks)


def instants(world: World, per_span: int = 25) -> list[tuple[int, Span]]:
    """The first and last instant of every known span, and some in between."""
    rng = random.Random(5)
    chosen = []
    for span in world.known_spans():
        inside = [rng.randrange(span.start_ms, span.end_ms) for _ in range(per_span)]
        chosen += [(t, span) for t in [span.start_ms, span.start_ms + 1, *inside, span.end_ms - 1]]
    return chosen


def test_the_world_has_what_the_tests_need(world: World) -> None:
    minutes = world.minutes
    assert [len(minutes[T0 + k * 60_000].anchors) for k in (0, 1, 2, 4)] == [1, 2, 2, 2]
    assert minutes[T0].gaps == [] and len(minutes[T0 + 60_000].gaps) == 1
    assert len(minutes[T0 + 120_000].gaps) == 1  # the outage lost diffs
    assert minutes[T0 + 240_000].gaps == []  # a reconnect that lost nothing: re-anchored anyway
    assert T0 + 180_000 not in minutes


def test_rebuilt_book_equals_the_markets_at_many_instants(world: World, archive_dir: Path) -> None:
    chosen = instants(world)
    expected = world.levels_at(world.received_sequence(t, span) for t, span in chosen)
    re_anchored = 0
    for at_ms, span in chosen:
        sequence = world.received_sequence(at_ms, span)
        view = book_at(archive_dir, BOOK, at_ms, depth=None)
        assert (view.sequence, as_text(view)) == (sequence, expected[sequence]), iso(at_ms)
        anchors = world.minutes[at_ms - at_ms % 60_000].anchors
        re_anchored += at_ms == span.start_ms and span.start_ms != anchors[0].received_ms
    assert len(chosen) > 150
    assert re_anchored == 3  # right at each re-anchor's receipt, the new anchor's book


def test_depth_cuts_each_side(world: World, archive_dir: Path) -> None:
    span = world.known_spans()[0]
    full = book_at(archive_dir, BOOK, span.start_ms + 10, depth=None)
    top = book_at(archive_dir, BOOK, span.start_ms + 10, depth=3)
    assert top.bids == full.bids[:3] and top.asks == full.asks[:3]
    assert len(full.bids) > 3


def test_the_instant_right_after_a_dropped_diff_is_refused(world: World, archive_dir: Path) -> None:
    facts = world.minutes[T0 + 60_000]
    ((after, following),) = facts.gaps
    received = dict(facts.stored)
    last_before = received[after]
    assert book_at(archive_dir, BOOK, last_before - 1).sequence < after + 1
    for at_ms in (last_before, last_before + 1, received[following]):
        with pytest.raises(UnknownInstantError) as refused:
            book_at(archive_dir, BOOK, at_ms)
        assert refused.value.reason == "sequence_gap"
        assert f"sequence gap after {after}" in str(refused.value)
        assert f"next {following}" in str(refused.value)
    re_anchor = facts.anchors[1]
    assert book_at(archive_dir, BOOK, re_anchor.received_ms).sequence >= re_anchor.sequence


@pytest.mark.parametrize(
    ("at", "reason", "says"),
    [
        ("2026-11-20T10:00:00.000Z", "before_first_anchor", "before the minute's first anchor"),
        ("2026-11-20T10:00:59.999Z", "after_last_diff", "after the last diff recorded"),
        ("2026-11-20T10:03:30.000Z", "not_recorded", "no diff-orders object of btc_mxn"),
        ("2026-11-20T11:00:00.000Z", "not_recorded", "no diff-orders object of btc_mxn"),
    ],
)
def test_instants_the_archive_cannot_know(
    archive_dir: Path, at: str, reason: str, says: str
) -> None:
    with pytest.raises(UnknownInstantError) as refused:
        book_at(archive_dir, BOOK, at)
    assert refused.value.reason == reason
    assert says in str(refused.value)


def test_book_command_json_and_text(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    span = world.known_spans()[2]
    at_ms = (span.start_ms + span.end_ms) // 2
    sequence = world.received_sequence(at_ms, span)
    bids, asks = world.levels_at([sequence], depth=5)[sequence]
    code, out, err = run(
        capsys,
        "book",
        str(archive_dir),
        "--book",
        BOOK,
        "--at",
        iso(at_ms),
        "--depth",
        "5",
        "--json",
    )
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["book", "at", "sequence", "bids", "asks"]
    assert (doc["book"], doc["at"], doc["sequence"]) == (BOOK, iso(at_ms), sequence)
    assert doc["bids"] == [{"price": p, "amount": a, "orders": n} for p, a, n in bids]
    assert doc["asks"] == [{"price": p, "amount": a, "orders": n} for p, a, n in asks]

    code, out, _ = run(capsys, "book", str(archive_dir), "--book", BOOK, "--at", iso(at_ms))
    assert code == 0
    assert out.splitlines()[0].startswith(f"btc_mxn at {iso(at_ms)}, sequence {sequence}")
    assert f"{bids[0][0]}  {bids[0][1]}" in out


def test_book_command_refuses_with_exit_1_and_one_line(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ((after, following),) = world.minutes[T0 + 60_000].gaps
    at = iso(dict(world.minutes[T0 + 60_000].stored)[after])
    code, out, err = run(capsys, "book", str(archive_dir), "--book", BOOK, "--at", at, "--json")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: btc_mxn at {at} is unknown: sequence gap after {after}")
    assert f"next {following}" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_replay_csv_one_row_per_level_and_unknown_instants_skipped(
    world: World, archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "replay.csv"
    code, _, err = run(
        capsys,
        "replay",
        str(archive_dir),
        "--book",
        BOOK,
        "--start",
        "2026-11-20T10:00",
        "--end",
        "2026-11-20T10:05",
        "--every",
        "1s",
        "--depth",
        "3",
        "--out",
        str(out_file),
    )
    assert code == 0, err
    rows = list(csv.DictReader(out_file.open()))
    assert list(rows[0]) == ["book", "at", "sequence", "side", "level", "price", "amount", "orders"]
    known = world.known_spans()
    ticks = list(range(T0, T0 + 300_000, 1000))
    expected_ticks = [t for t in ticks if any(s.start_ms <= t < s.end_ms for s in known)]
    assert sorted({r["at"] for r in rows}) == [iso(t) for t in expected_ticks]
    assert f"300 instants of btc_mxn: {len(expected_ticks)} known" in err
    by_tick: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_tick.setdefault(row["at"], []).append(row)
    checked = 0
    for tick in expected_ticks[::17]:
        span = next(s for s in known if s.start_ms <= tick < s.end_ms)
        sequence = world.received_sequence(tick, span)
        bids, asks = world.levels_at([sequence], depth=3)[sequence]
        got = by_tick[iso(tick)]
        assert {r["sequence"] for r in got} == {str(sequence)}
        assert [(r["side"], r["level"], r["price"], r["amount"], r["orders"]) for r in got] == [
            ("bid", str(i), p, a, str(n)) for i, (p, a, n) in enumerate(bids)
        ] + [("ask", str(i), p, a, str(n)) for i, (p, a, n) in enumerate(asks)]
        checked += 1
    assert checked > 10


def test_replay_parquet_exact_decimals(archive_dir: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "replay.parquet"
    code = main(
        [
            "replay",
            str(archive_dir),
            "--book",
            BOOK,
            "--start",
            "2026-11-20T10:00:06",
            "--end",
            "2026-11-20T10:00:16",
            "--every",
            "250ms",
            "--depth",
            "2",
            "--out",
            str(out_file),
            "-q",
        ]
    )
    assert code == 0
    table = pq.read_table(out_file)
    assert table.num_rows == 40 * 4
    types = {f.name: str(f.type) for f in table.schema}
    assert types["price"] == types["amount"] == "decimal128(38, 9)"
    assert types["at"] == "timestamp[ms, tz=UTC]" and types["orders"] == "int32"
    csv_file = tmp_path / "replay.csv"
    assert (
        main(
            [
                "replay",
                str(archive_dir),
                "--book",
                BOOK,
                "--start",
                "2026-11-20T10:00:06",
                "--end",
                "2026-11-20T10:00:16",
                "--every",
                "250ms",
                "--depth",
                "2",
                "--out",
                str(csv_file),
                "-q",
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(csv_file.open()))
    assert [Decimal(r["amount"]) for r in rows] == table.column("amount").to_pylist()


def test_trades_complete_once_in_tid_order(world: World, archive_dir: Path) -> None:
    start, end = T0, T0 + 4 * 60_000 + CLOSE_MS  # trades after the last call closed: never stored
    made = {tid: t for tid, t in world.trades.items() if start <= t["x"] < end}
    assert set(made) <= world.stored_tids  # the collector model stored every one of them
    (trades,) = list(iter_trades(archive_dir, start, end))
    assert [t.tid for t in trades] == sorted(made)
    sources = {t.tid: t.source for t in trades}
    assert {tid for tid, s in sources.items() if s == "stream"} == set(made) & world.streamed_tids
    assert "rest" in sources.values() and "stream" in sources.values()
    for trade in trades:
        sent = made[trade.tid]
        assert (trade.book, trade.created_ms, trade.price, trade.amount) == (
            BOOK,
            sent["x"],
            sent["r"],
            sent["a"],
        )
        assert trade.taker_side == ("buy" if sent["t"] == 0 else "sell")
        if trade.source == "stream":
            assert (trade.value, trade.maker_order, trade.taker_order) == (
                sent["v"],
                sent["mo"],
                sent["to"],
            )
        else:
            assert (trade.value, trade.maker_order, trade.taker_order) == (None, None, None)


def test_trades_command_csv_and_parquet(
    world: World, archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "trades.csv"
    code, _, err = run(capsys, "trades", str(archive_dir), *RANGE, "--out", str(out_csv))
    assert code == 0, err
    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == [
        "tid",
        "book",
        "created_at",
        "received_at",
        "price",
        "amount",
        "value",
        "taker_side",
        "maker_order",
        "taker_order",
        "source",
    ]
    tids = [int(r["tid"]) for r in rows]
    assert tids == sorted(set(tids))  # once each, in trade id order
    assert "duplicates dropped" in err and "0 duplicates" not in err
    rest = next(r for r in rows if r["source"] == "rest")
    assert rest["value"] == rest["maker_order"] == ""
    assert rest_time(world.trades[int(rest["tid"])]["x"]).startswith(rest["created_at"][:19])

    out_parquet = tmp_path / "trades.parquet"
    code, _, err = run(
        capsys, "trades", str(archive_dir), *RANGE, "--books", BOOK, "-q", "--out", str(out_parquet)
    )
    assert code == 0, err
    table = pq.read_table(out_parquet)
    assert table.column("tid").to_pylist() == tids
    assert str(table.schema.field("price").type) == "decimal128(38, 9)"
    assert table.column("price").to_pylist() == [Decimal(r["price"]) for r in rows]


def gap_minutes(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["minute"]: m for m in doc["streams"][BOOK]["minutes"]}


def test_gaps_json_names_each_gap_the_uncovered_time_and_the_unknown_spans(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "gaps", str(archive_dir), *RANGE, "--json", "--rpm", "12")
    assert code == 0, err
    minutes = gap_minutes(json.loads(out))
    assert sorted(minutes) == [iso(m)[:17] + "00Z" for m in sorted(world.minutes)]
    for minute_ms, facts in world.minutes.items():
        got = minutes[iso(minute_ms)[:17] + "00Z"]
        assert [(g["after"], g["next"]) for g in got["sequence_gaps"]] == facts.gaps
        assert got["uncovered_ms"] == facts.uncovered_ms
        assert got["reconnects"] == facts.reconnects
        assert got["messages"] == len(facts.stored)
        unknown = [s for s in facts.spans if s.reason != "known"]
        assert [(u["from"], u["to"], u["reason"]) for u in got["unknown"]] == [
            (iso(s.start_ms), iso(s.end_ms), s.reason) for s in unknown
        ]
        assert [
            tuple(u["gap"][k] for k in ("after", "next")) for u in got["unknown"] if u["gap"]
        ] == [s.gap for s in unknown if s.gap]
        assert got["unknown_ms"] == sum(s.end_ms - s.start_ms for s in unknown)
        assert [a["sequence"] for a in got["anchors"]] == [a.sequence for a in facts.anchors]


def test_gaps_never_counts_a_trades_backfill_slot_as_a_missing_snapshot(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "gaps", str(archive_dir), *RANGE, "--json")
    assert code == 0
    snapshots = {m["minute"]: m for m in json.loads(out)["books"][BOOK]["minutes"]}
    for minute_ms, facts in world.minutes.items():
        got = snapshots[iso(minute_ms)[:17] + "00Z"]
        assert len(facts.backfill_slots) >= 1
        assert (got["expected"], got["present"], got["missing"]) == (
            12 - len(facts.backfill_slots),
            12 - len(facts.backfill_slots),
            [],
        )
        assert got["grid_from"] == "run_record"


@pytest.mark.parametrize("minute", [2, 4])
def test_the_instant_after_an_outage_is_refused_until_the_re_anchor(
    world: World, archive_dir: Path, minute: int
) -> None:
    facts = world.minutes[T0 + minute * 60_000]
    ((lost_at, _back),) = facts.outages
    last_before = max(when for _seq, when in facts.stored if when <= lost_at)
    re_anchor = next(a for a in facts.anchors if a.received_ms > lost_at)
    for at_ms in (last_before, lost_at, re_anchor.received_ms - 1):
        with pytest.raises(UnknownInstantError) as refused:
            book_at(archive_dir, BOOK, at_ms)
        assert refused.value.reason == "outage"
        assert f"the socket was lost at {iso(lost_at)}" in str(refused.value)
    assert book_at(archive_dir, BOOK, last_before - 1).sequence < re_anchor.sequence
    assert book_at(archive_dir, BOOK, re_anchor.received_ms).sequence >= re_anchor.sequence


def test_drift_is_zero_on_a_clean_archive_and_counts_a_planted_one(
    world: World, archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "gaps", str(archive_dir), *RANGE, "--json", "--rpm", "12")
    assert code == 0
    doc = json.loads(out)
    summary = doc["streams"][BOOK]["summary"]
    planted = world.minutes[T0 + 120_000].aggregated
    assert summary["drift_mismatched"] == 1
    (mismatch,) = gap_minutes(doc)["2026-11-20T10:02:00Z"]["drift"]["mismatches"]
    assert mismatch["snapshot"] == next(s.name for s in planted if s.planted)
    assert mismatch["detail"].startswith("bid level 0: rebuilt")
    checkable = [
        s
        for facts in world.minutes.values()
        for s in facts.aggregated
        if any(a.sequence <= s.sequence <= chain_end(facts, a) for a in facts.anchors)
    ]
    assert summary["drift_checked"] == len(checkable) > 20
    total = sum(len(f.aggregated) for f in world.minutes.values())
    assert summary["drift_unchecked"] == total - len(checkable) > 0

    clean = build_world([MinutePlan(), MinutePlan(drops=(20_000,)), MinutePlan()], seed=11)
    root = clean.archive.write_local(tmp_path / "clean")
    code, out, _ = run(
        capsys,
        "gaps",
        str(root),
        "--start",
        "2026-11-20T10:00",
        "--end",
        "2026-11-20T10:03",
        "--json",
        "--rpm",
        "12",
    )
    clean_summary = json.loads(out)["streams"][BOOK]["summary"]
    assert clean_summary["drift_mismatched"] == 0
    assert clean_summary["drift_checked"] >= 20
    assert clean_summary["sequence_gaps"] == 1


def test_gaps_text_lists_the_stream_part(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "gaps", str(archive_dir), *RANGE, "--rpm", "12")
    assert code == 0
    streams = out.split("Streams:", 1)[1]
    ((after, following),) = world.minutes[T0 + 60_000].gaps
    assert "Sequence gaps: 2" in streams
    assert re.search(rf"btc_mxn\s+{after}\s+{following}\s", streams)
    assert "Drift (snapshots that differ from the rebuilt book): 1" in streams
    inside = [
        s
        for s in world.unknown_spans()
        if s.reason in ("sequence_gap", "outage")
        or (s.reason == "after_last_diff" and s.end_ms % 60_000)
    ]
    assert f"Unknown spans inside minutes: {len(inside)} " in streams
    assert streams.count(": sequence_gap") == 1  # the dropped diff
    assert streams.count(": outage") == 2  # one that lost diffs, one that lost none


def test_a_corrupt_diffs_object_makes_its_minute_unknown(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = world.archive.write_local(tmp_path / "data")
    name = "diff-orders/2026/11/20/10/btc_mxn_20261120T1000Z.ndjson.gz"
    (root / name).write_bytes((root / name).read_bytes()[:200])  # truncated gzip
    logger = logging.getLogger("bitso_archive")
    logger.addHandler(caplog.handler)
    try:
        with pytest.raises(UnknownInstantError) as refused:
            book_at(root, BOOK, "2026-11-20T10:00:30")
    finally:
        logger.removeHandler(caplog.handler)
    assert refused.value.reason == "not_recorded" and "cannot be read" in str(refused.value)
    assert any(name in record.getMessage() for record in caplog.records)


def test_streams_in_a_bucket_under_a_prefix(world: World, gcs_bucket: Any) -> None:
    prefixed = build_world(PLANS, prefix="collector")
    prefixed.archive.upload(gcs_bucket)
    source = f"gs://{gcs_bucket.name}/collector"
    at_ms, span = instants(world, per_span=1)[5]
    sequence = world.received_sequence(at_ms, span)
    view = book_at(source, BOOK, at_ms, depth=None)
    assert (view.sequence, as_text(view)) == (sequence, world.levels_at([sequence])[sequence])
    (trades,) = list(iter_trades(source, T0, T0 + 60_000))
    assert [t.tid for t in trades] == sorted(
        tid for tid, t in world.trades.items() if T0 <= t["x"] < T0 + 60_000
    )


TRADES_10 = (
    "compacted/trades/book=btc_mxn/year=2026/month=11/day=20/hour=10/btc_mxn_20261120T10.parquet"
)
LEVELS_10 = "compacted/book=btc_mxn/year=2026/month=11/day=20/hour=10/btc_mxn_20261120T10.parquet"


def test_compact_writes_the_hours_trades_beside_the_books(world: World, tmp_path: Path) -> None:
    root = world.archive.write_local(tmp_path / "data")
    result = compact_hour(root, "2026-11-20T10", now="2026-11-20T11:05")
    outputs = {o["object"]: o for o in result.as_dict()["outputs"]}
    tables = ("trades", "book_changes", "book_snapshots", "quotes", "coverage")
    assert set(outputs) == {LEVELS_10} | {TRADES_10.replace("/trades/", f"/{t}/") for t in tables}
    assert (outputs[TRADES_10]["kind"], outputs[TRADES_10]["status"]) == ("trades", "written")
    assert outputs[LEVELS_10]["kind"] == "levels"
    table = pq.read_table(root / TRADES_10)
    assert table.schema.names == [
        "tid",
        "timestamp",
        "local_timestamp",
        "price",
        "amount",
        "value",
        "taker_side",
        "maker_order",
        "taker_order",
        "source",
    ]
    stored = sorted(t for t in world.stored_tids if T0 <= world.trades[t]["x"] < T0 + 3_600_000)
    assert table.column("tid").to_pylist() == stored
    assert outputs[TRADES_10]["rows"] == len(stored)
    first = (root / TRADES_10).read_bytes()
    again = compact_hour(root, "2026-11-20T10", now="2026-11-20T11:05").as_dict()
    assert (again["written"], again["existing"]) == (0, 1 + len(tables))
    (root / TRADES_10).unlink()
    compact_hour(root, "2026-11-20T10", now="2026-11-20T11:05")
    assert (root / TRADES_10).read_bytes() == first  # the same input gives the same bytes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["book", "SRC", "--book", BOOK], "--at"),
        (["book", "SRC", "--at", "2026-11-20T10:00:30"], "--book"),
        (["book", "SRC", "--book", "BTC", "--at", "2026-11-20T10:00"], "'BTC' is not a book name"),
        (["book", "SRC", "--book", BOOK, "--at", "noon"], "'noon' is not a time"),
        (
            ["book", "SRC", "--book", BOOK, "--at", "2026-11-20T10:00", "--depth", "0"],
            "'0' is not a depth",
        ),
        (
            ["replay", "SRC", "--book", BOOK, *RANGE, "--every", "1x", "--out", "r.csv"],
            "'1x' is not an interval",
        ),
        (
            ["replay", "SRC", "--book", BOOK, *RANGE, "--every", "0s", "--out", "r.csv"],
            "'0s' is not an interval",
        ),
        (["replay", "SRC", "--book", BOOK, *RANGE, "--out", "r.json"], "must end in .csv"),
        (
            [
                "replay",
                "SRC",
                "--book",
                BOOK,
                "--start",
                "2026-11-20T10:05",
                "--end",
                "2026-11-20T10:00",
                "--out",
                "r.csv",
            ],
            "must be after --start",
        ),
        (["trades", "SRC", *RANGE], "--out"),
        (["trades", "SRC", *RANGE, "--books", "x", "--out", "t.csv"], "'x' is not a book name"),
    ],
)
def test_bad_input_to_the_stream_commands_is_an_argparse_error(
    archive_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, *[str(archive_dir) if a == "SRC" else a for a in args])
    assert code == 2
    assert message in err and "Traceback" not in err


def test_book_runs_as_a_process_with_its_console_name(archive_dir: Path, world: World) -> None:
    span = world.known_spans()[0]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitso_archive",
            "book",
            str(archive_dir),
            "--book",
            BOOK,
            "--at",
            iso(span.start_ms + 5),
            "--json",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sequence"] == world.received_sequence(span.start_ms + 5, span)


def test_the_generator_writes_what_the_schemas_allow(world: World) -> None:
    """The independent copy must not drift from the real format: its stream lines, and the
    stream parts of its run records, follow the repository's schemas."""
    import gzip

    import jsonschema

    from tests.support.schemas import RUN_RECORD, STREAM_LINE

    checker = jsonschema.Draft202012Validator(RUN_RECORD)
    line_checker = jsonschema.Draft202012Validator(STREAM_LINE)
    lines = runs = 0
    for name, (data, _encoding) in world.archive.objects.items():
        if name.endswith(".ndjson.gz"):
            for raw in gzip.decompress(data).splitlines():
                line_checker.validate(json.loads(raw))
                lines += 1
        elif name.startswith("_runs/") and name.endswith(".json"):
            errors = [
                e.message
                for e in checker.iter_errors(json.loads(data))
                if e.path and e.path[0] in ("streams", "slot_uses")
            ]
            assert errors == [], name
            runs += 1
    assert lines > 1000 and runs == len(world.minutes)
