"""The command line: one shape for load, gaps and compact; clear errors for bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.archive.helpers import CORRUPT_NAME, run_cli

ROOT = Path(__file__).resolve().parents[2]
RANGE = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T10:05:00Z"]


def test_load_to_csv_on_stdout(local_archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "load", str(local_archive), "--start", "2026-11-20T10:00", "--end",
        "2026-11-20T10:00:01", "--books", "btc_mxn", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["side"], r["level"], r["price"], r["amount"]) for r in rows] == [
        ("bid", "0", "46850.01", "0.60271953"),
        ("bid", "1", "46850", "0.00000001"),
        ("ask", "0", "46990", "0.1909"),
        ("ask", "1", "46990.5", "12.5"),
    ]
    assert rows[0]["slot"] == "2026-11-20T10:00:00.000Z"
    assert rows[0]["received_at"] == "2026-11-20T10:00:00.183Z"


def test_load_out_dash_is_csv_on_stdout_like_no_out(
    local_archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["load", str(local_archive), *RANGE, "--books", "btc_mxn", "-q"]
    code, default, _ = run_cli(capsys, *args)
    assert code == 0
    code, dash, err = run_cli(capsys, *args, "--out", "-")
    assert code == 0, err
    assert dash == default and len(dash.splitlines()) > 10


def test_load_parquet_and_top(
    local_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "levels.parquet"
    code, _, err = run_cli(capsys, "load", str(local_archive), *RANGE, "--out", str(out_file))
    assert code == 0, err
    assert CORRUPT_NAME in err  # the warning names the corrupt object
    assert "28 snapshots" in err and "1 corrupt" in err
    table = pq.read_table(out_file)
    assert str(table.schema.field("price").type) == "decimal128(38, 9)"
    assert str(table.schema.field("slot").type) == "timestamp[ms, tz=UTC]"
    assert table.column("amount")[1].as_py() == Decimal("0.00000001")

    top_file = tmp_path / "top.csv"
    code, _, err = run_cli(
        capsys, "load", str(local_archive), *RANGE, "--top", "--out", str(top_file)
    )
    assert code == 0, err
    top = pl.read_csv(top_file, infer_schema=False)
    assert top.height == 28
    first = top.row(0, named=True)
    assert (first["mid"], first["spread"]) == ("46920.005", "139.99")


def test_gaps_json_and_png(
    local_archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "gaps.png"
    code, out, err = run_cli(
        capsys, "gaps", str(local_archive), *RANGE, "--rpm", "7", "--json", "--png", str(png)
    )
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {"source", "start", "end", "books", "corrupt", "run_records"}
    minute = doc["books"]["btc_mxn"]["minutes"][1]
    assert set(minute) >= {"minute", "expected", "present", "missing", "throttled", "lost"}
    assert (minute["expected"], minute["present"], minute["throttled"]) == (3, 1, True)
    assert png.read_bytes()[:4] == b"\x89PNG"

    code, out, _ = run_cli(
        capsys, "gaps", str(local_archive), *RANGE, "--rpm", "7", "--books", "eth_mxn"
    )
    assert code == 0
    assert "eth_mxn" in out and "btc_mxn" not in out.split("Incomplete")[0]


def test_compact_cli(local_archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "compact", str(local_archive), *RANGE)
    assert code == 0, err
    assert "8 written" in out  # per book: levels, book_changes, quotes, coverage
    assert "book_changes: " in out and "coverage: 1 rows" in out
    code, out, _ = run_cli(capsys, "compact", str(local_archive), *RANGE)
    assert "0 written, 8 already there" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["load", "SRC", "--start", "yesterday", "--end", "2026-11-20T11:00"],
            "--start: 'yesterday' is not a time",
        ),
        (
            ["load", "SRC", "--start", "2026-11-20T10:00", "--end", "2026-13-01"],
            "--end: '2026-13-01' is not a time",
        ),
        (
            ["load", "SRC", "--start", "2026-11-20T11:00", "--end", "2026-11-20T10:00"],
            "must be after --start",
        ),
        (
            ["load", "SRC", "--start", "2026-11-20T10:00", "--end", "2026-11-20T10:00"],
            "must be after --start",
        ),
        (["load", "SRC", *RANGE, "--books", "BTC-MXN"], "'BTC-MXN' is not a book name"),
        (["load", "SRC", *RANGE, "--books", ","], "at least one book"),
        (["load", "SRC", *RANGE, "--out", "x.xlsx"], "must end in .csv or .parquet, or be -"),
        (["gaps", "SRC", *RANGE, "--rpm", "61"], "from 1 to 60"),
        (["gaps", "SRC", *RANGE, "--png", "x.jpg"], "must end in .png"),
        (["load", "/definitely/not/here", *RANGE], "is not an existing directory"),
        (["load", "s3://bucket/x", *RANGE], "unknown source 's3://bucket/x'"),
        (["load", "gs://", *RANGE], "no valid bucket name"),
        (["load", "SRC", "--end", "2026-11-20T10:00"], "--start"),
        (["purge", "SRC", *RANGE], "invalid choice"),
    ],
)
def test_bad_input_is_an_argparse_error(
    local_archive: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [str(local_archive) if a == "SRC" else a for a in args]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_python_dash_m_runs_and_errors_cleanly(local_archive: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "bitso_archive", "gaps", str(local_archive), *RANGE, "--rpm", "7"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "btc_mxn" in ok.stdout and CORRUPT_NAME in ok.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "bitso_archive",
            "load",
            str(local_archive),
            "--start",
            "x",
            "--end",
            "y",
        ],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "usage:" in bad.stderr and "'x' is not a time" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_runtime_failure_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.archive.helpers import T10, Archive, snapshot

    archive = Archive()
    archive.add_snapshot(snapshot("btc_mxn", T10, 1, bids=[{"price": "1" * 31, "amount": "1"}]))
    archive.write_local(tmp_path)
    code, _, err = run_cli(capsys, "load", str(tmp_path), *RANGE)
    assert code == 1
    assert err.startswith(f"error: price '{'1' * 31}'")
    assert "Traceback" not in err
