"""Benchmark the archive reader: snapshots (load, compact) and streams (book, replay).

Snapshots: writes one hour of one book (btc_mxn at 59 requests a minute: 3,540
aggregated snapshots, 50 levels a side) to a temporary directory, as the collector
writes it, then:

- times ``load_levels`` of that hour (best of 3), target under 2 s;
- compacts the hour and compares the JSON bytes with the Parquet bytes, target
  Parquet at least 10x smaller.

The book evolves like a real one: every snapshot a few levels change amount, a
level now and then appears or goes, and the mid drifts, so consecutive snapshots
share most of their levels.

Streams: writes, as the collector writes them, an order-level book of about 5,000 orders (a
full btc_mxn book is 500-650 KB) that changes through 61 minutes of diff-orders at 60 a
second (10x the expected rate of one book), recorded continuously by one instance that cuts
the stream at the end of every call; then, for anchors every 5, 10, 15, 30 and 60 minutes
(the same diffs, each interval its own anchors and run records), runs the real command line
as a process (start-up included) and measures wall and CPU time and peak memory:

- ``book --at`` at the worst instant, just before an anchor (the latest is a whole interval
  back), best of 3, target under 1.5 s at the interval chosen (CHOSEN_ANCHOR_MINUTES): the
  collector's ``ANCHOR_EVERY_MINUTES`` is chosen from this table;
- ``replay`` of one book-hour (216,000 diffs) every 1 s, depth 10, target under 10 s;
- the peak memory of ``replay`` over 10 minutes and over the hour: bounded by one anchor's
  book and a minute or two of diffs, not by the range.

Prints Markdown tables; exits 1 if a target is missed.

    python bench/archive_bench.py [--part all|snapshots|streams] [--snapshots 3540]
        [--levels 50] [--keep DIR]
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple, TypeVar

from bitso_archive.compact import compact_hour
from bitso_archive.loader import load_levels, top_of_book

T = TypeVar("T")
BOOK = "btc_mxn"
HOUR = datetime(2026, 11, 20, 10, tzinfo=UTC)
LOAD_TARGET_S = 2.0
RATIO_TARGET = 10.0
BOOK_AT_TARGET_S = 1.5
REPLAY_TARGET_S = 10.0
#: 10x the expected rate of one book (about 6 diffs/s).
DIFFS_PER_SECOND = 60
#: `book --at` is timed at the worst instant for anchors every N minutes ...
ANCHOR_INTERVALS = [5, 10, 15, 30, 60]
#: ... and must meet its target at this one (replay runs on it too).
CHOSEN_ANCHOR_MINUTES = 10


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


class OrderLevelBook:
    """A btc_mxn book of individual orders, changed one diff-orders message at a time."""

    def __init__(self, rng: random.Random, orders: int) -> None:
        self.rng = rng
        self.mid = 174_523_050  # cents
        self.sequence = 18_805_917
        self.orders: dict[str, tuple[int, int, int]] = {}  # oid -> (side, cents, satoshis)
        self.size = orders  # the book stays near this many orders
        self._ids: list[str] = []  # the order ids, to pick one at random in O(1)
        self._where: dict[str, int] = {}
        self._next = 0
        while len(self.orders) < orders:
            self._open_new()

    def _open_new(self) -> tuple[str, tuple[int, int, int]]:
        self._next += 1
        side = self.rng.randint(0, 1)
        distance = int(self.rng.expovariate(1 / 40_000)) + 500
        price = self.mid - distance if side == 0 else self.mid + distance
        order = (side, price - price % 50, self.rng.randint(10_000, 50_000_000))
        oid = f"{self._next:012d}"
        self.orders[oid] = order
        self._where[oid] = len(self._ids)
        self._ids.append(oid)
        return oid, order

    def _remove(self, oid: str) -> None:
        del self.orders[oid]
        index = self._where.pop(oid)
        last = self._ids.pop()
        if last != oid:
            self._ids[index] = last
            self._where[last] = index

    def _any(self) -> str:
        return self._ids[self.rng.randrange(len(self._ids))]

    def change(self, at_ms: int) -> dict[str, object]:
        """The next diff-orders message (the book changes with it)."""
        self.sequence += 1
        roll = self.rng.random()
        if roll < 0.45 * self.size / len(self.orders):  # new orders balance removals
            oid, (side, price, amount) = self._open_new()
            status = "open"
        else:
            roll = self.rng.random()
            oid = self._any() if roll < 0.05 else self._near_top()
            side, price, amount = self.orders[oid]
            if roll < 0.55:
                status = "cancelled"
                self._remove(oid)
            elif roll < 0.85 and amount > 20_000:
                amount = self.rng.randint(10_000, amount - 1)
                self.orders[oid] = (side, price, amount)
                status = "open"
            else:
                status = "completed"
                self._remove(oid)
        entry: dict[str, object] = {"o": oid, "d": at_ms - 5_000, "r": _cents(price), "t": side}
        if status != "cancelled":
            entry["a"] = _sats(amount if status == "open" else 0)
            entry["v"] = _cents(price * amount // 10**8)
        entry["s"] = status
        return {"type": "diff-orders", "book": BOOK, "sequence": self.sequence, "payload": [entry]}

    def _near_top(self) -> str:
        # Most changes happen near the best prices; sample a few and keep the closest.
        picks = [self._any() for _ in range(3)]
        return min(picks, key=lambda oid: abs(self.orders[oid][1] - self.mid))

    def anchor(self, slot: datetime) -> dict[str, object]:
        by_price = sorted(self.orders.items(), key=lambda item: item[1][1])
        bids = [_order(oid, o) for oid, o in reversed(by_price) if o[0] == 0]
        asks = [_order(oid, o) for oid, o in by_price if o[0] == 1]
        received = slot + timedelta(milliseconds=180)
        return {
            "schema_version": 1,
            "book": BOOK,
            "slot": _iso(slot),
            "requested_at": _iso(slot + timedelta(milliseconds=1)),
            "received_at": _iso(received),
            "latency_ms": 179.0,
            "sequence": self.sequence,
            "updated_at": slot.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "aggregate": False,
            "bids": bids,
            "asks": asks,
        }


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def _sats(value: int) -> str:
    return f"{value // 10**8}.{value % 10**8:08d}"


def _order(oid: str, order: tuple[int, int, int]) -> dict[str, str]:
    return {"price": _cents(order[1]), "amount": _sats(order[2]), "oid": oid}


def _line(obj: object) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def run_record(
    minute: datetime,
    cut: datetime,
    covers_from: datetime,
    objects: dict[str, list[str]],
    anchors: list[datetime],
) -> dict[str, object]:
    """A run record with what the reader uses: the cut's cover of each channel (its objects
    by channel) and the anchor slots."""

    def channel(names: list[str]) -> dict[str, object]:
        return {
            "messages": 0,
            "first_sequence": None,
            "last_sequence": None,
            "sequence_gaps": [],
            "reconnects": 0,
            "uncovered_ms": 0,
            "backfilled": 0,
            "objects": names,
            "covers": {"from": _iso(covers_from), "to": _iso(cut)},
            "first_received": None,
            "last_received": None,
            "continuous": True,
            "unwatched": [],
        }

    return {
        "schema_version": 1,
        "minute": minute.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "books": [BOOK],
        "requests_per_minute": 59,
        "status": "ok",
        "streams": {
            "instance": "0badcafe",
            "instance_started_at": _iso(HOUR - timedelta(seconds=1)),
            "cut_at": _iso(cut),
            "frozen": [],
            "channels": list(objects),
            "connections": 1,
            "failed_connects": 0,
            "keepalives": 12,
            "ignored": 0,
            "disconnects": [],
            "unacknowledged": [],
            "books": {BOOK: {name: channel(names) for name, names in objects.items()}},
            "lost": [],
        },
        "slot_uses": [{"book": BOOK, "slot": _iso(a), "use": "anchor"} for a in anchors],
    }


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_stream(
    root: Path, minutes: int, diffs_per_second: int, anchor_every: list[int], seed: int = 11
) -> tuple[int, dict[int, Path]]:
    """``minutes`` minutes from HOUR as one instance records them: the socket held across
    calls, each call cutting it at M + 58.5 s (its objects hold every diff received since the
    previous cut, one per hour of receipt). The diffs are written once, under ``root/diffs``;
    each interval N of ``anchor_every`` gets its own archive ``root/every-N``: hard links to
    those diffs, an anchor (``aggregate=false``, 5,000 orders) at the 5 s slot of every N-th
    minute, and run records naming the cut and the anchor slots. Returns the diffs written and
    the archives by interval."""
    rng = random.Random(seed)
    book = OrderLevelBook(rng, 5_000)
    base = root / "diffs"
    anchors: dict[int, bytes] = {}  # minute number -> the anchor taken at its 5 s slot
    cuts: list[tuple[datetime, datetime, datetime, list[str]]] = []
    step = 1000 / diffs_per_second
    total = minutes * 60 * diffs_per_second
    previous_cut = HOUR + timedelta(milliseconds=150)  # the first subscription's ack
    written = 0
    index = 0
    for k in range(minutes):
        minute = HOUR + timedelta(minutes=k)
        cut = minute + timedelta(milliseconds=58_500)
        slot = minute + timedelta(seconds=5)
        names: list[str] = []
        held: dict[str, list[bytes]] = {}
        while index < total:
            at = HOUR + timedelta(milliseconds=int(index * step))
            received = at + timedelta(milliseconds=3)
            if received > cut:
                break
            if k not in anchors and at >= slot + timedelta(milliseconds=40):
                anchors[k] = _line(book.anchor(slot))
            message = book.change(int(at.timestamp() * 1000))
            if received > previous_cut:
                name = f"diff-orders/{received:%Y/%m/%d/%H}/{BOOK}_{minute:%Y%m%dT%H%M}Z.ndjson.gz"
                held.setdefault(name, []).append(
                    _line({"received_at": _iso(received), "message": message})
                )
                written += 1
            index += 1
        for name, chunk in held.items():
            _write(base / name, gzip.compress(b"".join(chunk), compresslevel=6))
            names.append(name)
        cuts.append((minute, cut, previous_cut, names))
        previous_cut = cut
    archives: dict[int, Path] = {}
    for every in anchor_every:
        target = root / f"every-{every}"
        for path in base.rglob("*.ndjson.gz"):
            link = target / path.relative_to(base)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, link)
        for k, (minute, cut, covers_from, names) in enumerate(cuts):
            slots = []
            if k % every == 0 and k in anchors:
                slot = minute + timedelta(seconds=5)
                slots.append(slot)
                name = f"{BOOK}_{slot:%Y%m%dT%H%M%S}.000Z.json"
                _write(target / f"{slot:%Y/%m/%d/%H}" / name, anchors[k])
            record = run_record(minute, cut, covers_from, {"diff-orders": names}, slots)
            _write(target / f"_runs/{minute:%Y/%m/%d/%H}/{minute:%Y%m%dT%H%M}Z.json", _line(record))
        archives[every] = target
    return written, archives


# Linux carries a process's peak RSS across fork and exec, so a command started by this
# (large) process would report at least this process's peak. A small launcher starts it
# instead and reports that command's own wall and CPU time, peak RSS (KiB) and exit status.
_LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_pid, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump([wall, cpu, usage.ru_maxrss, os.waitstatus_to_exitcode(status)], out)
"""


