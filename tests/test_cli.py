"""`make run`'s command: waits for the next minute, collects, reports where files went."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from bitso_collector.cli import main
from bitso_collector.clock import ShiftedClock
from bitso_testkit.fake_bitso import FakeBitso


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
