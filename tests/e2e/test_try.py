"""`make try`'s driver as a user runs it: one real minute from the fake Bitso through the real
`bitso-collect`, and the reader's commands it prints, run as printed."""

from __future__ import annotations

import csv
import gzip
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bitso_format import (
    MINUTE_MS,
    parse_iso_millis,
    parse_run_record_name,
    parse_shutdown_record_name,
    parse_snapshot_name,
    parse_stream_name,
)
from bitso_testkit.processes import REPO, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.load_tolerant]
BOOKS = ("btc_mxn", "eth_mxn", "xrp_mxn")


def printed(output: str, command: str) -> list[str]:
    """The one printed `bitso-archive <command>` line, as arguments."""
    (line,) = [
        line
        for line in output.splitlines()
        if not line.startswith("#") and f"bitso-archive {command} " in line
    ]
    return shlex.split(line)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False, timeout=60)


# Waits up to a minute for the next one to begin, collects it, then reads it back.
@pytest.mark.timeout(240)
def test_one_minute_lands_and_every_printed_command_works(tmp_path: Path) -> None:
    data = tmp_path / "try-data"
    done = subprocess.run(
        [sys.executable, "demo/try_it.py", "--minutes", "1", "--data", str(data)],
        cwd=REPO,
        env=base_env({}),
        capture_output=True,
        text=True,
        check=False,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    # What landed: one run record, a snapshot of every book, both channels of every book.
    files = [path.relative_to(data).as_posix() for path in data.rglob("*") if path.is_file()]
    (minute_ms,) = [m for m in map(parse_run_record_name, files) if m is not None]
    snapshots = {s.book for s in map(parse_snapshot_name, files) if s is not None}
    assert snapshots == set(BOOKS)
    streams = [s for s in map(parse_stream_name, files) if s is not None]
    assert {(s.book, s.channel) for s in streams} == {
        (book, channel) for book in BOOKS for channel in ("trades", "diff-orders")
    }
    # The call's cut is named by its minute; what came after it was stored when the command
    # ended (the instance's shutdown flush, named by its instant and instance, with its record).
    cuts = [s for s in streams if s.instance is None]
    assert cuts and all(s.cut_ms == minute_ms for s in cuts)
    flushed = {s.instance for s in streams if s.instance is not None}
    shutdowns = [parse_shutdown_record_name(f) for f in files if f.endswith(".shutdown.json")]
    assert flushed == {s.instance for s in shutdowns if s is not None} and len(flushed) == 1
    diffs = next(s for s in cuts if s.book == "btc_mxn" and s.channel == "diff-orders")
    assert len(gzip.decompress((data / diffs.name).read_bytes()).splitlines()) > 100

    # The commands it printed succeed as printed, from the repository's root.
    book = printed(done.stdout, "book")
    at = book[book.index("--at") + 1]
    shown = run([*book, "--json"])
    assert shown.returncode == 0, shown.stderr
    rebuilt = json.loads(shown.stdout)
    assert rebuilt["book"] == "btc_mxn" and rebuilt["bids"] and rebuilt["asks"]
    assert minute_ms <= parse_iso_millis(at) < minute_ms + MINUTE_MS

    results = {}
    for command in ("gaps", "replay", "trades", "export", "sql"):
        args = printed(done.stdout, command)
        results[command] = run(args)
        assert results[command].returncode == 0, f"{shlex.join(args)}:\n{results[command].stderr}"
    assert "stream" in results["sql"].stdout  # the tables know the book for most of the minute
    out = data.parent / "try-data-out"
    with (out / "replay-btc_mxn.csv").open() as replay:
        rows = list(csv.DictReader(replay))
    assert {row["at"] for row in rows} >= {at}
    with (out / "trades.csv").open() as trades:
        assert {row["book"] for row in csv.DictReader(trades)} == set(BOOKS)
