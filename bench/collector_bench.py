"""Benchmark the collector's strategies: how much of the rate budget each turns into snapshots.

Runs every strategy (`sequential`, `threaded`, `asyncio`) and the naive baseline the replaced
scripts used (request, wait for the reply, sleep one second, repeat) through the real
`runner.Collector` against the in-process fake Bitso, under three latency profiles (fast ~50 ms,
typical median 200 ms with a tail to 1.5 s, slow median 1.2 s), at REQUESTS_PER_MINUTE=59 against
the fake's limit of 60 a minute, and prints one Markdown table.

Time is compressed as a time-lapse: a "minute" lasts `--period-ms` (6 s by default, 10x faster),
and everything measured in time shrinks alike: the fake's rolling window, its reply latencies,
the runner's margins (they scale with the period), the naive baseline's one-second pause. Only
the slot grid's relation to latency matters for how many slots fit, and that is what a
time-lapse keeps; what it does not shrink is scheduling jitter and CPU work, which is why
lateness is reported in real milliseconds (a harsher test than at real speed) and CPU per
snapshot is unaffected. One row (threaded, typical) also runs a full real-time minute.

Each row runs in its own child process (the fake stays in this one), so its CPU time and peak
memory (its peak RSS, VmHWM) are the collector's alone; lateness is when the fake saw each
request start against its slot's time. Exits 1 when a target is missed.

    python bench/collector_bench.py [--minutes 3] [--period-ms 6000] [--real-time threaded:typical]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitso_collector.bitso_client import BitsoClient
from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings
from bitso_collector.outcomes import Outcome
from bitso_collector.runner import Collector
from bitso_collector.sinks import LocalSink
from bitso_collector.strategies import FetchJob, Strategy, make_strategy
from bitso_collector.strategies.blocking import fetch_slot
from bitso_format import MINUTE_MS, grid_minute
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import Behaviour, FakeBitso

REPO = Path(__file__).resolve().parents[1]
FUNCTION_DIR = REPO / "functions" / "fetch_book"
RPM = 59
BITSO_LIMIT = 60
BOOKS = ("btc_mxn",)
STRATEGIES = ("naive", "sequential", "threaded", "asyncio")
PROFILES = ("fast", "typical", "slow")
#: The first call of a row arrives this long before its minute begins, as a scheduled call does.
LEAD_S = 0.05
IMPORT_TARGET_S = 0.5
#: The targets, for the strategies that keep a few requests in flight.
TARGET_STRATEGIES = ("threaded", "asyncio")
TARGET_PER_MINUTE = 58
TARGET_P99_MS = 50.0
TARGET_PEAK_MB = 150.0


# -- the naive baseline (what the replaced scripts did; not a product strategy) ----------------
class NaiveBaseline:
    """Request, wait for the reply, sleep one second, repeat, ignoring the slot grid (each reply
    is stored under the next slot's name). `pause` is one second of the (compressed) minute."""

    name = "naive"

    def __init__(self, client: BitsoClient, pause: float) -> None:
        self.client = client
        self.pause = pause

    def run(self, job: FetchJob) -> None:
        if job.slots:
            job.clock.sleep_until(job.slots[0].at)
        for slot in job.slots:
            started = job.clock.now()
            if started >= job.deadline:
                job.recorder.skipped(slot, Outcome.DEADLINE)
                continue
            fetch_slot(self.client, job, slot, job.recorder.start(slot, started))
            job.clock.sleep_until(job.clock.now() + self.pause)

    def close(self) -> None:
        self.client.close()


# -- the fake, in time-lapse ---------------------------------------------------------------
class TimeLapseFake(FakeBitso):
    """The fake Bitso with every reply latency multiplied by `scale` (the minute's compression)."""

    def __init__(self, behaviour: Behaviour, scale: float) -> None:
        super().__init__(behaviour)
        self.scale = scale
        # A client that gave up on a reply (abandoned at the deadline) is expected here.
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]

    def latency(self) -> float:
        return super().latency() * self.scale


