"""Benchmark the research tables (``export``, ``compact``; docs/datasets.md).

Writes one book-hour as the continuous collector records it: btc_mxn's order-level market
(bitso_testkit.market, 5,000 resting orders) changing 200,000 times in the hour, watched by one
instance that holds the socket across calls and cuts it at the end of every call (M + 58.5 s;
each cut's objects hold every message received since the previous one, one object per hour of
receipt, and its run record says what it covers), anchored every ANCHOR_EVERY_MINUTES (10, the
collector's default) at the minute's 5 s slot. Then:

- ``export`` of that book-hour, all tables, as a process (start-up included): wall time and
  peak memory; targets under 30 s and under 512 MB on this 2-core machine;
- ``compact`` of the same hour (levels and tables), as a process: what sizes ``compact_hour``;
- the bytes of ``book_changes`` plus ``trades`` against the raw gzip stream objects of the hour
  and against ``zstd -19`` of them (each channel's hour decompressed and compressed as one
  stream: zstd's best case); target: smaller than both;
- a year of ``book_snapshots`` (1 s, depth 25) for one book, queried in DuckDB for the daily
  spread: one day is made of the hour's file in each of 24 hour partitions, queried (best of 3),
  and the time and bytes extrapolated to 365 days.

Prints a Markdown table; exits 1 if a target is missed.

    python bench/datasets_bench.py [--diffs 200000] [--orders 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from archive_bench import run_cli, run_record

from bitso_collector.config import DEFAULT_ANCHOR_EVERY_MINUTES
from bitso_format import (
    DIFF_ORDERS_CHANNEL,
    HOUR_MS,
    MINUTE_MS,
    TRADES_CHANNEL,
    floor_hour,
    iso_millis,
    ms_to_datetime,
    parse_iso_millis,
    run_record_name,
    snapshot_name,
    stream_line,
    stream_name,
)
from bitso_testkit.market import Market

BOOK = "btc_mxn"
HOUR = "2026-11-20T10:00:00.000Z"
ACK_MS = 150  # the first subscription is acknowledged this long after the hour starts
CUT_MS = 58_500  # each call cuts the stream this long after its minute
ANCHOR_SLOT_MS, REST_ANSWERS_MS = 5_000, 80
EXPORT_TARGET_S = 30.0
EXPORT_TARGET_MB = 512.0
DAYS_A_YEAR = 365
KNOWN_TARGET = 0.99


def _line(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _anchor(market: Market, slot_ms: int) -> dict[str, Any]:
    book = market.order_book(aggregate=False)
    return {
        "schema_version": 1,
        "book": BOOK,
        "slot": iso_millis(slot_ms),
        "requested_at": iso_millis(slot_ms + 1),
        "received_at": iso_millis(slot_ms + REST_ANSWERS_MS),
        "latency_ms": float(REST_ANSWERS_MS - 1),
        "sequence": int(book["sequence"]),
        "updated_at": book["updated_at"],
        "aggregate": False,
        "bids": [{k: v for k, v in o.items() if k != "book"} for o in book["bids"]],
        "asks": [{k: v for k, v in o.items() if k != "book"} for o in book["asks"]],
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_hour(root: Path, diffs: int, orders: int, seed: int = 17) -> tuple[int, int, int]:
    """The book-hour as the continuous collector stores it, and the first cut of the next
    hour (it holds the hour's last 1.5 s); (diffs and trades received in the hour, anchors)."""
    hour_ms = parse_iso_millis(HOUR)
    market = Market(BOOK, seed, start_ms=hour_ms - 1000, depth=orders)
    rng = random.Random(seed)
    step_ms = HOUR_MS / diffs
    previous_cut = hour_ms + ACK_MS
    received_ms = index = stored = traded = anchors = 0
    arrival: int | None = None  # of the next change (drawn once: it may wait for the next cut)
    for minute in range(61):
        minute_ms = hour_ms + minute * MINUTE_MS
        cut_ms = minute_ms + CUT_MS
        slot_ms = minute_ms + ANCHOR_SLOT_MS
        anchor_due = minute % DEFAULT_ANCHOR_EVERY_MINUTES == 0
        anchored: list[datetime] = []  # the slot_uses of the run record
        held: dict[tuple[str, int], list[bytes]] = {}
        while True:
            at_ms = hour_ms + int(index * step_ms)
            if arrival is None:  # the socket delivers in order, a few milliseconds later
                arrival = max(received_ms, at_ms + rng.choice((2, 3, 5, 9)))
            if arrival > cut_ms:
                break
            if anchor_due and at_ms >= slot_ms + 40:
                _write(root / snapshot_name("", BOOK, slot_ms), _line(_anchor(market, slot_ms)))
                anchor_due = False
                anchored.append(ms_to_datetime(slot_ms))
            change = market.step(at_ms)
            index += 1
            received_ms, arrival = arrival, None
            if received_ms <= previous_cut:
                continue  # before the subscription was acknowledged
            received_hour = floor_hour(received_ms)
            in_hour = received_hour == hour_ms
            trades = change.trades_message()
            messages = [(DIFF_ORDERS_CHANNEL, change.diff_message())]
            if trades is not None:
                messages.insert(0, (TRADES_CHANNEL, trades))  # Bitso sends the trade first
            for channel, message in messages:
                lines = held.setdefault((channel, received_hour), [])
                lines.append(_line(stream_line(received_ms, message)))
            stored += in_hour
            traded += in_hour and trades is not None
        objects: dict[str, list[str]] = {TRADES_CHANNEL: [], DIFF_ORDERS_CHANNEL: []}
        for (channel, object_hour), lines in sorted(held.items()):
            name = stream_name("", channel, BOOK, object_hour, minute_ms)
            _write(root / name, gzip.compress(b"".join(lines), compresslevel=6, mtime=0))
            objects[channel].append(name)
        anchors += len(anchored)
        record = run_record(
            ms_to_datetime(minute_ms),
            ms_to_datetime(cut_ms),
            ms_to_datetime(previous_cut),
            objects,
            anchored,
        )
        _write(root / run_record_name("", minute_ms), _line(record))
        previous_cut = cut_ms
    return stored, traded, anchors


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def zstd_bytes(objects: list[Path], scratch: Path) -> int | None:
    """zstd -19 of the objects' NDJSON, one stream per channel; None without a zstd command."""
    zstd = shutil.which("zstd")
    if zstd is None:
        return None
    total = 0
    for channel in ("diff-orders", "trades"):
        raw = scratch / f"{channel}.ndjson"
        raw.write_bytes(
            b"".join(gzip.decompress(p.read_bytes()) for p in objects if channel in str(p))
        )
        subprocess.run([zstd, "-19", "-q", "-f", str(raw), "-o", f"{raw}.zst"], check=True)
        total += Path(f"{raw}.zst").stat().st_size
    return total


def known_share(tables: Path) -> float:
    """The share of the hour ``coverage`` says the book was known: the archive is read whole,
    or the measures above are of a broken one."""
    import duckdb

    files = f"{tables}/coverage/*/*/*/*/*/*.parquet"
    ((known, total),) = duckdb.sql(
        'SELECT sum(epoch_ms("end") - epoch_ms(start)) FILTER (WHERE known), '
        'sum(epoch_ms("end") - epoch_ms(start)) '
        f"FROM read_parquet('{files}')"
    ).fetchall()
    return float(known or 0) / float(total)


def year_of_snapshots(tables: Path, scratch: Path) -> tuple[float, int, int]:
    """One day of book_snapshots (the hour's file in 24 hour partitions) queried for the daily
    spread in DuckDB: (seconds, best of 3; bytes of the day; rows of the day)."""
    import duckdb

    (hour_file,) = (tables / "book_snapshots").rglob("*.parquet")
    day = scratch / "day"
    for hour in range(24):
        folder = day / f"book_snapshots/book={BOOK}/year=2026/month=11/day=20/hour={hour:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(hour_file, folder / f"{BOOK}_20261120T{hour:02d}.parquet")
    query = f"""
        WITH top AS (
            SELECT hour, timestamp,
                   max(price) FILTER (WHERE side = 'ask') - max(price) FILTER (WHERE side = 'bid')
                       AS spread
            FROM read_parquet('{day}/book_snapshots/*/*/*/*/*/*.parquet', hive_partitioning = true)
            WHERE book = '{BOOK}' AND level = 0
            GROUP BY hour, timestamp
        )
        SELECT date_trunc('day', timestamp) AS day, avg(spread) AS spread, count(*) AS instants
        FROM top GROUP BY day
    """
    timings = []
    rows = 0
    for _ in range(3):
        con = duckdb.connect()
        started = time.perf_counter()
        result = con.sql(query).to_arrow_table().to_pylist()
        timings.append(time.perf_counter() - started)
        rows = sum(r["instants"] for r in result)
        con.close()
    files = list((day / "book_snapshots").rglob("*.parquet"))
    return min(timings), _size(files), rows


def rows_for(root: Path, scratch: Path, diffs: int, orders: int) -> tuple[list[str], bool]:
    rows: list[str] = []
    archive = root / "archive"
    started = time.perf_counter()
    stored, traded, anchors = write_hour(archive, diffs, orders)
    rows.append(
        f"| write the book-hour (setup): {stored:,} diffs, {traded:,} trades, {orders:,} "
        f"orders, {anchors} anchors | {time.perf_counter() - started:.1f} s | |"
    )
    end = iso_millis(parse_iso_millis(HOUR) + 60 * MINUTE_MS)
    tables = root / "tables"
    exported = run_cli(
        "export", str(archive), "--start", HOUR, "--end", end, "--out", str(tables), "-q"
    )
    export_ok = exported.wall < EXPORT_TARGET_S and exported.peak_mb < EXPORT_TARGET_MB
    rows.append(
        f"| `export` one book-hour, all tables, process | {exported.wall:.1f} s wall "
        f"({exported.cpu:.1f} s CPU), {exported.peak_mb:.0f} MB peak | "
        f"< {EXPORT_TARGET_S:.0f} s, < {EXPORT_TARGET_MB:.0f} MB "
        f"{'ok' if export_ok else 'MISSED'} |"
    )
    for table in ("trades", "book_changes", "book_snapshots", "quotes", "coverage"):
        files = list((tables / table).rglob("*.parquet"))
        rows.append(f"| of which `{table}` | {_size(files):,} bytes | |")
    known = known_share(tables)
    known_ok = known >= KNOWN_TARGET
    rows.append(
        f"| the hour known (`coverage`; the rest is before the first anchor) | {known:.2%} | "
        f">= {KNOWN_TARGET:.0%} {'ok' if known_ok else 'MISSED'} |"
    )

    compacted = run_cli("compact", str(archive), "--start", HOUR, "--end", end, "-q")
    rows.append(
        f"| `compact` the same hour (levels and tables), process: what sizes compact_hour "
        f"| {compacted.wall:.1f} s wall ({compacted.cpu:.1f} s CPU), "
        f"{compacted.peak_mb:.0f} MB peak | |"
    )

    # The objects of the hour's folder (the first cut of the next hour holds its last 1.5 s:
    # a few kilobytes left out).
    hour_folder = HOUR[:13].replace("-", "/").replace("T", "/")
    objects = sorted(archive.glob(f"diff-orders/{hour_folder}/*.ndjson.gz")) + sorted(
        archive.glob(f"trades/{hour_folder}/*.ndjson.gz")
    )
    raw = _size(objects)
    ours = _size(
        list((tables / "book_changes").rglob("*.parquet"))
        + list((tables / "trades").rglob("*.parquet"))
    )
    zstd = zstd_bytes(objects, root)
    bytes_ok = ours < raw and (zstd is None or ours < zstd)
    rows.append(f"| raw stream objects of the hour (gzip) | {raw:,} bytes | |")
    rows.append(
        f"| zstd -19 of them (one stream per channel) | "
        f"{'zstd not found' if zstd is None else f'{zstd:,} bytes'} | |"
    )
    versus = f"{raw / ours:.2f}x smaller than gzip" + (
        f", {zstd / ours:.2f}x smaller than zstd -19" if zstd else ""
    )
    rows.append(
        f"| `book_changes` + `trades` | {ours:,} bytes ({versus}) | smaller than both "
        f"{'ok' if bytes_ok else 'MISSED'} |"
    )

    seconds, day_bytes, instants = year_of_snapshots(tables, root)
    rows.append(
        f"| daily spread from one day of `book_snapshots` in DuckDB ({instants:,} instants, "
        f"{day_bytes / 1e6:.1f} MB; best of 3) | {seconds:.2f} s | |"
    )
    rows.append(
        f"| the same for a year, extrapolated (x{DAYS_A_YEAR}) | {seconds * DAYS_A_YEAR:.0f} s, "
        f"{day_bytes * DAYS_A_YEAR / 1e9:.1f} GB | |"
    )
    return rows, export_ok and bytes_ok and known_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffs", type=int, default=200_000, help="diffs stored in the hour")
    parser.add_argument("--orders", type=int, default=5_000, help="resting orders in the book")
    parser.add_argument("--keep", type=Path, default=None, help="write the archive here")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="datasets-bench-"))
    try:
        print(
            f"Datasets benchmark: Python {platform.python_version()}, {os.cpu_count()} cores "
            "(a shared machine gives provisional numbers).\n"
        )
        print("| measure | value | target |")
        print("|---|---|---|")
        rows, ok = rows_for(root, root, args.diffs, args.orders)
        print("\n".join(rows))
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
