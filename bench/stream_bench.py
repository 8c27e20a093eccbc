"""Benchmark the streams: how many WebSocket messages a second one call records with nothing lost
and no slot delayed.

The fake Bitso (REST and WebSocket on the same order-level markets, `python -m
bitso_testkit.fake_ws`) runs as a process of its own, pinned to one core; the collector runs one
real-time minute in a child process pinned to the other core (`taskset`), through the real
`runner.Collector` with STREAMS=trades,diff-orders, 10 books, REQUESTS_PER_MINUTE=59, the threaded
strategy and the local sink. The fake's markets make changes at the rate that gives the offered
messages a second (a fill is two messages, a trade and a diff) and stop 0.2 s before the call's
cut (`STREAMS_MARGIN_S` before the minute ends). The instance keeps its socket after the call, as
it does between calls; what a busy fake sent too late for the cut is stored by the instance's
shutdown a second later, so every message sent is due to be stored.

Per row: messages stored a second (over the socket's 58.8 s), of them stored after the cut (by
the shutdown flush), messages lost (sent by the fake but not stored), sequence gaps and
reconnects, the REST grid (request starts, throttling replies,
lateness of each start as the fake saw it against its slot), CPU seconds of the collector process
per 100,000 messages (REST slots included), its peak memory (VmHWM), and the stream objects'
gzipped bytes. Exits 1 when a target is missed.

Then the continuous stream across minute boundaries (`--minutes`, 16 by default; 0 skips it):
consecutive scheduled calls of one collector in this process, on a time-lapse clock (10x, at the
real pace for the last 1.2 s of each minute, where a call stores its cut and record) that the
fake REST server and socket share, 3 books, no planted faults, ANCHOR_EVERY_MINUTES=15. The
market keeps its pace in real seconds, so the slow second around each cut carries ten times the
diffs. Rows: the diffs the fake sent that were not stored, per minute boundary (every cut, the
shutdown flush's included; target 0), and the REST slots per book-hour spent on anchors and
trades backfills: before (a socket per call: every book anchored and backfilled every minute,
120) and after, measured from the run records' `slot_uses` (the instance's start once, then the
steady state, extrapolated to an hour).

    python bench/stream_bench.py [--rates 2000] [--books 10] [--minutes 16]
    python bench/stream_bench.py --rates '' --minutes 16    # only across boundaries
"""

from __future__ import annotations

import argparse
import gzip
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
from collections import Counter
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
from bitso_format import (
    MINUTE_MS,
    STREAM_CHANNELS,
    grid_minute,
    parse_iso_millis,
    parse_stream_line,
)
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import BOOKS as KNOWN_BOOKS
from bitso_testkit.market import Exchange, Market
from bitso_testkit.processes import free_port
from bitso_testkit.timelapse import TimeLapseClock, Timeline

RPM = 59
#: The collector's clock reads this long before its minute when the child starts waiting.
START_AHEAD_S = 6.0
LEAD_S = 0.05
#: The fake's markets stop this long before the socket closes (nothing is in flight at the end).
QUIET_S = 0.2
#: How long after its call the collector is shut down (what it received after the cut is stored).
FLUSH_WAIT_S = 1.0
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
    # The instance holds what came after the call's cut (a busy fake sends late): its shutdown
    # stores it, as Cloud Run's SIGTERM would.
    time.sleep(FLUSH_WAIT_S)
    collector.shutdown()
    [shutdown] = root.glob("_runs/**/*.shutdown.json")
    books_part = json.loads(shutdown.read_text())["streams"]["books"]
    flushed = sum(c["messages"] for channels in books_part.values() for c in channels.values())
    stream_bytes = sum(
        path.stat().st_size for channel in STREAM_CHANNELS for path in root.glob(f"{channel}/**/*")
    )
    return {
        "record": record,
        "flushed": flushed,
        "cpu_s": cpu,
        "peak_mb": peak_rss_mb(),
        "stream_bytes": stream_bytes,
    }


def messages_per_change(samples: int = 5000) -> float:
    """Socket messages a market change makes on average (a fill makes two)."""
    market = Market("btc_mxn", seed=1)
    return sum(len(market.step(index).messages()) for index in range(samples)) / samples


