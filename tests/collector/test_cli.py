"""`make run`'s command: waits for the next minute, collects, reports where files went."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path

import pytest

from bitso_collector.cli import main
from bitso_collector.clock import ShiftedClock
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.processes import REPO, free_port


def test_collects_into_the_local_directory_from_the_next_minute(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    monkeypatch.setenv("LOCAL_DATA_DIR", "collected")
    start = (math.ceil(time.time() / 60) + 5) * 60.0
    clock = ShiftedClock(start - 1.0 - time.time())  # one second before a minute begins

    assert main(["--books", "eth_mxn,xrp_mxn", "--duration", "2"], clock) == 0

    files = sorted((tmp_path / "collected").glob("[0-9]*/**/*.json"))
    assert [json.loads(f.read_text())["book"] for f in files] == ["eth_mxn", "xrp_mxn"]
    assert all(json.loads(f.read_text())["slot"].endswith(("00.000Z", "01.016Z")) for f in files)
    err = capsys.readouterr().err
    assert "waiting 1 s for" in err
    assert "ok, 2 snapshots written to collected" in err


def test_bad_settings_exit_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATEGY", "fastest")
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "STRATEGY='fastest' is not allowed" in capsys.readouterr().err


def test_a_sink_that_cannot_claim_exits_1_with_one_line(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    (tmp_path / "blocked").write_text("a file where the data directory should be")
    monkeypatch.setenv("LOCAL_DATA_DIR", "blocked")
    start = (math.ceil(time.time() / 60) + 5) * 60.0
    clock = ShiftedClock(start - 0.5 - time.time())

    assert main(["--duration", "1"], clock) == 1

    err = capsys.readouterr().err
    assert "cannot claim the minute: cannot write blocked/_runs/" in err
    assert "Traceback" not in err
    assert fake_bitso.requests == []


def test_a_minute_that_stores_nothing_exits_1_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    start = (math.ceil(time.time() / 60) + 5) * 60.0
    clock = ShiftedClock(start - 0.5 - time.time())

    assert main(["--duration", "2"], clock) == 1

    captured = capsys.readouterr()
    assert "degraded, 0 snapshots written to data" in captured.err
    assert "failed: connection 2; nothing was stored" in captured.err
    failures = [json.loads(line) for line in captured.out.splitlines() if "slot failed" in line]
    assert len(failures) == 2
    assert all(line["detail"].endswith(": connection refused") for line in failures)


def test_progress_is_printed_while_a_minute_runs(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    start = (math.ceil(time.time() / 60) + 5) * 60.0
    clock = ShiftedClock(start - 0.2 - time.time())

    assert main(["--duration", "3"], clock, progress_every=0.8) == 0

    lines = capsys.readouterr().err.splitlines()
    progress = [re.fullmatch(r".*Z: (\d+) s in, (\d+) snapshots written so far", x) for x in lines]
    counts = [(int(m[1]), int(m[2])) for m in progress if m]
    assert len(counts) >= 2  # every 0.8 s of a call that takes 3 s and its reply grace
    assert counts == sorted(counts) and counts[-1][1] <= 3
    assert lines[-1].split("Z: ", 1)[1].startswith("ok, 3 snapshots written")


def test_make_serve_listens_on_this_machine_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")  # an exported HOST does not widen it

    def serve_command(*overrides: str) -> str:
        shown = subprocess.run(
            ["make", "--dry-run", "--no-print-directory", "serve", *overrides],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return " ".join(shown.replace("\\\n", " ").split())

    assert "functions-framework --target=fetch_book" in serve_command()
    assert "--host=127.0.0.1 --port=8080" in serve_command()
    assert "--host=0.0.0.0 --port=9000" in serve_command("HOST=0.0.0.0", "PORT=9000")
