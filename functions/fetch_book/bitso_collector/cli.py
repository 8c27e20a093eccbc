"""`make run`: collect whole minutes into the configured sink, without a server.

First makes sure Bitso can be reached at all (`reachability`): when it cannot, says why at once
and exits 1. Then waits for the next minute to begin (unless --now) and runs the same collector
the function runs, printing a line of progress every `PROGRESS_EVERY_S` while a minute runs and
one line for each minute when it ends. Exits 1 when a minute failed (as the HTTP call would
answer 4xx/5xx) or stored nothing. The collector's logs go to stdout: JSON lines, as in the
cloud, or readable lines with repeats collapsed when stdout is a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bitso_format import MINUTE_MS, iso_minute, parse_snapshot_name, seconds_to_ms
from bitso_http import BadRequest
from bitso_logs import JsonLogger, ReadableLines

from .app import HTTP_STATUS, build_runtime
from .call_options import CallOptions, parse_body
from .call_summary import slot_uses_phrase
from .clock import Clock, SystemClock
from .config import ConfigError, load_settings
from .credentials import CredentialsError
from .grid import minute_of
from .reachability import unreachable
from .run_record import RunRecord
from .sinks.base import Sink

#: Seconds between two progress lines while a minute is being collected.
PROGRESS_EVERY_S = 10.0


class CountingSink:
    """The collector's sink, counting the snapshots it stores, for the progress line."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.snapshots = 0
        self._lock = threading.Lock()

    def create(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/json",
        content_encoding: str | None = None,
        deadline: float | None = None,
    ) -> bool:
        created = self.sink.create(
            key,
            data,
            content_type=content_type,
            content_encoding=content_encoding,
            deadline=deadline,
        )
        if created and parse_snapshot_name(key) is not None:
            with self._lock:
                self.snapshots += 1
        return created

    def location(self, key: str) -> str:
        return self.sink.location(key)


@contextmanager
def progress(
    label: str, sink: CountingSink, clock: Clock, start: float, every: float
) -> Iterator[None]:
    """Print how far the minute is and what it stored, every `every` seconds until it ends."""
    stop = threading.Event()
    before = sink.snapshots

    def report() -> None:
        while not stop.wait(every):
            print(
                f"{label}: {clock.now() - start:.0f} s in, "
                f"{sink.snapshots - before} snapshots written so far",
                file=sys.stderr,
                flush=True,
            )

    thread = threading.Thread(target=report, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def outcome_line(label: str, record: RunRecord, where: str) -> tuple[str, bool]:
    """The line that ends a minute, and whether the minute failed (an error, or nothing stored).
    A call that requested nothing (claimed, too late, too early) has no counts to give."""
    summary = record.summary
    written = summary.written if summary else 0
    planned = record.facts.slots_planned if record.facts else 0
    line = f"{label}: {record.status}"
    if summary:
        line += f", {written} of {planned} snapshots written to {where}"
        line += slot_uses_phrase(summary)
    if record.location:
        line += f", run record {record.location}"
    if summary and summary.failed:
        line += "; failed: " + ", ".join(f"{reason} {n}" for reason, n in summary.failed.items())
    if record.error:
        line += f"; {record.error}"
    nothing_stored = summary is not None and planned > 0 and written + summary.duplicates == 0
    if nothing_stored:
        line += "; nothing was stored"
    return line, nothing_stored or HTTP_STATUS[record.status] >= 400


def main(
    argv: list[str] | None = None,
    clock: Clock | None = None,
    progress_every: float = PROGRESS_EVERY_S,
) -> int:
    parser = argparse.ArgumentParser(
        prog="bitso-collect", description="Collect Bitso order book snapshots."
    )
    parser.add_argument("--minutes", type=int, default=1, help="whole minutes to collect (1)")
    parser.add_argument(
        "--now", action="store_true", help="start in the current minute instead of the next"
    )
    parser.add_argument("--books", help="comma-separated books for this run (default BITSO_BOOKS)")
    parser.add_argument("--duration", type=float, help="collect only N seconds of each minute")
    args = parser.parse_args(argv)
    if args.minutes < 1:
        parser.error("--minutes must be 1 or more")
    body: dict[str, object] = {}
    if args.books:
        body["books"] = args.books.split(",")
    if args.duration is not None:
        body["duration_seconds"] = args.duration
    clock = clock or SystemClock()
    log = JsonLogger(readable=ReadableLines() if sys.stdout.isatty() else None)
    try:
        parsed = parse_body(json.dumps(body).encode())
        runtime = build_runtime(load_settings(), clock, log)
    except (BadRequest, ConfigError, CredentialsError) as error:
        parser.error(str(error))

    collector = runtime.collector
    problem = unreachable(runtime.settings.api_url)
    if problem is not None:
        collector.strategy.close()
        print(
            f"bitso-collect: {problem}; nothing was collected "
            f"(check BITSO_API_URL={runtime.settings.api_url} and the network)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    sink = CountingSink(collector.sink)
    collector.sink = sink
    failed = False
    for index in range(args.minutes):
        minute = minute_of(clock.now()) + (0 if args.now and index == 0 else 1)
        start = minute * MINUTE_MS / 1000
        label = iso_minute(seconds_to_ms(start))
        if start > clock.now():
            print(f"waiting {start - clock.now():.0f} s for {label}", file=sys.stderr, flush=True)
            clock.sleep_until(start)
        options = CallOptions(
            books=parsed.get("books"),
            duration_seconds=parsed.get("duration_seconds"),
            schedule_time=start,
        )
        with progress(label, sink, clock, start, progress_every):
            record = collector.run(options)
        log.flush()
        line, minute_failed = outcome_line(label, record, sink.location(""))
        print(line, file=sys.stderr, flush=True)
        failed = failed or minute_failed
    collector.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