@dataclass
class Row:
    books: int
    offered: float
    #: Stored by the call's cut and, what came after it, by the instance's shutdown flush.
    stored: int
    flushed: int
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
        """Messages stored a second while the market ran (until the cut, less the quiet end)."""
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
        stored=sum(c["messages"] for c in channels) + result["flushed"],
        flushed=result["flushed"],
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
        "| books | offered msg/s | stored msg/s | after the cut | lost | gaps | reconnects "
        "| REST starts / slots "
        "| throttled | lateness p50 / p99 at the fake (ms) | p99 at the collector (ms) "
        "| CPU s / 100k msgs | CPU of one core "
        "| peak memory (MB) | stream objects (gzip) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.books} | {row.offered:,.0f} | {row.rate:,.0f} | {row.flushed} "
            f"| {row.lost} | {row.gaps} "
            f"| {row.reconnects} | {row.requests_sent} / {row.slots_planned} | {row.throttled} "
            f"| {row.p50:.1f} / {row.p99:.1f} | {row.collector_p99_ms:.1f} "
            f"| {row.cpu_s / row.stored * 100_000:.1f} "
            f"| {row.cpu_s / 60:.0%} | {row.peak_mb:.0f} | {row.stream_bytes / 1e6:.1f} MB |"
        )
    return "\n".join(lines)


# -- across minute boundaries -------------------------------------------------------------------
BOUNDARY_BOOKS = ("btc_mxn", "eth_mxn", "xrp_mxn")
#: Market changes a real second per book (2 a second on the time-lapse clock).
BOUNDARY_RATE = 20.0
SPEED = 10.0
#: The last seconds of every minute run at the real pace (the cut, the record, the next claim).
SLOW_BEFORE_S = 1.2
ANCHOR_EVERY_MINUTES = 15
#: The fake's budget here: the collector starts 59 requests a minute on its grid (the soak test
#: checks it), but at 10x a request's real transit (a tenth of a second on a busy machine is a
#: second on the clock) can crowd 61 arrivals into the fake's 60 s, a throttle this does not
#: measure.
ARRIVALS_PER_WINDOW = 62
#: A socket per call (the design before the continuous stream): every book anchored its diffs
#: and backfilled its trades every minute.
BEFORE_PER_BOOK_MINUTE = {"anchor": 1, "trades_backfill": 1}
SLOT_USES = tuple(BEFORE_PER_BOOK_MINUTE)


@dataclass
class Boundaries:
    minutes: int
    books: int
    #: Diffs the fake sent to the collector, and how many of them are stored.
    sent: int
    stored: int
    #: Stored diffs received within a second of a cut (the traffic across the boundaries).
    near_cuts: int
    #: Cuts: one per call, and the shutdown flush.
    cuts: int
    #: Slot uses per call, all books together.
    uses: list[dict[str, int]]
    statuses: list[str]

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    def per_book_hour(self, minutes: list[dict[str, int]]) -> dict[str, float]:
        book_minutes = self.books * len(minutes)
        return {use: sum(m.get(use, 0) for m in minutes) * 60 / book_minutes for use in SLOT_USES}

    def misses(self) -> list[str]:
        missed = []
        if self.lost:
            missed.append(f"{self.lost} diffs lost across {self.cuts} cuts")
        steady = sum(self.per_book_hour(self.uses[1:]).values())
        if steady >= sum(BEFORE_PER_BOOK_MINUTE.values()) * 60:
            missed.append(f"{steady:.1f} anchor and backfill slots a book-hour: no fewer")
        # A degraded call (a slot started too late on a busy machine) stores what it fetched.
        if any(status not in ("ok", "degraded") for status in self.statuses):
            missed.append(f"statuses {self.statuses}")
        return missed


def stored_diffs(root: Path) -> list[tuple[str, int, int]]:
    """(book, sequence, received ms) of every diff stored under `root`."""
    diffs = []
    for path in root.glob("diff-orders/**/*.ndjson.gz"):
        for raw in gzip.decompress(path.read_bytes()).splitlines():
            line = parse_stream_line(json.loads(raw))
            assert line.message is not None
            diffs.append((line.message["book"], line.message["sequence"], line.received_ms))
    return diffs


