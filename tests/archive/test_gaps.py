"""``gaps``: counts against a hand-computed expectation of the scenario (see helpers.scenario)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bitso_archive import gaps_report
from bitso_archive.gaps import minute_spans, unchanged_runs
from tests.archive.helpers import CORRUPT_NAME, LOST_SLOT, T10

# Hand-computed from the grid: R = 7 -> offsets .000 08.571 17.142 25.714 34.285 42.857
# 51.428; even minutes (10:00, :02, :04) give btc_mxn j = 0,2,4,6 and eth_mxn j = 1,3,5.
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "btc_mxn": [
        {"minute": "2026-11-20T10:00:00Z", "expected": 4, "present": 4, "missing": []},
        {
            "minute": "2026-11-20T10:01:00Z",
            "expected": 3,
            "present": 1,
            "missing": ["2026-11-20T10:01:25.714Z", "2026-11-20T10:01:42.857Z"],
        },
        {
            "minute": "2026-11-20T10:02:00Z",
            "expected": 4,
            "present": 3,
            "missing": ["2026-11-20T10:02:17.142Z"],
        },
        {"minute": "2026-11-20T10:03:00Z", "expected": 3, "present": 3, "missing": []},
        {"minute": "2026-11-20T10:04:00Z", "expected": 4, "present": 4, "missing": []},
    ],
    "eth_mxn": [
        {"minute": "2026-11-20T10:00:00Z", "expected": 3, "present": 3, "missing": []},
        {
            "minute": "2026-11-20T10:01:00Z",
            "expected": 4,
            "present": 2,
            "missing": ["2026-11-20T10:01:34.285Z", "2026-11-20T10:01:51.428Z"],
        },
        {
            "minute": "2026-11-20T10:02:00Z",
            "expected": 3,
            "present": 2,
            "missing": ["2026-11-20T10:02:25.714Z"],
        },
        {"minute": "2026-11-20T10:03:00Z", "expected": 4, "present": 4, "missing": []},
        {
            "minute": "2026-11-20T10:04:00Z",
            "expected": 3,
            "present": 2,
            "missing": ["2026-11-20T10:04:42.857Z"],
        },
    ],
}


def _check(doc: dict[str, Any]) -> None:
    assert set(doc["books"]) == {"btc_mxn", "eth_mxn"}
    for book, minutes in EXPECTED.items():
        got = doc["books"][book]["minutes"]
        assert [
            {k: m[k] for k in ("minute", "expected", "present", "missing")} for m in got
        ] == minutes
        assert [m["throttled"] for m in got] == [False, True, False, False, False]
        assert [m["run_status"] for m in got] == ["ok", "throttled", "degraded", "ok", None]
        assert [m["grid_from"] for m in got] == ["run_record"] * 4 + ["default"]
    btc, eth = doc["books"]["btc_mxn"], doc["books"]["eth_mxn"]
    assert btc["minutes"][2]["lost"] == [
        {"book": "btc_mxn", "slot": LOST_SLOT, "reason": "storage: 503"}
    ]
    assert eth["minutes"][2]["lost"] == []
    assert eth["minutes"][2]["corrupt"] == [CORRUPT_NAME]
    assert btc["summary"] == {
        "minutes": 5,
        "expected": 18,
        "present": 15,
        "missing": 3,
        "completeness": round(15 / 18, 6),
        "incomplete_minutes": 2,
        "throttled_minutes": 1,
        "lost": 1,
        "corrupt": 0,
        "unexpected": 0,
        "minutes_without_run_record": 1,
        "unchanged_sequence_runs": 1,
        "longest_unchanged_sequence": 3,
    }
    assert (eth["summary"]["expected"], eth["summary"]["present"], eth["summary"]["missing"]) == (
        17,
        13,
        4,
    )
    assert eth["summary"]["corrupt"] == 1
    assert eth["summary"]["incomplete_minutes"] == 3
    assert btc["unchanged_sequence"] == [
        {
            "sequence": 5007,  # 4 in 10:00, 1 in 10:01, then 10:02:00 and 10:02:34
            "start": "2026-11-20T10:02:34.285Z",
            "end": "2026-11-20T10:03:08.571Z",
            "length": 3,
        }
    ]
    assert eth["unchanged_sequence"] == []
    assert doc["corrupt"] == [{"object": CORRUPT_NAME, "reason": doc["corrupt"][0]["reason"]}]
    assert doc["run_records"] == 4


def test_gaps_against_hand_computed_counts(local_archive: Path) -> None:
    report = gaps_report(local_archive, "2026-11-20T10:00", "2026-11-20T10:05", rpm=7)
    doc = json.loads(report.to_json())
    _check(doc)
    assert doc["start"] == "2026-11-20T10:00:00.000Z" and doc["end"] == "2026-11-20T10:05:00.000Z"


def test_gaps_in_gcs_match(gcs_archive: str) -> None:
    doc = gaps_report(gcs_archive, "2026-11-20T10:00", "2026-11-20T10:05", rpm=7).as_dict()
    _check(doc)
    assert doc["source"] == gcs_archive


def test_minutes_without_run_record_use_the_default_rpm(local_archive: Path) -> None:
    # 10:04 has no run record: with the default R = 59 and the books found (sorted),
    # minute 29919484 is even, so btc_mxn gets the 30 even slots and eth_mxn the 29 odd.
    report = gaps_report(local_archive, "2026-11-20T10:04", "2026-11-20T10:05")
    btc = report.books["btc_mxn"].minutes[0]
    eth = report.books["eth_mxn"].minutes[0]
    assert (btc.expected, eth.expected) == (30, 29)
    assert btc.requests_per_minute == 59 and btc.grid_from == "default"
    # Only 10:04:00.000 (j = 0) of the R = 7 snapshots lies on the R = 59 grid.
    assert btc.present == 1 and len(btc.unexpected) == 3
    assert eth.present == 0 and len(eth.unexpected) == 2


def test_range_clips_the_grid_and_books_filter(local_archive: Path) -> None:
    report = gaps_report(
        local_archive, "2026-11-20T10:01:10", "2026-11-20T10:01:30", ["eth_mxn"], rpm=7
    )
    assert list(report.books) == ["eth_mxn"]
    (minute,) = report.books["eth_mxn"].minutes
    assert minute.expected == 1 and minute.present == 1  # 10:01:17.142 only
    assert minute.throttled


def test_a_book_with_no_snapshot_at_all_is_all_missing(local_archive: Path) -> None:
    report = gaps_report(
        local_archive, "2026-11-20T10:00", "2026-11-20T10:01", ["btc_mxn", "xrp_mxn"]
    )
    xrp = report.books["xrp_mxn"]
    # The run record's book list does not contain xrp_mxn: nothing expected of it.
    assert xrp.summary()["expected"] == 0
    report = gaps_report(
        local_archive, "2026-11-20T10:04", "2026-11-20T10:05", ["btc_mxn", "xrp_mxn"]
    )
    # No run record at 10:04: the grid is --books in order, so xrp_mxn gets the odd slots.
    assert report.books["xrp_mxn"].minutes[0].expected == 29
    assert report.books["xrp_mxn"].minutes[0].present == 0


def test_unchanged_runs() -> None:
    pairs = [(1, 5), (2, 5), (3, 6), (4, 7), (5, 7), (6, 7), (7, 8), (8, 8)]
    assert [(r.sequence, r.start_ms, r.end_ms, r.length) for r in unchanged_runs(pairs)] == [
        (5, 1, 2, 2),
        (7, 4, 6, 3),
        (8, 7, 8, 2),
    ]
    assert unchanged_runs([]) == [] and unchanged_runs([(1, 1)]) == []


def test_table_and_png(local_archive: Path, tmp_path: Path) -> None:
    report = gaps_report(local_archive, "2026-11-20T10:00", "2026-11-20T10:05", rpm=7)
    text = report.format_table()
    assert "btc_mxn" in text and "83.33%" in text and "76.47%" in text
    assert "2026-11-20T10:01Z" in text and "throttled" in text and "lost 1" in text
    assert "Runs of unchanged sequence: 1" in text
    png = tmp_path / "gaps.png"
    report.save_png(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_corrupt_run_record_is_reported(tmp_path: Path, local_archive: Path) -> None:
    bad = local_archive / "_runs/2026/11/20/10/20261120T1003Z.json"
    bad.write_bytes(b"{oops")
    report = gaps_report(local_archive, "2026-11-20T10:00", "2026-11-20T10:05", rpm=7)
    assert [c.name for c in report.corrupt_run_records] == [
        "_runs/2026/11/20/10/20261120T1003Z.json"
    ]
    assert report.books["btc_mxn"].minutes[3].grid_from == "default"
    assert report.run_records == 3


@pytest.mark.parametrize("rpm", [0, 61])
def test_bad_rpm(local_archive: Path, rpm: int) -> None:
    with pytest.raises(ValueError, match="rpm"):
        gaps_report(local_archive, T10, T10 + 60_000, rpm=rpm)


def test_a_short_trial_in_a_long_range_counts_the_rest_as_not_collected(
    local_archive: Path,
) -> None:
    """Five minutes collected in two hours asked for, half an hour of which is still to come."""
    report = gaps_report(
        local_archive, "2026-11-20T10:00", "2026-11-20T12:00", rpm=7, now="2026-11-20T11:30:20Z"
    )
    doc = report.as_dict()
    _check(doc)  # the collected minutes are judged exactly as before
    assert doc["counted_until"] == "2026-11-20T11:30:00.000Z"
    assert doc["not_collected"] == {
        "minutes": 85,
        "spans": [
            {"start": "2026-11-20T10:05:00.000Z", "end": "2026-11-20T11:30:00.000Z", "minutes": 85}
        ],
    }
    text = report.format_table()
    assert "Counted until 2026-11-20T11:30:00.000Z: the minutes from then on have not ended" in text
    assert (
        "Not collected (no run record, nothing stored): 85 minutes: "
        "2026-11-20T10:05Z to 2026-11-20T11:29Z"
    ) in text
    assert "Incomplete or troubled minutes: 5" in text  # 10:01, 10:02 of each book, 10:04 eth


def test_minutes_after_now_are_never_counted(local_archive: Path) -> None:
    mid_minute = gaps_report(
        local_archive, "2026-11-20T10:00", "2026-11-20T10:05", rpm=7, now="2026-11-20T10:02:30Z"
    )
    assert [m.minute_ms - T10 for m in mid_minute.books["btc_mxn"].minutes] == [0, 60_000]
    assert mid_minute.not_collected == []
    before = gaps_report(
        local_archive, "2026-11-20T10:00", "2026-11-20T10:05", rpm=7, now="2026-11-20T09:00Z"
    )
    assert all(book.minutes == [] for book in before.books.values())
    assert before.not_collected == [] and before.counted_until == T10


def test_not_collected_minutes_are_joined_into_spans() -> None:
    assert [str(s) for s in minute_spans([T10, T10 + 60_000, T10 + 180_000])] == [
        "2026-11-20T10:00Z to 2026-11-20T10:01Z",
        "2026-11-20T10:03Z",
    ]
    assert minute_spans([]) == []
