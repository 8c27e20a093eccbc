"""`make run`: collect whole minutes into the configured sink, without a server.

Waits for the next minute to begin (unless --now), then runs the same collector the function runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from bitso_format import MINUTE_MS, iso_minute, seconds_to_ms

from .app import HTTP_STATUS, build_runtime
from .call_options import BadRequest, CallOptions, parse_body
from .clock import Clock, SystemClock
from .config import ConfigError, load_settings
from .credentials import CredentialsError
from .errors import StorageError
from .grid import minute_of


def main(argv: list[str] | None = None, clock: Clock | None = None) -> int:
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
    try:
        parsed = parse_body(json.dumps(body).encode())
        runtime = build_runtime(load_settings(), clock)
    except (BadRequest, ConfigError, CredentialsError) as error:
        parser.error(str(error))

    collector = runtime.collector
    failed = False
    for index in range(args.minutes):
        minute = minute_of(clock.now()) + (0 if args.now and index == 0 else 1)
        start = minute * MINUTE_MS / 1000
        if start > clock.now():
            print(
                f"waiting {start - clock.now():.0f} s for {iso_minute(seconds_to_ms(start))}",
                file=sys.stderr,
            )
            clock.sleep_until(start)
        try:
            record = collector.run(
                CallOptions(
                    books=parsed.get("books"),
                    duration_seconds=parsed.get("duration_seconds"),
                    schedule_time=start,
                )
            )
        except StorageError as error:
            print(
                f"{iso_minute(seconds_to_ms(start))}: cannot claim the minute: {error}",
                file=sys.stderr,
            )
            failed = True
            continue
        written = record.summary.written if record.summary else 0
        print(
            f"{iso_minute(seconds_to_ms(start))}: {record.status}, {written} snapshots "
            f"written to {collector.sink.location('')}, run record {record.location}",
            file=sys.stderr,
        )
        failed = failed or HTTP_STATUS[record.status] >= 400
    collector.strategy.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
