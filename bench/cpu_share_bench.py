"""Benchmark the CPU share: the real function under a CPU quota, one real minute per row.

The function's vCPU share is billed for the whole ~60 s of every call, the largest line of the
bill, so the deployment should run on the smallest share that still keeps the grid. Each row
starts the real function (`functions-framework --target=fetch_book`, as deployed) in a child
cgroup whose CPU quota is the share (cgroup v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us`, or
cgroup v2 `cpu.max`, period 100 ms), writing through the real google-cloud-storage client to the
GCS emulator behind the strict proxy (`--sink local` for the local disk), with the fake Bitso
(typical latency, Bitso's 60 a minute) and the storage outside the group, waits for the next
real minute and sends one scheduled call for it, as Cloud Scheduler does, after a short call in
the minute before has warmed the instance (imports, clients), as the one kept warm in the cloud
is (`min_instance_count = 1`); that first call's cost is reported apart. It reports the
snapshots written, the throttling replies, the lateness of request starts as the fake saw them,
the call's CPU time, and how many of the quota's periods throttled the process. Where no cgroup
CPU controller can be written, it says so and skips the rows (exit 0).

Rows with streams run the same with `STREAMS=trades,diff-orders` against the fake REST and
WebSocket on one order-level market (`python -m bitso_testkit.fake_ws`, a process outside the
group), its market changing `--stream-rate` times a second.

Cloud Run's own way of limiting a fractional vCPU is not documented here; a CFS quota with a
100 ms period is this machine's stand-in for it.

    python bench/cpu_share_bench.py [--shares 0.333,0.167,0.083] [--stream-shares ...]
                                    [--stream-rate 20] [--strategy threaded] [--sink gcs]
                                    [--full-books]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from collector_bench import BOOKS, RPM, TARGET_P99_MS, TARGET_PER_MINUTE, cell, percentile
from stream_bench import lateness

from bitso_format import STREAM_CHANNELS, iso_millis, seconds_to_ms
from bitso_http import SCHEDULE_HEADER
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.processes import FUNCTION_DIR, base_env, free_port, running
from bitso_testkit.strict_gcs import running_strict_gcs

SHARES = (0.333, 0.167, 0.083)
PERIOD_US = 100_000
#: The call is sent this long before its minute begins.
LEAD_S = 0.05
#: The warm-up call collects this many seconds and must end this long before the minute.
WARM_UP_S = 1
MIN_WAIT_S = 4.0
#: A share keeps the grid "with margin" when no slot is skipped late, the collector bench's
#: snapshots target holds (the 59th can be lost to a slow last reply whatever the CPU), and p99
#: lateness stays under half its target...
MARGIN_P99_MS = TARGET_P99_MS / 2
#: ... and the call used at most this part of the CPU the share gives it over the minute.
MARGIN_CPU_USE = 0.5


# -- the cgroup ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuGroup:
    """A child cgroup with a CPU quota; `version` 1 (cpu controller) or 2 (unified)."""

    path: Path
    version: int

    def limit(self, share: float) -> None:
        quota = round(share * PERIOD_US)
        if self.version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")

    def periods(self) -> tuple[int, int]:
        """(quota periods so far, periods in which the group was throttled)."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def command(self, args: list[str]) -> list[str]:
        """`args`, run inside the group: a shell moves itself in, then becomes `args`."""
        enter = f'echo $$ > "{self.path / "cgroup.procs"}" && exec "$@"'
        return ["/bin/sh", "-c", enter, "sh", *args]

    def remove(self) -> None:
        give_up = time.monotonic() + 10
        while (self.path / "cgroup.procs").read_text().strip() and time.monotonic() < give_up:
            time.sleep(0.1)
        self.path.rmdir()


