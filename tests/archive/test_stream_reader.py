"""Reading the continuous streams back against an independent order-level market.

tests/archive/stream_market records 10:54 to 11:13 as five instances would: cuts at the end of
every call, a cut across 11:00, an outage, a freeze with a burst of late receipts, a dropped
diff, a rollout (the old instance frozen until its SIGTERM flush), two unfrozen instances
storing the same diffs, a crash (no flush: a hole) and a new instance after a shutdown. The
market's own book is the truth the rebuilt book is compared with; the generator's account of
when the book can be known (written from the contract, not from the reader) is the truth the
refusals and the gap report are compared with.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
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
from bitso_archive.replay import book_at, replay
from bitso_archive.trades import TradesResult, iter_trades
from tests.archive.helpers import iso, ms, run_cli
from tests.archive.stream_market import BOOK, RPM, T0, T_END, World, build_world, rest_time

RANGE = ["--start", "2026-11-20T10:54", "--end", "2026-11-20T11:13"]
#: Minutes the stream covered without a break: no unknown time (the cut across 11:00, two
#: instances storing the same diffs at 11:05).
UNBROKEN = ["11:00", "11:03", "11:04", "11:05", "11:12"]


def as_text(view: Any) -> tuple[Any, Any]:
    def side(levels: Any) -> tuple[tuple[str, str, int], ...]:
        return tuple((format(lv.price, "f"), format(lv.amount, "f"), lv.orders) for lv in levels)

    return side(view.bids), side(view.asks)


def at(text: str) -> int:
    return ms(f"2026-11-20T{text}Z")


def quiet_near(world: World, at_ms: int, step: int) -> int:
    """The first instant from ``at_ms`` (stepping ``step``) with no event just before it."""
    while not world.quiet(at_ms):
        at_ms += step
    return at_ms


def boundary_instants(world: World) -> list[int]:
    """Quiet instants within a few hundred ms on both sides of every cut."""
    return sorted(
        {quiet_near(world, c.at_ms - 250, -1) for c in world.cuts}
        | {quiet_near(world, c.at_ms + 250, 1) for c in world.cuts}
    )


def check_known(world: World, source: Any, at_ms: int) -> Any:
    """The book at a quiet instant is the market's own: what every event made by then left."""
    sequence = world.sequence_at(at_ms)
    view = book_at(source, BOOK, at_ms, depth=None)
    assert view.sequence == sequence, iso(at_ms)
    assert as_text(view) == world.levels_at([sequence])[sequence], iso(at_ms)
    return view


def test_the_world_has_what_the_tests_need(world: World) -> None:
    names = set(world.archive.objects)
    hour_10 = "diff-orders/2026/11/20/10/btc_mxn_20261120T1100Z.ndjson.gz"
    assert {hour_10, hour_10.replace("/10/", "/11/")} <= names  # a cut across 11:00
    flushes = sorted(n for n in names if n.endswith(".shutdown.json"))
    assert [n.rsplit("-", 1)[1] for n in flushes] == [
        "a1b2c3d4.shutdown.json",
        "b5e6f708.shutdown.json",
        "d3e4f5a6.shutdown.json",
    ]
    assert "diff-orders/2026/11/20/11/btc_mxn_20261120T110540.000Z-b5e6f708.ndjson.gz" in names
    b, c = world.stored["b5e6f708"], world.stored["c9d0e1f2"]
    assert len(b.keys() & c.keys()) > 100  # both stored them, both unfrozen
    a = world.stored["a1b2c3d4"]
    assert len(a.keys() & b.keys()) > 50  # the old instance's late copies of the rollout
    reasons = {reason for _s, _e, reason in world.spans(T0, T_END)}
    assert reasons == {
        "known",
        "not_recorded",
        "before_first_anchor",
        "sequence_gap",
        "outage",
        "frozen",
        "crash",
        "instance_start",
    }
    stamps = [world.merged[q] for q in sorted(world.merged)]
    assert stamps == sorted(stamps)
    assert len(world.cuts) == 19 and len(boundary_instants(world)) >= 36


