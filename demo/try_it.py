"""`make try`: collect a few minutes offline into try-data/, then say how to read them back.

Starts the fake Bitso on 127.0.0.1 (one process: the REST API and the WebSocket, driven by the
same order-level market per book, so every diff the socket sends agrees with the books REST
serves), runs the collector's own command, `bitso-collect --minutes N`, against it with
STREAMS=trades,diff-orders and LOCAL_DATA_DIR pointing at try-data/, stops the fake by its PID,
and prints the reader's commands with instants taken from what was collected (the `book --at`
instant is one the reader was asked about and answered).

Only the public command lines are used (settings in the environment, `bitso-collect`,
`bitso-archive`), never the collector's or the reader's modules, so this keeps working while they
change. try-data/ is kept: each run adds its minutes to it.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bitso_format import MINUTE_MS, iso_millis, iso_minute, parse_run_record_name, seconds_to_ms
from bitso_testkit.processes import REPO, base_env, running_fake_market

DEFAULT_BOOKS = "btc_mxn,eth_mxn,xrp_mxn"
STREAMS = "trades,diff-orders"
#: Seconds into a collected minute to try for `book --at`, most likely known first.
PROBE_SECONDS = (30, 45, 15, 55, 5)
#: The span `replay` covers from the known instant, one book a second.
REPLAY_SECONDS = 10


def say(text: str = "") -> None:
    print(text, flush=True)


def shown(path: Path) -> str:
    """`path` as a user at the current directory types it: relative when it lies below."""
    absolute = path.absolute()
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)


def output_dir(data_dir: Path) -> Path:
    """Where the printed commands write their tables: beside the archive, not in it."""
    return data_dir.parent / f"{data_dir.name}-out"


def command_line(args: Iterable[str]) -> str:
    return " ".join(shlex.quote(arg) for arg in args)


def collected_minutes(data_dir: Path, since_ms: int) -> list[int]:
    """The minutes (epoch ms) from `since_ms` on whose run record is in `data_dir`."""
    runs = data_dir / "_runs"
    minutes = (parse_run_record_name(path.name) for path in runs.rglob("*.json"))
    return sorted(m for m in minutes if m is not None and m >= since_ms)


def known_instant(archive: Path, data_dir: Path, book: str, minutes: list[int]) -> int | None:
    """An instant of `book` the reader rebuilds (`book --at` exits 0), latest minute first."""
    for minute_ms in reversed(minutes):
        for seconds in PROBE_SECONDS:
            at_ms = minute_ms + seconds * 1000
            probe = subprocess.run(
                [str(archive), "book", str(data_dir), "--book", book, "--at", iso_millis(at_ms),
                 "--quiet", "--json"],
                capture_output=True,
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return at_ms
    return None


def next_commands(archive: Path, data_dir: Path, book: str, minutes: list[int]) -> list[str]:
    """The reader's commands for what was collected, ready to paste."""
    exe, data, out = shown(archive), shown(data_dir), shown(output_dir(data_dir))
    start, end = iso_minute(minutes[0]), iso_minute(minutes[-1] + MINUTE_MS)
    span = ["--start", start, "--end", end]
    lines = [
        "# Which slots and stream minutes are there, and what is missing:",
        command_line([exe, "gaps", data, *span]),
    ]
    at_ms = known_instant(archive, data_dir, book, minutes)
    if at_ms is None:
        lines.append(f"# No instant of {book} could be rebuilt; `gaps` above says why.")
    else:
        replay_end = iso_millis(at_ms + REPLAY_SECONDS * 1000)
        lines += [
            f"# {book} at one instant, rebuilt from its anchor and the diffs after it:",
            command_line(
                [exe, "book", data, "--book", book, "--at", iso_millis(at_ms), "--depth", "5"]
            ),
            f"# {book} every second for {REPLAY_SECONDS} s, one row per level:",
            command_line(
                [exe, "replay", data, "--book", book, "--start", iso_millis(at_ms),
                 "--end", replay_end, "--every", "1s", "--out", f"{out}/replay-{book}.csv"]
            ),
        ]  # fmt: skip
    lines += [
        "# Every trade once, streamed and backfilled merged:",
        command_line([exe, "trades", data, *span, "--out", f"{out}/trades.csv"]),
    ]
    tables = f"{out}/tables"
    lines += [
        "# The research tables (trades, book changes, snapshots, quotes, coverage) as Parquet,",
        "# then a question to them in DuckDB:",
        command_line([exe, "export", data, *span, "--out", tables]),
        command_line(
            [exe, "sql", tables, "SELECT reason, count(*) AS spans FROM coverage GROUP BY reason"]
        ),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=2, help="whole minutes to collect (2)")
    parser.add_argument("--books", default=DEFAULT_BOOKS, help=f"books ({DEFAULT_BOOKS})")
    parser.add_argument(
        "--data", type=Path, default=REPO / "try-data", help="where to collect (try-data/)"
    )
    parser.add_argument("--rate", type=float, default=20, help="market changes a second per book")
    args = parser.parse_args(argv)
    if args.minutes < 1:
        parser.error(f"--minutes must be a whole number of 1 or more, not {args.minutes}")
    bin_dir = Path(sys.executable).parent
    collect, archive = bin_dir / "bitso-collect", bin_dir / "bitso-archive"
    data_dir: Path = args.data.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    output_dir(data_dir).mkdir(exist_ok=True)
    books = args.books.split(",")

    with contextlib.ExitStack() as stack:
        # Logs, and the directory the collector runs in, so no .env of the user's is read.
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bitso-try-")))
        fake = stack.enter_context(running_fake_market(args.books, args.rate, scratch))
        bitso_url, ws_url, fake_log = fake.rest_url, fake.ws_url, fake.log_path
        pid = fake.process.pid
        say(f"Fake Bitso (PID {pid}, typical latency): REST {bitso_url}, WebSocket {ws_url}")
        say(f"  one order-level market per book, {args.rate:g} changes a second each")
        settings = {
            "BITSO_API_URL": bitso_url,
            "BITSO_WS_URL": ws_url,
            "BITSO_BOOKS": args.books,
            "STREAMS": STREAMS,
            "LOCAL_DATA_DIR": str(data_dir),
        }
        collector = [str(collect), "--minutes", str(args.minutes)]
        say(f"{command_line(f'{k}={v}' for k, v in settings.items())} \\")
        say(f"  {command_line([shown(collect), *collector[1:]])}")
        since_ms = seconds_to_ms(time.time()) // MINUTE_MS * MINUTE_MS
        status = subprocess.run(collector, env=base_env(settings), cwd=scratch, check=False)
        minutes = collected_minutes(data_dir, since_ms)
        if status.returncode != 0 or not minutes:
            say(f"\nbitso-collect exited {status.returncode}; the fake Bitso's log:")
            say(fake_log.read_text()[-4000:])
        say(f"Stopping the fake Bitso (PID {pid}).")

    if not minutes:
        say(f"No minute was collected into {shown(data_dir)}.")
        return 1
    say()
    say(
        f"Collected {len(minutes)} minute(s) of {', '.join(books)} into {shown(data_dir)}/ "
        f"({iso_minute(minutes[0])} to {iso_minute(minutes[-1] + MINUTE_MS)}); "
        "it is kept, and each `make try` adds to it."
    )
    say("Read it back:")
    say()
    for line in next_commands(archive, data_dir, books[0], minutes):
        say(line)
    return status.returncode


if __name__ == "__main__":
    sys.exit(main())