class Run(NamedTuple):
    """One command run as a process: wall and CPU seconds, peak RSS (MB), its stdout."""

    wall: float
    cpu: float
    peak_mb: float
    out: str


def run_cli(*args: str) -> Run:
    """Run ``python -m bitso_archive ARGS`` as a process (CPU time is steadier than wall time
    on a shared machine)."""
    with tempfile.TemporaryDirectory() as scratch:
        stats = Path(scratch) / "stats.json"
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                str(stats),
                sys.executable,
                "-m",
                "bitso_archive",
                *args,
            ],
            capture_output=True,
            check=False,
            text=True,
        )
        wall, cpu, peak_kib, status = json.loads(stats.read_text())
    if status != 0 or done.returncode != 0:
        raise RuntimeError(f"bitso_archive {args[0]} failed: {done.stderr}")
    return Run(wall, cpu, peak_kib / 1024, done.stdout)


def stream_rows(root: Path) -> tuple[list[str], bool]:
    """Write the stream archives, time book --at by anchor interval and replay; table rows and
    whether the targets were met."""
    rows: list[str] = []
    t0 = time.perf_counter()
    diffs, archives = write_stream(root, 61, DIFFS_PER_SECOND, ANCHOR_INTERVALS)
    rows.append(
        f"| write the stream archives (setup: 61 minutes at {DIFFS_PER_SECOND} diffs/s, "
        f"{diffs:,} diffs, cut every minute) | {time.perf_counter() - t0:.1f} s | |"
    )
    # The worst instant: just before the anchor of 11:00:05, the latest is N minutes older.
    at = _iso(HOUR + timedelta(minutes=60, seconds=5, milliseconds=179))
    book_ok = True
    for every in ANCHOR_INTERVALS:
        timings = [
            run_cli("book", str(archives[every]), "--book", BOOK, "--at", at, "--json")
            for _ in range(3)
        ]
        best = min(timings)
        levels = json.loads(best.out)
        assert len(levels["bids"]) == len(levels["asks"]) == 50
        within = best.wall < BOOK_AT_TARGET_S
        if every == CHOSEN_ANCHOR_MINUTES:
            book_ok = within
        walked = every * 60 * DIFFS_PER_SECOND
        rows.append(
            f"| `book --at` at the worst instant, anchors every {every} min ({walked:,} diffs "
            f"since the anchor), process (best of 3) | {best.wall:.2f} s ({best.cpu:.2f} s CPU), "
            f"{best.peak_mb:.0f} MB peak | "
            f"< {BOOK_AT_TARGET_S} s {'ok' if within else 'over'} |"
        )
    startup = min(run_cli("book", "--help") for _ in range(3))
    rows.append(
        f"| of which start-up (`book --help`) | {startup.wall:.2f} s ({startup.cpu:.2f} s CPU) | |"
    )

    hour = archives[CHOSEN_ANCHOR_MINUTES]
    out_file = root / "replay.parquet"
    end = _iso(HOUR + timedelta(hours=1))
    hour_run = run_cli(
        "replay",
        str(hour),
        "--book",
        BOOK,
        "--start",
        _iso(HOUR),
        "--end",
        end,
        "--every",
        "1s",
        "--depth",
        "10",
        "--out",
        str(out_file),
        "-q",
    )
    replay_ok = hour_run.wall < REPLAY_TARGET_S
    rows.append(
        f"| `replay` one book-hour, {60 * 60 * DIFFS_PER_SECOND:,} diffs, every 1 s, depth 10, "
        f"to Parquet, process | {hour_run.wall:.2f} s ({hour_run.cpu:.2f} s CPU), "
        f"{hour_run.peak_mb:.0f} MB peak | "
        f"< {REPLAY_TARGET_S:.0f} s {'ok' if replay_ok else 'MISSED'} |"
    )
    ten = _iso(HOUR + timedelta(minutes=10))
    ten_run = run_cli(
        "replay",
        str(hour),
        "--book",
        BOOK,
        "--start",
        _iso(HOUR),
        "--end",
        ten,
        "--every",
        "1s",
        "--depth",
        "10",
        "--out",
        str(root / "ten.parquet"),
        "-q",
    )
    rows.append(
        f"| peak memory of `replay`: 10 minutes vs 60 minutes | {ten_run.peak_mb:.0f} MB vs "
        f"{hour_run.peak_mb:.0f} MB | bounded, not by the range |"
    )
    return rows, book_ok and replay_ok