def run_boundaries(minutes: int) -> Boundaries:
    """Consecutive calls of one collector on a time-lapse clock, then its shutdown."""
    books = BOUNDARY_BOOKS
    now = time.time()
    first = math.ceil(now / 60) * 60.0 + 60
    clock = TimeLapseClock(Timeline(first - 1.0 - now, SPEED, now, SLOW_BEFORE_S))
    exchange = Exchange(books, seed=16, start_ms=int(clock.now() * 1000))
    with (
        tempfile.TemporaryDirectory(prefix="stream-boundaries-") as data_dir,
        FakeBitso(Behaviour(limit=ARRIVALS_PER_WINDOW), exchange=exchange, clock=clock.now) as rest,
        FakeBitsoWs(exchange, rate=BOUNDARY_RATE, clock=clock.now) as socket,
    ):
        settings = Settings(
            books=books,
            api_url=rest.url,
            requests_per_minute=RPM,
            strategy="threaded",
            streams=STREAM_CHANNELS,
            ws_url=socket.url,
            anchor_every_minutes=ANCHOR_EVERY_MINUTES,
        )
        strategy = make_strategy("threaded", rest.url, None)
        collector = Collector(
            settings, LocalSink(data_dir), strategy, clock, JsonLogger(io.StringIO())
        )
        records = []
        for index in range(minutes):
            minute = first + 60 * index
            clock.sleep_until(minute - LEAD_S)
            records.append(collector.run(CallOptions(schedule_time=minute)).to_json())
        socket.set_rate(0)  # what was sent reaches the socket before the shutdown's cut
        time.sleep(0.5)
        collector.shutdown()
        sent = {(m["book"], m["sequence"]) for m in socket.sent_to() if m["type"] == "diff-orders"}
        diffs = stored_diffs(Path(data_dir))
        [shutdown] = Path(data_dir).glob("_runs/**/*.shutdown.json")
        cut_ms = [parse_iso_millis(r["streams"]["cut_at"]) for r in records] + [
            parse_iso_millis(json.loads(shutdown.read_text())["at"])
        ]
    stored = {(book, sequence) for book, sequence, _ in diffs}
    assert len(stored) == len(diffs), "a diff stored twice"
    return Boundaries(
        minutes=minutes,
        books=len(books),
        sent=len(sent),
        stored=len(sent & stored),
        near_cuts=sum(any(abs(at - cut) <= 1000 for cut in cut_ms) for _, _, at in diffs),
        cuts=len(cut_ms),
        uses=[Counter(use["use"] for use in r["slot_uses"]) for r in records],
        statuses=[r["status"] for r in records],
    )


def number(value: float) -> str:
    """At most two decimals, none when they are zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def boundary_tables(run: Boundaries) -> str:
    statuses = ", ".join(f"{n} {status}" for status, n in Counter(run.statuses).most_common())
    lines = [
        "| calls (minutes) | call statuses | books | cuts | diffs sent | stored | lost "
        "| lost per boundary | diffs received within 1 s of a cut |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| {run.minutes} | {statuses} | {run.books} | {run.cuts} | {run.sent:,} "
        f"| {run.stored:,} | {run.lost} | {run.lost / run.cuts:.2f} | {run.near_cuts:,} |",
        "",
        "| REST slots per book-hour | anchors | trades backfills | total |",
        "|---|---:|---:|---:|",
    ]
    before = {use: count * 60.0 for use, count in BEFORE_PER_BOOK_MINUTE.items()}
    start = {use: run.uses[0].get(use, 0) / run.books for use in SLOT_USES}
    steady = run.per_book_hour(run.uses[1:])
    for label, uses in [
        ("before: a socket per call (every book, every minute)", before),
        ("after: the instance's start (its first minute, once per book)", start),
        (
            f"after: steady state (minutes 2-{run.minutes} measured, x 60/{run.minutes - 1})",
            steady,
        ),
    ]:
        cells = " | ".join(number(uses[use]) for use in SLOT_USES)
        lines.append(f"| {label} | {cells} | {number(sum(uses.values()))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default=f"{TARGET_RATE:.0f}", help="offered messages a second ('': none)"
    )
    parser.add_argument("--books", type=int, default=10, help=f"at most {len(KNOWN_BOOKS)}")
    parser.add_argument(
        "--minutes", type=int, default=16, help="consecutive calls across boundaries (0: none)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    books = tuple(list(KNOWN_BOOKS)[: args.books])
    per_change = messages_per_change()
    rows = []
    for offered in (float(rate) for rate in args.rates.split(",") if rate):
        print(f"streams: {offered:,.0f} messages/s across {len(books)} books ...", flush=True)
        rows.append(run_row(offered, books, per_change))
    if rows:
        print()
        print(
            f"Streams, one real-time minute a row ({platform.python_implementation()} "
            f"{platform.python_version()}, {platform.machine()}; collector and fake pinned to a "
            "core each):"
        )
        print(table(rows))
    missed = [f"{row.offered:,.0f}/s: {miss}" for row in rows for miss in row.misses()]
    if args.minutes:
        print(f"\nstreams: {args.minutes} consecutive minutes across boundaries ...", flush=True)
        started = time.monotonic()
        boundaries = run_boundaries(args.minutes)
        print(
            f"\nThe continuous stream across minute boundaries: {args.minutes} consecutive calls "
            f"of one instance, then its shutdown, {len(BOUNDARY_BOOKS)} books, no faults, "
            f"ANCHOR_EVERY_MINUTES={ANCHOR_EVERY_MINUTES}; a time-lapse clock at {SPEED:g}x "
            f"(real pace for the last {SLOW_BEFORE_S:g} s of each minute), "
            f"{time.monotonic() - started:.0f} s of real time:"
        )
        print(boundary_tables(boundaries))
        missed += [f"boundaries: {miss}" for miss in boundaries.misses()]
    for miss in missed:
        print(f"target missed: {miss}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