def test_book_at_equals_the_market_on_both_sides_of_every_cut(
    world: World, archive_dir: Path
) -> None:
    counts = {"known": 0, "refused": 0}
    for at_ms in boundary_instants(world):
        truth, sequence = world.truth_at(at_ms)
        if truth == "known":
            assert check_known(world, archive_dir, at_ms).sequence == sequence
            counts["known"] += 1
            continue
        with pytest.raises(UnknownInstantError) as refused:
            book_at(archive_dir, BOOK, at_ms)
        assert refused.value.reason == truth, iso(at_ms)
        counts["refused"] += 1
    assert counts["known"] >= 30 and counts["refused"] >= 3


def test_one_anchor_carries_the_book_across_cuts_hours_and_instances(
    world: World, archive_dir: Path
) -> None:
    re_anchor = next(a for a in world.anchors if a.received_ms > at("10:59:20"))
    for text in ("11:00:30", "11:01:30"):  # two and three cuts on, across 11:00
        view = check_known(world, archive_dir, quiet_near(world, at(text), 1))
        assert view.anchor == re_anchor.name
    # B's chain runs on through C's first seconds, with C's copies of the diffs (received
    # first), until C's own anchor.
    b_anchor = next(a for a in world.anchors if at("11:02") <= a.received_ms < at("11:03"))
    at_ms = quiet_near(world, at("11:05:04"), -1)
    assert check_known(world, archive_dir, at_ms).anchor == b_anchor.name
    taken = [q for q, r in world.merged.items() if at("11:05:00.200") <= r <= at_ms]
    assert taken and {world.kept_from[q] for q in taken} == {"c9d0e1f2"}


@pytest.mark.parametrize(
    ("text", "reason", "says"),
    [
        ("10:50:00.000", "not_recorded", "no cut recorded btc_mxn before this"),
        ("10:54:02.000", "before_first_anchor", "before the first anchor of btc_mxn found"),
        ("10:55:30.700", "outage", "the diff-orders subscription of btc_mxn was down"),
        ("10:55:33.000", "sequence_gap", "known again from the next anchor"),
        ("10:57:30.000", "frozen", "instance a1b2c3d4 did not run from 2026-11-20T10:56:58.600Z"),
        ("10:58:00.300", "frozen", "stamped late, and some of them"),
        ("10:59:22.000", "sequence_gap", "sequence gap after"),
        ("11:02:00.100", "frozen", "instance a1b2c3d4 did not run"),
        ("11:02:00.220", "frozen", "the only copy stored"),  # B watching, A's late copies
        ("11:07:30.000", "crash", "no shutdown record followed (it was killed or crashed)"),
        ("11:08:02.000", "sequence_gap", "known again from the next anchor"),
        ("11:10:30.000", "instance_start", "instance d3e4f5a6 shut down at 2026-11-20T11:09:59"),
        ("11:11:02.000", "sequence_gap", "known again from the next anchor"),
        ("11:20:00.000", "not_recorded", "after the last cut recorded"),
    ],
)
def test_refusals_name_every_hole(
    world: World, archive_dir: Path, text: str, reason: str, says: str
) -> None:
    at_ms = at(text)
    assert world.truth_at(at_ms)[0] == reason  # the generator agrees, from its own account
    with pytest.raises(UnknownInstantError) as refused:
        book_at(archive_dir, BOOK, at_ms)
    assert refused.value.reason == reason
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "text",
    [
        "10:54:05.080",
        "10:55:35.100",
        "10:58:00.600",
        "10:59:25.100",
        "11:02:00.300",
        "11:08:05.100",
        "11:11:05.100",
    ],
)
def test_the_book_is_known_again_after_every_break(
    world: World, archive_dir: Path, text: str
) -> None:
    at_ms = quiet_near(world, at(text), 1)
    assert world.truth_at(at_ms)[0] == "known"
    check_known(world, archive_dir, at_ms)


