"""Benchmark the streams: how many WebSocket messages a second one call records with nothing lost
and no slot delayed.

The fake Bitso (REST and WebSocket on the same order-level markets, `python -m
bitso_testkit.fake_ws`) runs as a process of its own, pinned to one core; the collector runs one
real-time minute in a child process pinned to the other core (`taskset`), through the real
`runner.Collector` with STREAMS=trades,diff-orders, 10 books, REQUESTS_PER_MINUTE=59, the threaded
strategy and the local sink. The fake's markets make changes at the rate that gives the offered
messages a second (a fill is two messages, a trade and a diff) and stop 0.2 s before the call's
socket's close (`STREAMS_MARGIN_S` before the minute ends), so every message sent was due to be
stored.

Per row: messages stored a second (over the socket's 59.7 s), messages lost (sent by the fake
but not stored), sequence gaps and reconnects, the REST grid (request starts, throttling replies,
lateness of each start as the fake saw it against its slot), CPU seconds of the collector process
per 100,000 messages (REST slots included), its peak memory (VmHWM), and the stream objects'
gzipped bytes. Exits 1 when a target is missed.

    python bench/stream_bench.py [--rates 2000] [--books 10]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings
from bitso_collector.plan import STREAMS_MARGIN_S
from bitso_collector.runner import Collector
from bitso_collector.sinks import LocalSink
from bitso_collector.strategies import make_strategy
from bitso_format import MINUTE_MS, STREAM_CHANNELS, grid_minute
from bitso_logs import JsonLogger
from bitso_testkit.market import BOOKS as KNOWN_BOOKS
from bitso_testkit.market import Market
from bitso_testkit.processes import free_port

RPM = 59
#: The collector's clock reads this long before its minute when the child starts waiting.
START_AHEAD_S = 6.0
LEAD_S = 0.05
#: The fake's markets stop this long before the socket closes (nothing is in flight at the end).
QUIET_S = 0.2
TARGET_RATE = 2000.0
TARGET_P99_MS = 50.0
TARGET_PEAK_MB = 256.0


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One real-time minute of the collector, streams on; what it recorded and what it cost."""
    books = tuple(spec["books"])
    settings = Settings(
        books=books,
        api_url=spec["rest"],
        requests_per_minute=RPM,
        strategy="threaded",
        streams=STREAM_CHANNELS,
        ws_url=spec["ws"],
    )
    clock = ShiftedClock(spec["shift"])
    root = Path(spec["data_dir"])
    strategy = make_strategy("threaded", spec["rest"], None)
    collector = Collector(settings, LocalSink(root), strategy, clock, JsonLogger(io.StringIO()))
    minute = spec["minute"]
    clock.sleep_until(minute - LEAD_S)
    cpu_start = time.process_time()
    record = collector.run(CallOptions(schedule_time=minute)).to_json()
    cpu = time.process_time() - cpu_start
    strategy.close()
    stream_bytes = sum(
        path.stat().st_size for channel in STREAM_CHANNELS for path in root.glob(f"{channel}/**/*")
    )
    return {"record": record, "cpu_s": cpu, "peak_mb": peak_rss_mb(), "stream_bytes": stream_bytes}


def messages_per_change(samples: int = 5000) -> float:
    """Socket messages a market change makes on average (a fill makes two)."""
    market = Market("btc_mxn", seed=1)
    return sum(len(market.step(index).messages()) for index in range(samples)) / samples


@dataclass
class Row:
    books: int
    offered: float
    stored: int
    sent: int
    gaps: int
    reconnects: int
    unacknowledged: int
    requests_sent: int
    slots_planned: int
    throttled: int
    lateness_ms: list[float]
    #: The run record's own p99 (request start minus slot time, on the collector's clock).
    collector_p99_ms: float
    cpu_s: float
    peak_mb: float
    stream_bytes: int
    status: str

    @property
    def rate(self) -> float:
        """Messages stored a second while the market ran (the socket's minute, less the quiet
        end)."""
        return self.stored / (60 - STREAMS_MARGIN_S - QUIET_S)

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    @property
    def p50(self) -> float:
        return statistics.median(self.lateness_ms) if self.lateness_ms else math.nan

    @property
    def p99(self) -> float:
        values = self.lateness_ms
        if len(values) < 2:
            return values[0] if values else math.nan
        return statistics.quantiles(values, n=100, method="inclusive")[98]

    def misses(self) -> list[str]:
        missed = []
        if self.offered >= TARGET_RATE and self.rate < TARGET_RATE * 0.98:
            missed.append(f"{self.rate:.0f} messages/s stored < {TARGET_RATE:.0f}")
        if self.lost or self.gaps or self.reconnects or self.unacknowledged:
            missed.append(
                f"{self.lost} lost, {self.gaps} gaps, {self.reconnects} reconnects, "
                f"{self.unacknowledged} unacknowledged"
            )
        if self.requests_sent != self.slots_planned or self.throttled:
            missed.append(
                f"{self.requests_sent} of {self.slots_planned} slots started, "
                f"{self.throttled} throttled"
            )
        if not max(self.p99, self.collector_p99_ms) < TARGET_P99_MS:
            missed.append(f"p99 lateness {self.p99:.1f} ms >= {TARGET_P99_MS:.0f}")
        if self.peak_mb >= TARGET_PEAK_MB:
            missed.append(f"peak {self.peak_mb:.0f} MB >= {TARGET_PEAK_MB:.0f}")
        if self.status != "ok":
            missed.append(f"status {self.status}")
        return missed


