"""``gaps`` after a throttling reply: each minute's grid is the pace its run record says it ran
at, so a reduced pace is neither missing slots nor off-grid snapshots.

The archive is written out from the contract (tests.archive.helpers), one book at R = 6:
10:00 full; 10:01 throttled after j = 2; 10:02 began in the silence (pace 4, slot 0 skipped as
backing_off); 10:03 recovering at pace 4; 10:04 at pace 6 again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitso_archive import gaps_report
from tests.archive.helpers import Archive, iso, ms, run_record, snapshot

BOOK = "btc_mxn"
FULL = 6
T = ms("2026-11-20T10:00:00Z")
#: (pace, mode, slots j present, status)
MINUTES = [
    (6, "full", range(6), "ok"),
    (6, "full", range(3), "throttled"),
    (4, "backing_off", range(1, 4), "degraded"),
    (4, "recovering", range(4), "ok"),
    (6, "recovering", range(6), "ok"),
]


def slot_ms(minute_ms: int, j: int, pace: int) -> int:
    return minute_ms + j * 60_000 // pace


def pace_archive() -> Archive:
    archive = Archive()
    sequence = 100
    for k, (pace, mode, present, status) in enumerate(MINUTES):
        minute = T + k * 60_000
        for j in present:
            sequence += 1
            archive.add_snapshot(snapshot(BOOK, slot_ms(minute, j, pace), sequence))
        failures: list[dict[str, str]] = []
        if mode == "backing_off":
            failures = [{"book": BOOK, "slot": iso(minute), "reason": "backing_off"}]
        record: dict[str, Any] = run_record(
            minute, [BOOK], pace, status=status, throttled=int(status == "throttled"),
            failures=failures,
        )  # fmt: skip
        record["back_off"] = {
            "mode": mode,
            "full_requests_per_minute": FULL,
            "next_requests_per_minute": pace,
            "silent_until": None if k < 1 else iso(T + 60_000 + 30_000 + 60_000),
            "throttled_at": None if k < 1 else iso(T + 60_000 + 30_000),
        }
        archive.add_run(record)
    return archive


def test_each_minute_is_checked_against_the_pace_it_ran_at(tmp_path: Path) -> None:
    root = pace_archive().write_local(tmp_path)
    report = gaps_report(root, "2026-11-20T10:00", "2026-11-20T10:05", rpm=59)
    minutes = report.books[BOOK].minutes

    assert [m.requests_per_minute for m in minutes] == [6, 6, 4, 4, 6]
    assert [m.expected for m in minutes] == [6, 6, 4, 4, 6]
    assert [m.present for m in minutes] == [6, 3, 3, 4, 6]
    assert [len(m.missing) for m in minutes] == [0, 3, 1, 0, 0]
    assert all(m.unexpected == [] for m in minutes)
    assert minutes[2].missing == [T + 120_000]
    silenced = {"book": BOOK, "slot": iso(T + 120_000), "reason": "backing_off"}
    assert minutes[2].failures == [silenced]
    assert [m.pace_mode for m in minutes] == [mode for _, mode, _, _ in MINUTES]
    assert [m.throttled for m in minutes] == [False, True, False, False, False]

    text = report.format_table()
    troubled = [line for line in text.splitlines() if line.startswith("2026-11-20T10:0")]
    assert len(troubled) == 2  # 10:01 and 10:02; 10:03 is complete at its reduced pace
    assert "throttled" in troubled[0]
    assert "backing off" in troubled[1] and "pace 4/6" in troubled[1]


def test_a_minute_run_at_a_reduced_pace_with_the_full_grid_assumed_would_be_wrong(
    tmp_path: Path,
) -> None:
    """Without the run record the default grid is all the reader has: the reduced minute's
    snapshots are then off-grid. (Why the pace belongs in the run record.)"""
    archive = pace_archive()
    for name in [n for n in archive.objects if n.startswith("_runs/") and "T1003Z" in n]:
        del archive.objects[name]
    root = archive.write_local(tmp_path)
    report = gaps_report(root, "2026-11-20T10:03", "2026-11-20T10:04", rpm=FULL)
    (minute,) = report.books[BOOK].minutes
    assert minute.grid_from == "default" and minute.expected == FULL
    assert len(minute.unexpected) == 2  # 10:03:15 and 10:03:45 are not on the 6 grid