def _cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def create_group(name: str) -> CpuGroup | str:
    """A new CPU-limited cgroup, or why this machine offers none."""
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").is_file():
        try:
            (v1 / name).mkdir()
        except OSError as error:
            return f"cannot create a cgroup v1 cpu group in {v1}: {error}"
        return CpuGroup(v1 / name, 1)
    root = _cgroup2_root()
    if root is None or "cpu" not in (root / "cgroup.controllers").read_text().split():
        return "no cgroup cpu controller is mounted (neither v1 cpu nor v2 with cpu)"
    try:
        if "cpu" not in (root / "cgroup.subtree_control").read_text().split():
            (root / "cgroup.subtree_control").write_text("+cpu")
        (root / name).mkdir()
    except OSError as error:
        return f"cannot create a cgroup v2 group with cpu.max in {root}: {error}"
    return CpuGroup(root / name, 2)


@contextmanager
def cpu_group(share: float) -> Iterator[CpuGroup | str]:
    group = create_group(f"bitso-cpu-bench-{os.getpid()}-{round(share * 1000)}")
    if isinstance(group, str):
        yield group
        return
    try:
        group.limit(share)
        yield group
    finally:
        group.remove()


# -- the rows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowSpec:
    share: float
    strategy: str
    #: "gcs" (the emulator, through the real client) or "local".
    sink: str = "gcs"
    #: Aggregated books (~6 KB) or full order-level books (`BITSO_AGGREGATE=false`, ~600 KB).
    aggregate: bool = True
    #: With streams: market changes a second (each one or two socket messages); 0: none.
    stream_rate: float = 0.0

    @property
    def streams(self) -> str:
        return f"{self.stream_rate:g} changes/s" if self.stream_rate else "no"


@dataclass(frozen=True)
class Row:
    spec: RowSpec
    written: int
    failed: dict[str, int]
    #: Socket messages stored (None without streams).
    messages: int | None
    throttle_replies: int
    lateness_ms: list[float]
    cpu_s: float
    periods: int
    throttled_periods: int
    #: The warm-up call (a new instance's first): its duration and CPU time, seconds.
    first_call_s: float
    first_call_cpu_s: float

    def lateness(self, q: int) -> float | None:
        """The q-th percentile (100: the maximum), None when nothing started."""
        if not self.lateness_ms:
            return None
        return max(self.lateness_ms) if q == 100 else percentile(self.lateness_ms, q)

    @property
    def cpu_use(self) -> float:
        """The call's CPU time over what the share gives it in a minute."""
        return self.cpu_s / (self.spec.share * 60)

    def keeps_the_grid_with_margin(self) -> bool:
        p99 = self.lateness(99)
        return (
            self.written >= TARGET_PER_MINUTE
            and "late" not in self.failed
            and self.throttle_replies == 0
            and p99 is not None
            and p99 < MARGIN_P99_MS
            and self.cpu_use <= MARGIN_CPU_USE
        )


@dataclass(frozen=True)
class Fakes:
    """The fake Bitso a row runs against: its settings for the function, and its request log."""

    settings: dict[str, str]
    requests: Callable[[], list[dict[str, Any]]]


def start_fakes(spec: RowSpec, stack: ExitStack, work: Path) -> Fakes:
    """The fake REST server in this process, or, with streams, the fake REST and WebSocket on
    one market as a process of their own (never the real Bitso)."""
    if not spec.stream_rate:
        fake = stack.enter_context(FakeBitso(Behaviour(latency="typical")))
        return Fakes(
            {"BITSO_API_URL": fake.url},
            lambda: [dataclasses.asdict(entry) for entry in list(fake.requests)],
        )
    rest_port, ws_port = free_port(), free_port()
    rest = f"http://127.0.0.1:{rest_port}"
    args = [
        sys.executable, "-m", "bitso_testkit.fake_ws", f"--books={','.join(BOOKS)}",
        f"--rate={spec.stream_rate:g}", "--latency=typical", f"--rest-port={rest_port}",
        f"--ws-port={ws_port}",
    ]  # fmt: skip
    stack.enter_context(running(args, base_env({}), f"{rest}/_requests", work / "fake.log"))
    return Fakes(
        {
            "BITSO_API_URL": rest,
            "BITSO_WS_URL": f"ws://127.0.0.1:{ws_port}/",
            "STREAMS": ",".join(STREAM_CHANNELS),
        },
        lambda: requests.get(f"{rest}/_requests", timeout=10).json(),
    )


