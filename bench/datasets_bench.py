"""Benchmark the research tables (``export``, ``compact``; docs/datasets.md).

Writes one book-hour as the collector records it: btc_mxn's order-level market
(bitso_testkit.market, 5,000 resting orders) changing 200,000 times while the socket is live
(0.15 s to 58 s of every minute), each minute anchored at its 5 s slot, every diff and every
trade stored in the minute's gzip objects. Then:

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
from pathlib import Path
from typing import Any

from archive_bench import run_cli

from bitso_format import (
    MINUTE_MS,
    iso_millis,
    parse_iso_millis,
    snapshot_name,
    stream_line,
    stream_name,
)
from bitso_testkit.market import Market

BOOK = "btc_mxn"
HOUR = "2026-11-20T10:00:00.000Z"
LIVE_FROM_MS, LIVE_TO_MS = 150, 58_000  # the socket of each call (it closes 2 s early)
ANCHOR_SLOT_MS, REST_ANSWERS_MS = 5_000, 80
EXPORT_TARGET_S = 30.0
EXPORT_TARGET_MB = 512.0
DAYS_A_YEAR = 365


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


def write_hour(root: Path, diffs: int, orders: int, seed: int = 17) -> tuple[int, int]:
    """The book-hour as the collector stores it; (diffs stored, trades stored)."""
    hour_ms = parse_iso_millis(HOUR)
    market = Market(BOOK, seed, start_ms=hour_ms - 1000, depth=orders)
    live_ms = LIVE_TO_MS - LIVE_FROM_MS
    per_minute = diffs / 60 * MINUTE_MS / live_ms  # changes made, live or not
    rng = random.Random(seed)
    stored = traded = 0
    for minute in range(60):
        minute_ms = hour_ms + minute * MINUTE_MS
        diff_lines: list[bytes] = []
        trade_lines: list[bytes] = []
        anchored = False
        count = int(per_minute * (minute + 1)) - int(per_minute * minute)
        for index in range(count):
            at_ms = minute_ms + index * MINUTE_MS // count
            if not anchored and at_ms >= minute_ms + ANCHOR_SLOT_MS + 40:
                anchor = _anchor(market, minute_ms + ANCHOR_SLOT_MS)
                path = root / snapshot_name("", BOOK, minute_ms + ANCHOR_SLOT_MS)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_line(anchor))
                anchored = True
            change = market.step(at_ms)
            if not LIVE_FROM_MS <= at_ms - minute_ms < LIVE_TO_MS:
                continue
            received_ms = at_ms + rng.choice((2, 3, 5, 9))
            trades = change.trades_message()
            if trades is not None:
                trade_lines.append(_line(stream_line(received_ms, trades)))
                traded += 1
            diff_lines.append(_line(stream_line(received_ms, change.diff_message())))
        for channel, lines in (("diff-orders", diff_lines), ("trades", trade_lines)):
            path = root / stream_name("", channel, BOOK, minute_ms)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(b"".join(lines), compresslevel=6, mtime=0))
        stored += len(diff_lines)
    return stored, traded


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
    stored, traded = write_hour(archive, diffs, orders)
    rows.append(
        f"| write the book-hour (setup): {stored:,} diffs, {traded:,} trades, {orders:,} "
        f"orders, 60 anchors | {time.perf_counter() - started:.1f} s | |"
    )
    end = iso_millis(parse_iso_millis(HOUR) + 60 * MINUTE_MS)
    tables = root / "tables"
    wall, peak, _out = run_cli(
        "export", str(archive), "--start", HOUR, "--end", end, "--out", str(tables), "-q"
    )
    export_ok = wall < EXPORT_TARGET_S and peak < EXPORT_TARGET_MB
    rows.append(
        f"| `export` one book-hour, all tables, process | {wall:.1f} s, {peak:.0f} MB peak | "
        f"< {EXPORT_TARGET_S:.0f} s, < {EXPORT_TARGET_MB:.0f} MB "
        f"{'ok' if export_ok else 'MISSED'} |"
    )
    for table in ("trades", "book_changes", "book_snapshots", "quotes", "coverage"):
        files = list((tables / table).rglob("*.parquet"))
        rows.append(f"| of which `{table}` | {_size(files):,} bytes | |")

    wall, peak, _out = run_cli("compact", str(archive), "--start", HOUR, "--end", end, "-q")
    rows.append(
        f"| `compact` the same hour (levels and tables), process: what sizes compact_hour "
        f"| {wall:.1f} s, {peak:.0f} MB peak | |"
    )

    objects = sorted(archive.glob("diff-orders/**/*.ndjson.gz")) + sorted(
        archive.glob("trades/**/*.ndjson.gz")
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
    return rows, export_ok and bytes_ok


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