# -- one row, in a child process -----------------------------------------------------------
def build_strategy(name: str, api_url: str, period_ms: int) -> Strategy:
    if name == "naive":
        return NaiveBaseline(BitsoClient(api_url), pause=period_ms / MINUTE_MS)
    return make_strategy(name, api_url, None)


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs `minutes` consecutive calls of one strategy against the fake at `url`."""
    period_ms: int = spec["period_ms"]
    period = period_ms / 1000
    settings = Settings(
        books=BOOKS, api_url=spec["url"], requests_per_minute=RPM, strategy=spec["strategy"]
    )
    strategy = build_strategy(spec["strategy"], spec["url"], period_ms)
    now = time.time()
    first_minute = (int(now * 1000) // period_ms + 1) * period_ms / 1000
    clock = ShiftedClock(first_minute - LEAD_S - now)
    root = Path(spec["data_dir"])
    collector = Collector(
        settings, LocalSink(root), strategy, clock, JsonLogger(io.StringIO()), period_ms
    )
    records = []
    cpu_start = time.process_time()
    for index in range(spec["minutes"]):
        # Claims and run records are named by the wall-clock minute, which compressed minutes
        # share: each call gets its own sink root.
        collector.sink = LocalSink(root / f"call{index}")
        minute_start = first_minute + index * period
        clock.sleep_until(minute_start - LEAD_S)
        record = collector.run(CallOptions(schedule_time=minute_start)).to_json()
        late_by = clock.now() - (minute_start + period)
        records.append({**record, "returned_after_minute_s": late_by})
    cpu = time.process_time() - cpu_start
    strategy.close()
    peak_kb = peak_rss_kib()
    return {
        "shift": clock.shift,
        "first_minute": first_minute,
        "cpu_s": cpu,
        "peak_mb": peak_kb / 1024,
        "records": [
            {
                key: record.get(key)
                for key in (
                    "status",
                    "slots_planned",
                    "requests_sent",
                    "written",
                    "failed",
                    "throttled",
                    "abandoned",
                    "lateness_ms",
                    "returned_after_minute_s",
                )
            }
            for record in records
        ],
    }


def peak_rss_kib() -> int:
    """Peak resident memory of this process, KiB: VmHWM from /proc (Linux).

    Not `ru_maxrss`: Linux keeps that high-water mark across fork and exec, so a child would
    report its parent's size at the fork when that is larger (this bench's parent holds the fake).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the children import the installed project
    return env


# -- the parent: rows, table, import time --------------------------------------------------
@dataclass
class Row:
    strategy: str
    profile: str
    period_ms: int
    minutes: int
    written: int
    throttle_replies: int
    lateness_p50_ms: float | None
    lateness_p99_ms: float | None
    cpu_s: float
    peak_mb: float
    late_returns: int

    @property
    def real_time(self) -> bool:
        return self.period_ms == MINUTE_MS

    @property
    def per_minute(self) -> float:
        return self.written / self.minutes

    @property
    def budget_share(self) -> float:
        return self.per_minute / RPM

    @property
    def cpu_per_1000(self) -> float | None:
        return self.cpu_s / self.written * 1000 if self.written else None

    def misses(self) -> list[str]:
        if self.strategy not in TARGET_STRATEGIES:
            return []
        missed = []
        if self.per_minute < TARGET_PER_MINUTE:
            missed.append(f"{self.per_minute:.1f} snapshots/min < {TARGET_PER_MINUTE}")
        if self.throttle_replies:
            missed.append(f"{self.throttle_replies} throttling replies")
        if self.lateness_p99_ms is None or self.lateness_p99_ms >= TARGET_P99_MS:
            missed.append(f"p99 lateness {self.lateness_p99_ms} ms >= {TARGET_P99_MS:.0f}")
        if self.peak_mb >= TARGET_PEAK_MB:
            missed.append(f"peak {self.peak_mb:.0f} MB >= {TARGET_PEAK_MB:.0f}")
        if self.late_returns:
            missed.append(f"{self.late_returns} calls returned after their minute")
        return missed


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def lateness_from_fake(fake: FakeBitso, shift: float, period_ms: int) -> list[float]:
    """Milliseconds from each request's slot to when the fake saw it start."""
    lateness = []
    for entry in list(fake.requests):
        moment = entry.at + shift  # on the collector's clock
        minute = int(moment * 1000 // period_ms)
        slot = [s for s in grid_minute(minute, RPM, BOOKS, period_ms) if s.at <= moment][-1]
        lateness.append((moment - slot.at) * 1000)
    return lateness


def run_row(strategy: str, profile: str, period_ms: int, minutes: int) -> Row:
    scale = period_ms / MINUTE_MS
    behaviour = Behaviour(latency=profile, limit=BITSO_LIMIT, window=period_ms / 1000)
    with (
        tempfile.TemporaryDirectory(prefix="collector-bench-") as data_dir,
        TimeLapseFake(behaviour, scale) as fake,
    ):
        spec = {
            "url": fake.url,
            "strategy": strategy,
            "period_ms": period_ms,
            "minutes": minutes,
            "data_dir": data_dir,
        }
        done = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=minutes * period_ms / 1000 + 60,
            check=False,
        )
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"the {strategy}/{profile} child failed")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        time.sleep(min(2.0, 2 * scale))  # let replies the collector gave up on finish
        lateness = lateness_from_fake(fake, result["shift"], period_ms)
        throttled = sum(entry.status in (420, 429) for entry in list(fake.requests))
    records = result["records"]
    on_grid = strategy != "naive" and lateness
    return Row(
        strategy=strategy,
        profile=profile,
        period_ms=period_ms,
        minutes=minutes,
        written=sum(record["written"] for record in records),
        throttle_replies=throttled,
        lateness_p50_ms=percentile(lateness, 50) if on_grid else None,
        lateness_p99_ms=percentile(lateness, 99) if on_grid else None,
        cpu_s=result["cpu_s"],
        peak_mb=result["peak_mb"],
        late_returns=sum(record["returned_after_minute_s"] >= 0 for record in records),
    )