def test_book_command_json_and_text(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at_ms = quiet_near(world, at("11:03:30"), 1)
    sequence = world.sequence_at(at_ms)
    bids, asks = world.levels_at([sequence], depth=5)[sequence]
    code, out, err = run_cli(
        capsys, "book", str(archive_dir), "--book", BOOK, "--at", iso(at_ms), "--depth", "5",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert list(doc) == ["book", "at", "sequence", "bids", "asks"]
    assert (doc["book"], doc["at"], doc["sequence"]) == (BOOK, iso(at_ms), sequence)
    assert doc["bids"] == [{"price": p, "amount": a, "orders": n} for p, a, n in bids]
    assert doc["asks"] == [{"price": p, "amount": a, "orders": n} for p, a, n in asks]
    code, out, _ = run_cli(capsys, "book", str(archive_dir), "--book", BOOK, "--at", iso(at_ms))
    assert code == 0
    assert out.splitlines()[0].startswith(f"btc_mxn at {iso(at_ms)}, sequence {sequence}")
    assert re.search(rf"bid\s+0\s+{bids[0][0]}\s+{bids[0][1]}\s+{bids[0][2]}\n", out)


def test_book_command_refuses_with_exit_1_and_one_line(
    archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    when = "2026-11-20T11:07:30.000Z"
    code, out, err = run_cli(
        capsys, "book", str(archive_dir), "--book", BOOK, "--at", when, "--json"
    )
    assert (code, out) == (1, "")
    assert err.startswith(f"error: btc_mxn at {when} is unknown: instance c9d0e1f2's last cut")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_replay_walks_across_cuts_and_skips_what_cannot_be_known(
    world: World, archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "replay.csv"
    start, end = "2026-11-20T10:56:30", "2026-11-20T11:03:30"
    code, _, err = run_cli(
        capsys, "replay", str(archive_dir), "--book", BOOK, "--start", start, "--end", end,
        "--every", "1s", "--depth", "3", "--out", str(out_file),
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(out_file.open()))
    assert list(rows[0]) == ["book", "at", "sequence", "side", "level", "price", "amount", "orders"]
    ticks = list(range(ms(start + "Z"), ms(end + "Z"), 1000))
    truths = {t: world.truth_at(t) for t in ticks}
    expected = [t for t in ticks if truths[t][0] == "known"]
    assert sorted({r["at"] for r in rows}) == [iso(t) for t in expected]
    assert f"{len(ticks)} instants of btc_mxn: {len(expected)} known" in err
    assert "unknown from 2026-11-20T10:56:58.600Z" in err  # the freeze, named
    by_tick: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_tick.setdefault(row["at"], []).append(row)
    checked = 0
    for tick in expected[::13]:
        sequence = truths[tick][1]
        assert sequence is not None
        bids, asks = world.levels_at([sequence], depth=3)[sequence]
        got = by_tick[iso(tick)]
        assert {r["sequence"] for r in got} == {str(sequence)}
        assert [(r["side"], r["level"], r["price"], r["amount"], r["orders"]) for r in got] == [
            ("bid", str(i), p, a, str(n)) for i, (p, a, n) in enumerate(bids)
        ] + [("ask", str(i), p, a, str(n)) for i, (p, a, n) in enumerate(asks)]
        checked += 1
    assert checked > 20


def test_replay_from_between_an_anchors_slot_and_its_receipt_takes_that_anchor(
    world: World, archive_dir: Path
) -> None:
    re_anchor = next(a for a in world.anchors if a.received_ms > at("10:55:31.500"))
    start = re_anchor.slot_ms + 40  # asked for, not yet answered
    instants = list(replay(archive_dir, BOOK, start, start + 3_000, 1_000, depth=None))
    assert [i.unknown.reason if i.unknown else None for i in instants] == [
        "sequence_gap",
        None,
        None,
    ]
    for instant in instants[1:]:
        assert instant.view is not None and instant.view.anchor == re_anchor.name
        assert instant.view.sequence == world.truth_at(instant.at_ms)[1]


def test_replay_coarser_than_a_minute_samples_the_first_known_instant_of_each_interval(
    world: World, archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = ms("2026-11-20T10:55:00Z"), ms("2026-11-20T11:05:00Z")
    args = ["replay", str(archive_dir), "--book", BOOK, "--start", iso(start), "--end", iso(end)]
    code, out, err = run_cli(capsys, *args, "--every", "1m", "--depth", "2", "--out", "-")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = []
    for interval in range(start, end, 60_000):
        known = [a for a, _b, why in world.spans(interval, interval + 60_000) if why == "known"]
        if known:
            expected.append(known[0])
    assert sorted({r["at"] for r in rows}) == [iso(t) for t in expected]
    assert any(t % 60_000 for t in expected)  # some interval began unknown: sampled later
    for instant in expected:
        sequence = world.truth_at(instant)[1]
        assert {r["sequence"] for r in rows if r["at"] == iso(instant)} == {str(sequence)}


def test_replay_parquet_exact_decimals(archive_dir: Path, tmp_path: Path) -> None:
    args = ["--start", "2026-11-20T11:03:06", "--end", "2026-11-20T11:03:16", "--every", "250ms"]
    out_file = tmp_path / "replay.parquet"
    common = ["replay", str(archive_dir), "--book", BOOK, *args, "--depth", "2", "-q"]
    assert main([*common, "--out", str(out_file)]) == 0
    table = pq.read_table(out_file)
    assert table.num_rows == 40 * 4
    types = {f.name: str(f.type) for f in table.schema}
    assert types["price"] == types["amount"] == "decimal128(38, 9)"
    assert types["at"] == "timestamp[ms, tz=UTC]" and types["orders"] == "int32"
    csv_file = tmp_path / "replay.csv"
    assert main([*common, "--out", str(csv_file)]) == 0
    rows = list(csv.DictReader(csv_file.open()))
    assert [Decimal(r["amount"]) for r in rows] == table.column("amount").to_pylist()


def test_trades_every_stored_trade_once_in_tid_order(world: World, archive_dir: Path) -> None:
    result = TradesResult()
    trades = [t for chunk in iter_trades(archive_dir, T0, T_END, None, result) for t in chunk]
    stored = world.streamed_tids | world.backfilled_tids
    made = {tid: t for tid, t in world.trades.items() if T0 <= t["x"] < T_END}
    assert [t.tid for t in trades] == sorted(set(made) & stored)
    assert len(set(made) - stored) > 20  # made in the crash's hole and never backfilled
    assert result.duplicates > 300  # two instances' copies, and backfills of streamed ones
    for trade in trades:
        sent = made[trade.tid]
        assert (trade.book, trade.created_ms, trade.price, trade.amount) == (
            BOOK,
            sent["x"],
            sent["r"],
            sent["a"],
        )
        assert trade.taker_side == ("buy" if sent["t"] == 0 else "sell")
        assert trade.source == ("stream" if trade.tid in world.streamed_tids else "rest")
        if trade.source == "stream":
            assert (trade.value, trade.maker_order, trade.taker_order) == (
                sent["v"],
                sent["mo"],
                sent["to"],
            )
        else:
            assert (trade.value, trade.maker_order, trade.taker_order) == (None, None, None)


def test_trades_of_a_range_that_ends_inside_a_freeze_come_from_the_late_receipts(
    world: World, archive_dir: Path
) -> None:
    """Trades made while A was frozen were stamped when it ran again, in a later cut."""
    start, end = at("10:57:00"), at("10:57:40")
    (trades,) = list(iter_trades(archive_dir, start, end))
    made = sorted(
        tid
        for tid, t in world.trades.items()
        if start <= t["x"] < end and tid in world.streamed_tids
    )
    assert [t.tid for t in trades] == made and len(made) > 20
    assert all(t.received_ms == at("10:58:00.100") for t in trades)


def test_trades_command_csv_and_parquet(
    world: World, archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "trades.csv"
    code, _, err = run_cli(capsys, "trades", str(archive_dir), *RANGE, "--out", str(out_csv))
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
    code, _, err = run_cli(
        capsys, "trades", str(archive_dir), *RANGE, "--books", BOOK, "-q", "--out", str(out_parquet)
    )
    assert code == 0, err
    table = pq.read_table(out_parquet)
    assert table.column("tid").to_pylist() == tids
    assert str(table.schema.field("price").type) == "decimal128(38, 9)"
    assert table.column("price").to_pylist() == [Decimal(r["price"]) for r in rows]


def unknown_by_reason(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Adjacent spans of one reason as one (the two accounts may cut them differently)."""
    merged: list[tuple[int, int, str]] = []
    for start, end, reason in sorted(spans):
        if merged and merged[-1][1] == start and merged[-1][2] == reason:
            merged[-1] = (merged[-1][0], end, reason)
        else:
            merged.append((start, end, reason))
    return merged


@pytest.fixture(scope="module")
def gaps_doc(archive_dir: Path) -> dict[str, Any]:
    from bitso_archive.gaps import gaps_report

    return gaps_report(archive_dir, T0, T_END, rpm=RPM).as_dict()


def test_gaps_names_every_break_as_the_generator_does(
    world: World, gaps_doc: dict[str, Any]
) -> None:
    streams = gaps_doc["streams"][BOOK]
    summary = streams["summary"]
    start, end = ms(summary["from"]), ms(summary["to"])
    assert (iso(start), iso(end)) == ("2026-11-20T10:54:00.150Z", "2026-11-20T11:12:58.500Z")
    got = [(ms(u["from"]), ms(u["to"]), u["reason"]) for u in streams["unknown"]]
    truth = [s for s in world.spans(start, end) if s[2] != "known"]
    assert unknown_by_reason(got) == unknown_by_reason(truth)
    assert summary["unknown_ms"] == sum(e - s for s, e, _r in truth)
    assert set(summary["unknown_ms_by_reason"]) == {
        "before_first_anchor",
        "outage",
        "sequence_gap",
        "frozen",
        "crash",
        "instance_start",
    }
    assert summary["duplicates"] > 300
    gaps = [(g["after"], g["next"]) for m in streams["minutes"] for g in m["sequence_gaps"]]
    assert len(gaps) == 4  # the outage, the dropped diff, the crash, the instance start


def test_gaps_reports_zero_unknown_time_for_minutes_covered_without_a_break(
    world: World, gaps_doc: dict[str, Any]
) -> None:
    minutes = {m["minute"]: m for m in gaps_doc["streams"][BOOK]["minutes"]}
    assert len(minutes) == 19
    window = (at("10:54:00.150"), at("11:12:58.500"))
    truth = [s for s in world.spans(*window) if s[2] != "known"]
    for name, minute in minutes.items():
        start, end = ms(name), ms(name) + 60_000
        overlap = sum(max(0, min(e, end) - max(s, start)) for s, e, _r in truth)
        assert minute["unknown_ms"] == overlap, name
    for text in UNBROKEN:
        minute = minutes[f"2026-11-20T{text}:00Z"]
        assert (minute["unknown_ms"], minute["unknown"]) == (0, []), text
        assert minute["messages"] > 300 and minute["sequence_gaps"] == []
    assert minutes["2026-11-20T11:05:00Z"]["run_record"]["diff-orders"]["continuous"] is False
    assert len(minutes["2026-11-20T11:00:00Z"]["diff_objects"]) == 2  # one an hour of receipt


def test_gaps_never_counts_a_slot_used_for_an_anchor_or_a_backfill_as_missing(
    world: World, gaps_doc: dict[str, Any]
) -> None:
    snapshots = {m["minute"]: m for m in gaps_doc["books"][BOOK]["minutes"]}
    served = {cut.minute_ms: cut for cut in world.cuts if cut.minute_ms is not None}
    backfills = anchors = 0
    for minute_ms, cut in served.items():
        got = snapshots[iso(minute_ms)[:17] + "00Z"]
        uses = dict(cut.slot_uses)
        backfill = sum(1 for use in uses.values() if use == "trades_backfill")
        backfills += backfill
        anchors += sum(1 for use in uses.values() if use == "anchor")
        assert (got["expected"], got["present"], got["missing"]) == (
            RPM - backfill,
            RPM - backfill,
            [],
        ), iso(minute_ms)
        assert got["grid_from"] == "run_record"
    assert backfills >= 3 and anchors >= 8


def test_drift_is_zero_but_the_planted_one(world: World, gaps_doc: dict[str, Any]) -> None:
    streams = gaps_doc["streams"][BOOK]
    summary = streams["summary"]
    assert summary["drift_mismatched"] == 1
    (mismatch,) = [c for m in streams["minutes"] for c in m["drift"]["mismatches"]]
    assert mismatch["snapshot"] == next(name for name, _q, planted in world.aggregated if planted)
    assert mismatch["detail"].startswith("bid level 0: rebuilt")
    in_window = [a for a in world.aggregated if "T105400.000Z" not in a[0]]  # before 10:54:00.150
    assert summary["drift_checked"] + summary["drift_unchecked"] == len(in_window)
    assert summary["drift_checked"] > 150


def test_gaps_text_lists_the_stream_part(
    archive_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "gaps", str(archive_dir), *RANGE, "--rpm", "12")
    assert code == 0
    streams = out.split("Streams:", 1)[1]
    assert "Sequence gaps: 4" in streams
    assert "Drift (snapshots that differ from the rebuilt book): 1" in streams
    assert "Unknown spans: " in streams
    for reason in ("crash", "instance_start", "frozen", "outage", "sequence_gap"):
        assert f": {reason}" in streams


def test_a_corrupt_diffs_object_makes_what_it_held_unknown(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = world.archive.write_local(tmp_path / "data")
    name = "diff-orders/2026/11/20/11/btc_mxn_20261120T1103Z.ndjson.gz"
    (root / name).write_bytes((root / name).read_bytes()[:200])  # truncated gzip
    logger = logging.getLogger("bitso_archive")
    logger.addHandler(caplog.handler)
    try:
        with pytest.raises(UnknownInstantError) as refused:
            book_at(root, BOOK, "2026-11-20T11:03:30")
    finally:
        logger.removeHandler(caplog.handler)
    assert refused.value.reason == "not_recorded" and "cannot be read" in str(refused.value)
    assert any(name in record.getMessage() for record in caplog.records)
    with pytest.raises(UnknownInstantError) as after:  # the diffs it held are gone: a gap
        book_at(root, BOOK, "2026-11-20T11:04:10")
    assert after.value.reason == "sequence_gap"


def test_streams_in_a_bucket_under_a_prefix(world: World, gcs_bucket: Any) -> None:
    prefixed = build_world(prefix="collector")
    prefixed.archive.upload(gcs_bucket)
    source = f"gs://{gcs_bucket.name}/collector"
    check_known(world, source, quiet_near(world, at("11:00:30"), 1))
    with pytest.raises(UnknownInstantError) as refused:
        book_at(source, BOOK, at("11:07:30"))
    assert refused.value.reason == "crash"
    start, end = at("11:05:00"), at("11:06:00")
    (trades,) = list(iter_trades(source, start, end))
    assert [t.tid for t in trades] == sorted(
        tid for tid, t in world.trades.items() if start <= t["x"] < end
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
    hour = (ms("2026-11-20T10:00:00Z"), ms("2026-11-20T11:00:00Z"))
    stored = sorted(
        t
        for t in world.streamed_tids | world.backfilled_tids
        if hour[0] <= world.trades[t]["x"] < hour[1]
    )
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
    code, _, err = run_cli(capsys, *[str(archive_dir) if a == "SRC" else a for a in args])
    assert code == 2
    assert message in err and "Traceback" not in err


def test_book_runs_as_a_process_with_its_console_name(archive_dir: Path, world: World) -> None:
    at_ms = quiet_near(world, at("11:04:10"), 1)
    done = subprocess.run(
        [sys.executable, "-m", "bitso_archive", "book", str(archive_dir), "--book", BOOK,
         "--at", iso(at_ms), "--json"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sequence"] == world.sequence_at(at_ms)


def test_the_generator_writes_what_the_schemas_allow(world: World) -> None:
    """The independent copy must not drift from the real format: its stream lines, the stream
    parts of its run records, and its shutdown records follow the repository's schemas."""
    import jsonschema
    from referencing import Registry, Resource

    from tests.support.schemas import RUN_RECORD, SCHEMAS, STREAM_LINE

    shutdown = json.loads((SCHEMAS / "shutdown_record.schema.json").read_text())
    registry = Registry().with_resource(RUN_RECORD["$id"], Resource.from_contents(RUN_RECORD))
    checker = jsonschema.Draft202012Validator(RUN_RECORD)
    shutdown_checker = jsonschema.Draft202012Validator(shutdown, registry=registry)
    line_checker = jsonschema.Draft202012Validator(STREAM_LINE)
    lines = runs = flushes = 0
    for name, (data, _encoding) in world.archive.objects.items():
        if name.endswith(".ndjson.gz"):
            for raw in gzip.decompress(data).splitlines():
                line_checker.validate(json.loads(raw))
                lines += 1
        elif name.endswith(".shutdown.json"):
            shutdown_checker.validate(json.loads(data))
            flushes += 1
        elif name.startswith("_runs/") and name.endswith(".json"):
            errors = [
                e.message
                for e in checker.iter_errors(json.loads(data))
                if e.path and e.path[0] in ("streams", "slot_uses")
            ]
            assert errors == [], name
            runs += 1
    assert lines > 5000 and flushes == 3
    assert runs == sum(1 for c in world.cuts if c.minute_ms is not None) == 16