def snapshot_rows(root: Path, snapshots: int, levels_a_side: int) -> tuple[list[str], bool]:
    t0 = time.perf_counter()
    json_bytes = write_hour(root, snapshots, levels_a_side)
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
    assert rows == out.rows == snapshots * 2 * levels_a_side, (rows, out.rows)
    assert top.height == snapshots

    load_ok = load_s < LOAD_TARGET_S
    ratio_ok = ratio >= RATIO_TARGET
    return [
        f"| write the hour of JSON (setup, {snapshots:,} snapshots, {levels_a_side} levels a "
        f"side, {rows:,} level rows) | {write_s:.2f} s | |",
        f"| `load_levels`, one book-hour (best of 3) | {load_s:.2f} s | "
        f"< {LOAD_TARGET_S:.0f} s {'ok' if load_ok else 'MISSED'} |",
        f"| `top_of_book`, one book-hour (best of 3) | {top_s:.2f} s | |",
        f"| `compact`, one book-hour | {compact_s:.2f} s | |",
        f"| JSON bytes | {json_bytes:,} | |",
        f"| Parquet bytes (zstd) | {parquet_bytes:,} | |",
        f"| JSON / Parquet | {ratio:.1f}x | >= {RATIO_TARGET:.0f}x "
        f"{'ok' if ratio_ok else 'MISSED'} |",
    ], load_ok and ratio_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "snapshots", "streams"), default="all")
    parser.add_argument("--snapshots", type=int, default=3540, help="snapshots in the hour")
    parser.add_argument("--levels", type=int, default=50, help="levels a side")
    parser.add_argument("--keep", type=Path, default=None, help="write the archives here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="archive-bench-"))
    try:
        print(
            f"Archive benchmark: Python {platform.python_version()}, {os.cpu_count()} cores "
            "(a shared machine gives provisional numbers).\n"
        )
        print("| measure | value | target |")
        print("|---|---|---|")
        ok = True
        if args.part in ("all", "snapshots"):
            rows, met = snapshot_rows(root / "snapshots", args.snapshots, args.levels)
            print("\n".join(rows))
            ok = ok and met
        if args.part in ("all", "streams"):
            rows, met = stream_rows(root)
            print("\n".join(rows))
            ok = ok and met
        return 0 if ok else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