def next_minute(now: float) -> float:
    """The start of the next minute that leaves time for a warm-up call before it."""
    start = (now // 60 + 1) * 60
    return start if start - now >= MIN_WAIT_S + WARM_UP_S else start + 60


def sink_settings(sink: str, stack: ExitStack, work: Path) -> dict[str, str]:
    if sink == "local":
        return {"LOCAL_DATA_DIR": str(work / "data")}
    gcs = stack.enter_context(running_strict_gcs())
    gcs.create_bucket("cpu-share-bench")
    return {"GCS_BUCKET": "cpu-share-bench", "STORAGE_EMULATOR_HOST": gcs.url}


def run_row(spec: RowSpec, group: CpuGroup, work: Path) -> Row:
    with ExitStack() as stack:
        fakes = start_fakes(spec, stack, work)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = base_env(
            {
                **fakes.settings,
                "BITSO_BOOKS": ",".join(BOOKS),
                "REQUESTS_PER_MINUTE": str(RPM),
                "STRATEGY": spec.strategy,
                "BITSO_AGGREGATE": "true" if spec.aggregate else "false",
                **sink_settings(spec.sink, stack, work),
            }
        )
        server = [
            str(Path(sys.executable).parent / "functions-framework"),
            "--target=fetch_book",
            f"--source={FUNCTION_DIR / 'main.py'}",
            f"--port={port}",
        ]
        log = work / "function.log"
        with running(group.command(server), env, f"{url}/robots.txt", log, timeout=120):
            start = next_minute(time.time())
            time.sleep(max(0.0, start - MIN_WAIT_S - WARM_UP_S - time.time()))
            first = requests.post(url, json={"duration_seconds": WARM_UP_S}, timeout=120).json()
            time.sleep(max(0.0, start - LEAD_S - time.time()))
            periods_before = group.periods()
            reply = requests.post(
                url, headers={SCHEDULE_HEADER: iso_millis(seconds_to_ms(start))}, timeout=120
            )
            periods_after = group.periods()
        record = reply.json()
        time.sleep(1.5)  # replies the call gave up on reach the fake's log
        entries = [entry for entry in fakes.requests() if entry["at"] >= start]
        throttled = sum(entry["status"] in (420, 429) for entry in entries)
    for answer in (first, record):
        if "written" not in answer:
            raise SystemExit(f"a call at share {spec.share} failed: {answer}\n{log.read_text()}")
    return Row(
        spec=spec,
        written=record["written"],
        failed=record["failed"],
        messages=stream_messages(record),
        throttle_replies=throttled,
        lateness_ms=lateness(entries, 0.0, BOOKS),
        cpu_s=record["cpu_ms"] / 1000,
        periods=periods_after[0] - periods_before[0],
        throttled_periods=periods_after[1] - periods_before[1],
        first_call_s=first["duration_ms"] / 1000,
        first_call_cpu_s=first["cpu_ms"] / 1000,
    )


def stream_messages(record: dict[str, Any]) -> int | None:
    """Socket messages the call stored, from its run record (None without streams)."""
    streams = record.get("streams")
    if streams is None:
        return None
    books = streams["books"].values()
    return sum(int(channel["messages"]) for book in books for channel in book.values())


def table(rows: list[Row]) -> str:
    lines = [
        "| vCPU share | strategy | books | sink | streams (messages stored) | snapshots / min "
        "| failed "
        "| throttling replies "
        "| lateness p50 / p99 / max (ms) | call CPU s / min | share used "
        "| quota periods throttled | first call: s, CPU s |",
        "|---:|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lateness = " / ".join(cell(row.lateness(q)) for q in (50, 99, 100))
        throttled = f"{row.throttled_periods} of {row.periods}"
        failed = ", ".join(f"{reason} {n}" for reason, n in sorted(row.failed.items())) or "—"
        books = "aggregated" if row.spec.aggregate else "full"
        lines.append(
            f"| {row.spec.share:g} | {row.spec.strategy} | {books} | {row.spec.sink} "
            f"| {row.spec.streams}{f' ({row.messages:,})' if row.messages is not None else ''} "
            f"| {row.written} | {failed} "
            f"| {row.throttle_replies} | {lateness} | {row.cpu_s:.2f} | {row.cpu_use:.0%} "
            f"| {throttled} | {row.first_call_s:.1f}, {row.first_call_cpu_s:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--shares", default=",".join(f"{s:g}" for s in SHARES))
    parser.add_argument(
        "--stream-shares",
        default=",".join(f"{s:g}" for s in SHARES),
        help="shares of the rows with streams (empty: none)",
    )
    parser.add_argument("--stream-rate", type=float, default=20.0, help="market changes/s")
    parser.add_argument("--strategy", default="threaded")
    parser.add_argument("--sink", choices=("gcs", "local"), default="gcs")
    parser.add_argument(
        "--full-books", action="store_true", help="BITSO_AGGREGATE=false (~600 KB a snapshot)"
    )
    args = parser.parse_args(argv)
    aggregate = not args.full_books
    specs = [
        RowSpec(float(share), args.strategy, args.sink, aggregate)
        for share in filter(None, args.shares.split(","))
    ] + [
        RowSpec(float(share), args.strategy, args.sink, aggregate, args.stream_rate)
        for share in filter(None, args.stream_shares.split(","))
    ]

    began = time.monotonic()
    rows: list[Row] = []
    skipped: str | None = None
    for number, spec in enumerate(specs, start=1):
        with cpu_group(spec.share) as group:
            if isinstance(group, str):
                skipped = group
                break
            print(
                f"[{number}/{len(specs)}] {spec.share:g} vCPU, {spec.strategy}, {spec.sink}, "
                f"streams {spec.streams}: one real minute",
                file=sys.stderr,
                flush=True,
            )
            with tempfile.TemporaryDirectory(prefix="cpu-share-bench-") as work:
                rows.append(run_row(spec, group, Path(work)))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)

    print(
        f"\nCPU share benchmark: the real function under a CFS quota (period "
        f"{PERIOD_US // 1000} ms), one real minute per row, REQUESTS_PER_MINUTE={RPM}, fake "
        "Bitso with typical latency; gcs = the real google-cloud-storage client against the "
        "emulator over plain HTTP (no TLS, so a little less CPU than Cloud Storage); lateness = "
        "request start seen by the fake minus its slot, in the warm minute; first call = the "
        f"new instance's {WARM_UP_S} s warm-up call (imports and clients on first use); "
        "share used = the call's CPU time over the share's CPU in a minute.\n"
    )
    if skipped:
        print(f"CPU quota rows skipped: {skipped}.")
        return 0
    print(table(rows))
    print(
        f"\nMachine: {os.cpu_count()} cores shared with other work, Python "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}; bench took {time.monotonic() - began:.0f} s. Provisional: "
        "one minute per row on a shared machine."
    )
    good = [row for row in rows if row.keeps_the_grid_with_margin()]
    if good:
        best = min(good, key=lambda row: row.spec.share)
        print(
            f"Smallest share that keeps the grid with margin (at least {TARGET_PER_MINUTE} a "
            f"minute, no slot skipped late, no throttling, p99 < {MARGIN_P99_MS:.0f} ms, at most "
            f"{MARGIN_CPU_USE:.0%} of the share used): {best.spec.share:g} vCPU."
        )
    else:
        print("No share measured keeps the grid with margin.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
