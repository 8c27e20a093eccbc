"""Benchmark the archive reader: load one book-hour, and JSON vs Parquet bytes.

Writes one hour of one book (btc_mxn at 59 requests a minute: 3,540 aggregated
snapshots, 50 levels a side) to a temporary directory, as the collector writes
it, then:

- times ``load_levels`` of that hour (best of 3), target under 2 s;
- compacts the hour and compares the JSON bytes with the Parquet bytes, target
  Parquet at least 10x smaller.

The book evolves like a real one: every snapshot a few levels change amount, a
level now and then appears or goes, and the mid drifts, so consecutive snapshots
share most of their levels. Prints a Markdown table; exits 1 if a target is missed.

    python bench/archive_bench.py [--snapshots 3540] [--levels 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from bitso_archive.compact import compact_hour
from bitso_archive.loader import load_levels, top_of_book

T = TypeVar("T")
BOOK = "btc_mxn"
HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
LOAD_TARGET_S = 2.0
RATIO_TARGET = 10.0


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class Book:
    """A random but realistic btc_mxn book: prices in cents, amounts in satoshis."""

    def __init__(self, rng: random.Random, levels: int) -> None:
        self.rng = rng
        self.levels = levels
        self.mid = 174_523_050  # 1,745,230.50 MXN in cents
        self.sequence = 18_805_917
        self.bids = self._side(-1)
        self.asks = self._side(+1)

    def _amount(self) -> int:
        return self.rng.choice([self.rng.randint(1_000, 2_000_000), self.rng.randint(10**6, 10**8)])

    def _side(self, sign: int) -> dict[int, int]:
        side: dict[int, int] = {}
        price = self.mid + sign * self.rng.randint(500, 3_000)
        while len(side) < self.levels:
            side[price] = self._amount()
            price += sign * self.rng.randint(1, 60) * 100
        return side

    def step(self) -> None:
        self.sequence += self.rng.randint(1, 40)
        for side in (self.bids, self.asks):
            for price in self.rng.sample(sorted(side), k=min(len(side), self.rng.randint(1, 6))):
                side[price] = self._amount()
        if self.rng.random() < 0.2:  # the mid drifts; levels near the top come and go
            self.mid += self.rng.randint(-3, 3) * 500
            best_ask = self.mid + self.rng.randint(500, 3_000)
            best_bid = self.mid - self.rng.randint(500, 3_000)
            self.asks = {p: a for p, a in self.asks.items() if p >= best_ask}
            self.bids = {p: a for p, a in self.bids.items() if p <= best_bid}
            self.asks.setdefault(best_ask, self._amount())
            self.bids.setdefault(best_bid, self._amount())
        for sign, side in ((-1, self.bids), (1, self.asks)):
            while len(side) < self.levels:
                edge = min(side) if sign < 0 else max(side)
                side[edge + sign * self.rng.randint(1, 60) * 100] = self._amount()
            while len(side) > self.levels:
                del side[min(side) if sign < 0 else max(side)]

    @staticmethod
    def _levels(side: dict[int, int], reverse: bool) -> list[dict[str, str]]:
        return [
            {"price": f"{p // 100}.{p % 100:02d}", "amount": f"{a // 10**8}.{a % 10**8:08d}"}
            for p, a in sorted(side.items(), reverse=reverse)
        ]

    def snapshot(self, slot: datetime, rng: random.Random) -> dict[str, object]:
        received = slot + timedelta(milliseconds=rng.randint(90, 400))
        return {
            "schema_version": 1,
            "book": BOOK,
            "slot": _iso(slot),
            "requested_at": _iso(slot + timedelta(milliseconds=1)),
            "received_at": _iso(received),
            "latency_ms": round(rng.uniform(90, 400), 1),
            "sequence": self.sequence,
            "updated_at": (slot - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "aggregate": True,
            "bids": self._levels(self.bids, reverse=True),
            "asks": self._levels(self.asks, reverse=False),
        }


def write_hour(root: Path, snapshots: int, levels: int, seed: int = 7) -> int:
    """Write ``snapshots`` evenly spread over the hour; return the JSON bytes written."""
    rng = random.Random(seed)
    book = Book(rng, levels)
    hour_dir = root / f"{HOUR:%Y/%m/%d/%H}"
    hour_dir.mkdir(parents=True)
    total = 0
    for i in range(snapshots):
        slot = HOUR + timedelta(milliseconds=i * 3_600_000 // snapshots)
        book.step()
        data = (
            json.dumps(book.snapshot(slot, rng), separators=(",", ":"), ensure_ascii=False) + "\n"
        ).encode()
        name = f"{BOOK}_{slot:%Y%m%dT%H%M%S}.{slot.microsecond // 1000:03d}Z.json"
        (hour_dir / name).write_bytes(data)
        total += len(data)
    return total


def best_of(runs: int, fn: Callable[[], T]) -> tuple[float, T]:
    timings: list[float] = []
    results: list[T] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        results.append(fn())
        timings.append(time.perf_counter() - t0)
    return min(timings), results[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=3540, help="snapshots in the hour")
    parser.add_argument("--levels", type=int, default=50, help="levels a side")
    parser.add_argument("--keep", type=Path, default=None, help="write the archive here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:
        t0 = time.perf_counter()
        json_bytes = write_hour(root, args.snapshots, args.levels)
        write_s = time.perf_counter() - t0
        start, end = HOUR, HOUR + timedelta(hours=1)

        load_s, levels = best_of(3, lambda: load_levels(root, start, end, [BOOK]))
        top_s, top = best_of(3, lambda: top_of_book(root, start, end, [BOOK]))
        t0 = time.perf_counter()
        result = compact_hour(root, start, [BOOK])
        compact_s = time.perf_counter() - t0
        (out,) = result.outputs
        parquet_bytes = out.bytes
        ratio = json_bytes / parquet_bytes
        rows = levels.height
        assert rows == out.rows == args.snapshots * 2 * args.levels, (rows, out.rows)
        assert top.height == args.snapshots

        load_ok = load_s < LOAD_TARGET_S
        ratio_ok = ratio >= RATIO_TARGET
        print(
            f"Archive benchmark: one book-hour, {args.snapshots:,} aggregated snapshots, "
            f"{args.levels} levels a side ({rows:,} level rows); Python "
            f"{platform.python_version()}, {os.cpu_count()} cores.\n"
        )
        print("| measure | value | target |")
        print("|---|---|---|")
        print(f"| write the hour of JSON (setup) | {write_s:.2f} s | |")
        print(
            f"| `load_levels`, one book-hour (best of 3) | {load_s:.2f} s | "
            f"< {LOAD_TARGET_S:.0f} s {'ok' if load_ok else 'MISSED'} |"
        )
        print(f"| `top_of_book`, one book-hour (best of 3) | {top_s:.2f} s | |")
        print(f"| `compact`, one book-hour | {compact_s:.2f} s | |")
        print(f"| JSON bytes | {json_bytes:,} | |")
        print(f"| Parquet bytes (zstd) | {parquet_bytes:,} | |")
        print(
            f"| JSON / Parquet | {ratio:.1f}x | >= {RATIO_TARGET:.0f}x "
            f"{'ok' if ratio_ok else 'MISSED'} |"
        )
        return 0 if load_ok and ratio_ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
