"""`make demo`'s driver as a user runs it: 10 s through the real function server into the GCS
emulator, then what landed, the streams part of the record, and the same minute refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bitso_testkit.processes import REPO, base_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.load_tolerant]


# Waits up to a minute when the current one has too little left, then collects 10 s.
@pytest.mark.timeout(180)
def test_the_demo_shows_what_landed_and_refuses_the_same_minute() -> None:
    done = subprocess.run(
        [sys.executable, "demo/run_demo.py"],
        cwd=REPO,
        env=base_env({}),
        capture_output=True,
        text=True,
        check=False,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for kind in ("diff-orders", "trades", "backfilled"):
        assert f"  e.g. a {kind} line: " in out, out
    assert "The same minute again: HTTP 409 (claimed)" in out, out