def pinned(core: int, args: list[str]) -> list[str]:
    """`args` pinned to one core when `taskset` is there (two cores are needed for it)."""
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *args] if taskset else args


def lateness(entries: list[dict[str, Any]], shift: float, books: tuple[str, ...]) -> list[float]:
    """Milliseconds from each request's slot to when the fake saw it start."""
    out = []
    for entry in entries:
        moment = entry["at"] + shift
        minute = int(moment * 1000) // MINUTE_MS
        slot = [s for s in grid_minute(minute, RPM, books) if s.at <= moment][-1]
        out.append((moment - slot.at) * 1000)
    return out


def run_row(offered: float, books: tuple[str, ...], per_change: float) -> Row:
    now = time.time()
    minute = math.ceil(now / 60) * 60.0 + 60
    shift = minute - START_AHEAD_S - now  # the collector's minute starts in ~6 s
    rate = offered / len(books) / per_change
    rest_port, ws_port = free_port(), free_port()
    rest, ws_control = f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{ws_port}"
    fake_args = [
        sys.executable, "-m", "bitso_testkit.fake_ws", f"--books={','.join(books)}",
        f"--rate={rate:.3f}", "--latency=fast", f"--rest-port={rest_port}",
        f"--ws-port={ws_port}", f"--shift={shift:.6f}",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as data_dir:
        fake = subprocess.Popen(pinned(1, fake_args), stdout=subprocess.PIPE, text=True)
        try:
            assert fake.stdout is not None
            fake.stdout.readline()  # its URLs: it is listening
            spec = {
                "rest": rest,
                "ws": f"ws://127.0.0.1:{ws_port}/",
                "books": list(books),
                "data_dir": data_dir,
                "shift": shift,
                "minute": minute,
            }
            quiet_at = minute + 60 - STREAMS_MARGIN_S - QUIET_S - shift  # on this clock
            quiet = threading.Timer(
                quiet_at - time.time(),
                lambda: requests.post(f"{ws_control}/_control", json={"rate": 0}, timeout=5),
            )
            quiet.start()
            done = subprocess.run(
                pinned(0, [sys.executable, __file__, "--child", json.dumps(spec)]),
                capture_output=True,
                text=True,
                timeout=START_AHEAD_S + 90,
                check=False,
            )
            quiet.cancel()
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                raise SystemExit("the collector child failed")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            stats = requests.get(f"{ws_control}/_stats", timeout=5).json()
            entries = requests.get(f"{rest}/_requests", timeout=5).json()
        finally:
            fake.terminate()
            fake.wait(timeout=10)
    record = result["record"]
    streams = record["streams"]
    channels = [c for b in streams["books"].values() for c in b.values()]
    return Row(
        books=len(books),
        offered=offered,
        stored=sum(c["messages"] for c in channels),
        sent=stats["messages"],
        gaps=sum(len(c["sequence_gaps"]) for c in channels),
        reconnects=len(streams["disconnects"]),
        unacknowledged=len(streams["unacknowledged"]),
        requests_sent=record["requests_sent"],
        slots_planned=record["slots_planned"],
        throttled=sum(entry["status"] in (420, 429) for entry in entries),
        lateness_ms=lateness(entries, shift, books),
        collector_p99_ms=record["lateness_ms"]["p99"],
        cpu_s=result["cpu_s"],
        peak_mb=result["peak_mb"],
        stream_bytes=result["stream_bytes"],
        status=record["status"],
    )


def table(rows: list[Row]) -> str:
    lines = [
        "| books | offered msg/s | stored msg/s | lost | gaps | reconnects | REST starts / slots "
        "| throttled | lateness p50 / p99 at the fake (ms) | p99 at the collector (ms) "
        "| CPU s / 100k msgs | CPU of one core "
        "| peak memory (MB) | stream objects (gzip) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.books} | {row.offered:,.0f} | {row.rate:,.0f} | {row.lost} | {row.gaps} "
            f"| {row.reconnects} | {row.requests_sent} / {row.slots_planned} | {row.throttled} "
            f"| {row.p50:.1f} / {row.p99:.1f} | {row.collector_p99_ms:.1f} "
            f"| {row.cpu_s / row.stored * 100_000:.1f} "
            f"| {row.cpu_s / 60:.0%} | {row.peak_mb:.0f} | {row.stream_bytes / 1e6:.1f} MB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=f"{TARGET_RATE:.0f}", help="offered messages a second")
    parser.add_argument("--books", type=int, default=10, help=f"at most {len(KNOWN_BOOKS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    books = tuple(list(KNOWN_BOOKS)[: args.books])
    per_change = messages_per_change()
    rows = []
    for offered in (float(rate) for rate in args.rates.split(",")):
        print(f"streams: {offered:,.0f} messages/s across {len(books)} books ...", flush=True)
        rows.append(run_row(offered, books, per_change))
    print()
    print(
        f"Streams, one real-time minute a row ({platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}; collector and fake pinned to a "
        "core each):"
    )
    print(table(rows))
    missed = [f"{row.offered:,.0f}/s: {miss}" for row in rows for miss in row.misses()]
    for miss in missed:
        print(f"target missed: {miss}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