def import_time() -> tuple[float, list[tuple[float, str]]]:
    """Seconds `import main` takes in a fresh interpreter (best of 3, from -X importtime), and
    the slowest modules of the last run by cumulative time."""
    best = float("inf")
    slowest: list[tuple[float, str]] = []
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import main"],
            cwd=FUNCTION_DIR,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        modules: list[tuple[float, int, str]] = []
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cumulative, name = line.split(":", 1)[1].split("|")
            depth = len(name) - len(name.lstrip())
            modules.append((int(cumulative) / 1e6, depth, name.strip()))
        total = next(seconds for seconds, _, name in modules if name == "main")
        best = min(best, total)
        # What main.py imports directly (one level below it), slowest first.
        below_main = [(seconds, name) for seconds, depth, name in modules if depth == 3]
        slowest = sorted(below_main, reverse=True)[:4]
    return best, slowest


def cell(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| strategy | profile | minute | snapshots / min | budget used | throttling replies "
        "| lateness p50 / p99 (ms) | CPU s / 1,000 snapshots | peak memory (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        minute = (
            "60 s (real time)" if row.real_time else f"{row.period_ms / 1000:g} s x{row.minutes}"
        )
        lateness = f"{cell(row.lateness_p50_ms)} / {cell(row.lateness_p99_ms)}"
        if row.lateness_p50_ms is None:
            lateness = "— (no grid)"
        lines.append(
            f"| {row.strategy} | {row.profile} | {minute} | {row.per_minute:.1f} "
            f"| {row.budget_share:.1%} | {row.throttle_replies} | {lateness} "
            f"| {cell(row.cpu_per_1000, 2)} | {row.peak_mb:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=int, default=3, help="compressed minutes per row (3)")
    parser.add_argument("--period-ms", type=int, default=6000, help="a compressed minute (6000)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument(
        "--real-time",
        default="threaded:typical",
        help="strategy:profile rows that also run one real 60 s minute, comma-separated "
        "(threaded:typical; empty for none)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    began = time.monotonic()
    seconds, slowest = import_time()
    plan = [
        (strategy, profile, args.period_ms, args.minutes)
        for profile in args.profiles.split(",")
        for strategy in args.strategies.split(",")
    ]
    for entry in filter(None, args.real_time.split(",")):
        strategy, _, profile = entry.partition(":")
        plan.append((strategy, profile, MINUTE_MS, 1))
    rows = []
    for number, (strategy, profile, period_ms, minutes) in enumerate(plan, start=1):
        print(
            f"[{number}/{len(plan)}] {strategy}, {profile}, {minutes} x {period_ms / 1000:g} s",
            file=sys.stderr,
            flush=True,
        )
        rows.append(run_row(strategy, profile, period_ms, minutes))

    print(
        f"\nCollector benchmark: REQUESTS_PER_MINUTE={RPM}, fake Bitso limit {BITSO_LIMIT} a "
        f"minute; compressed rows run {args.minutes} consecutive minutes of "
        f"{args.period_ms / 1000:g} s (latencies, window and margins scaled x"
        f"{args.period_ms / MINUTE_MS:g}); lateness = request start seen by the fake minus its "
        "slot; peak memory = peak RSS (VmHWM) of the row's child process.\n"
    )
    print(table(rows))
    print(
        f"\nImport time of main.py: {seconds * 1000:.0f} ms (python -X importtime, best of 3; "
        f"target < {IMPORT_TARGET_S * 1000:.0f} ms); slowest: "
        + ", ".join(f"{name} {s * 1000:.0f} ms" for s, name in slowest)
    )
    cores = os.cpu_count()
    print(
        f"Machine: {cores} cores, Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {time.strftime('%Y-%m-%d')}; bench took "
        f"{time.monotonic() - began:.0f} s."
    )
    missed = [f"{row.strategy}/{row.profile}: {m}" for row in rows for m in row.misses()]
    if seconds >= IMPORT_TARGET_S:
        missed.append(f"import time {seconds:.2f} s >= {IMPORT_TARGET_S} s")
    if missed:
        print("\nTargets missed:\n" + "\n".join(f"- {m}" for m in missed))
        return 1
    print(
        f"\nAll targets met: threaded and asyncio store >= {TARGET_PER_MINUTE} snapshots a minute "
        f"in every profile with no throttling, p99 lateness < {TARGET_P99_MS:.0f} ms, peak "
        f"memory < {TARGET_PEAK_MB:.0f} MB."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
