"""The archive format module: every name it makes, it reads back; stamps and the grid are exact."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import bitso_format as fmt

SLOT_MS = fmt.datetime_to_ms(datetime(2026, 11, 24, 10, 15, 7, 118000, tzinfo=UTC))
MINUTE_MS = fmt.datetime_to_ms(datetime(2026, 11, 24, 10, 15, tzinfo=UTC))


def test_snapshot_names_read_back() -> None:
    for compression in ("none", "gzip"):
        name = fmt.snapshot_name("raw", "btc_mxn", SLOT_MS, compression)
        parsed = fmt.parse_snapshot_name(name)
        assert parsed == fmt.SnapshotName(name, "btc_mxn", SLOT_MS)
    assert fmt.parse_snapshot_name("2026/11/24/10/btc_mxn_20261324T101507.118Z.json") is None


def test_run_record_claim_and_stream_names() -> None:
    assert fmt.parse_run_record_name(fmt.run_record_name("", MINUTE_MS)) == MINUTE_MS
    assert fmt.parse_run_record_name(fmt.claim_name("", MINUTE_MS)) is None
    hour_ms = MINUTE_MS - 15 * 60_000  # 10:00
    # A call's cut: named by the call's minute, under the hour its lines were received in.
    name = fmt.stream_name("p/q", "diff-orders", "eth_mxn", hour_ms - 1, MINUTE_MS + 59_999)
    assert name == "p/q/diff-orders/2026/11/24/09/eth_mxn_20261124T1015Z.ndjson.gz"
    assert fmt.parse_stream_name(name) == fmt.StreamName(
        name, "diff-orders", "eth_mxn", hour_ms - 3_600_000, MINUTE_MS
    )
    assert fmt.parse_stream_name(name.replace("diff-orders", "orders")) is None
    # A shutdown flush: its instant and the instance, so two never collide.
    flush = fmt.stream_name("", "trades", "eth_mxn", hour_ms, SLOT_MS, "0a1b2c3d")
    assert flush == "trades/2026/11/24/10/eth_mxn_20261124T101507.118Z-0a1b2c3d.ndjson.gz"
    assert fmt.parse_stream_name(flush) == fmt.StreamName(
        flush, "trades", "eth_mxn", hour_ms, SLOT_MS, "0a1b2c3d"
    )
    # A minute's name never carries an instance, and an instant's always does.
    assert fmt.parse_stream_name(flush.replace("-0a1b2c3d", "")) is None
    assert fmt.parse_stream_name(name.replace("1015Z", "1015Z-0a1b2c3d")) is None
    record = fmt.shutdown_record_name("p", SLOT_MS, "0a1b2c3d")
    assert record == "p/_runs/2026/11/24/10/20261124T101507.118Z-0a1b2c3d.shutdown.json"
    assert fmt.parse_shutdown_record_name(record) == fmt.ShutdownName(record, SLOT_MS, "0a1b2c3d")
    assert fmt.parse_run_record_name(record) is None


def test_stamps_are_truncated_milliseconds_in_utc() -> None:
    assert fmt.iso_millis(SLOT_MS) == "2026-11-24T10:15:07.118Z"
    assert fmt.parse_iso_millis("2026-11-24T10:15:07.118Z") == SLOT_MS
    assert fmt.iso_minute(SLOT_MS) == "2026-11-24T10:15:00Z"
    assert fmt.iso_hour(SLOT_MS) == "2026-11-24T10"
    assert fmt.seconds_to_ms(SLOT_MS / 1000) == SLOT_MS
    assert fmt.parse_rfc3339("2026-11-24T11:15:07.118+01:00") == SLOT_MS
    assert fmt.parse_rfc3339("0001-01-01T00:00:00+00:01") < 0  # a time, if not one to serve
    with pytest.raises(ValueError, match="no UTC offset"):
        fmt.parse_rfc3339("2026-11-24T10:15:00")


def test_grid_rotates_books_and_fills_the_minute() -> None:
    books = ("a_b", "c_d", "e_f")
    slots = fmt.grid_minute(MINUTE_MS // fmt.MINUTE_MS, 59, books)
    assert len(slots) == 59 and slots[0].at_ms == MINUTE_MS
    assert slots[-1].at_ms == MINUTE_MS + 58 * 60_000 // 59
    assert [s.book for s in slots[:3]] == [fmt.slot_book(s.number, books) for s in slots[:3]]
    times = [t for book in books for t in fmt.book_slot_times(MINUTE_MS, 59, books, book)]
    assert sorted(times) == [s.at_ms for s in slots]


def test_where_the_archive_lives_is_checked() -> None:
    assert fmt.parse_bucket("gs://my-bucket/") == "my-bucket"
    assert fmt.parse_bucket("  ") is None
    with pytest.raises(ValueError, match="no bucket"):
        fmt.parse_bucket("gs://")
    assert fmt.parse_object_prefix("/raw/bitso/") == "raw/bitso"
    for bad in ("../x", "a/../b", "a/./b", "a b"):
        with pytest.raises(ValueError, match="not allowed"):
            fmt.parse_object_prefix(bad)


def test_a_new_file_is_created_whole_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.json"
    assert fmt.write_new_file(path, b"first") is True
    assert fmt.write_new_file(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]  # no temp file left


def test_stamps_of_early_years_keep_four_digits() -> None:
    """`%Y` writes year 1 as `1`; a run record of a minute that is long over must still match."""
    year_one = fmt.parse_rfc3339("0001-01-01T00:00:59.5Z")
    assert fmt.iso_minute(year_one) == "0001-01-01T00:00:00Z"
    assert fmt.iso_millis(year_one) == "0001-01-01T00:00:59.500Z"
    assert fmt.iso_hour(year_one) == "0001-01-01T00"
