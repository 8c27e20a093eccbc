"""``load``: levels and top of book, exact decimals, hour-prefix listing, corrupt objects."""

from __future__ import annotations

import gzip
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from bitso_archive import load, load_levels, top_of_book
from bitso_archive.sources import LocalSource, open_source
from bitso_archive.table import DecimalRangeError
from tests.archive.helpers import (
    CORRUPT_NAME,
    T10,
    T12,
    Archive,
    iso,
    ms,
    snapshot,
    snapshot_name,
)

DEC = pl.Decimal(38, 9)
UTC_MS = pl.Datetime("ms", "UTC")


class RecordingSource:
    """Wraps a real source and records every prefix its list call receives."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.listed: list[str] = []
        self.read_names: list[str] = []

    @property
    def url(self) -> str:
        return str(self.inner.url)

    @property
    def max_workers(self) -> int:
        return int(self.inner.max_workers)

    def list_names(self, prefix: str) -> list[str]:
        self.listed.append(prefix)
        return list(self.inner.list_names(prefix))

    def read(self, name: str) -> bytes:
        self.read_names.append(name)
        return bytes(self.inner.read(name))

    def write_new(self, name: str, data: bytes, content_type: str) -> bool:
        return bool(self.inner.write_new(name, data, content_type))


def test_levels_schema_and_exact_decimals(local_archive: Path) -> None:
    levels = load_levels(local_archive, "2026-11-20T10:00", "2026-11-20T10:00:01", ["btc_mxn"])
    assert levels.schema == pl.Schema(
        {
            "book": pl.String,
            "slot": UTC_MS,
            "received_at": UTC_MS,
            "sequence": pl.Int64,
            "side": pl.String,
            "level": pl.Int32,
            "price": DEC,
            "amount": DEC,
            "orders": pl.Int32,
        }
    )
    rows = levels.to_dicts()
    assert [(r["side"], r["level"]) for r in rows] == [
        ("bid", 0),
        ("bid", 1),
        ("ask", 0),
        ("ask", 1),
    ]
    assert [r["price"] for r in rows] == [
        Decimal("46850.01"),
        Decimal("46850.00"),
        Decimal("46990.00"),
        Decimal("46990.5"),
    ]
    assert [r["amount"] for r in rows] == [
        Decimal("0.60271953"),
        Decimal("0.00000001"),
        Decimal("0.19090000"),
        Decimal("12.5"),
    ]
    assert all(isinstance(r["price"], Decimal) for r in rows)
    assert rows[0]["book"] == "btc_mxn"
    assert rows[0]["slot"].isoformat() == "2026-11-20T10:00:00+00:00"
    assert rows[0]["received_at"].isoformat() == "2026-11-20T10:00:00.183000+00:00"
    assert rows[0]["orders"] is None  # Bitso's aggregated book does not count orders


def test_top_of_book_is_exact(local_archive: Path) -> None:
    top = top_of_book(local_archive, "2026-11-20T10:00", "2026-11-20T10:01")
    assert top.schema["mid"] == DEC and top.schema["spread"] == DEC
    assert top.height == 7  # minute 10:00: 4 btc_mxn + 3 eth_mxn
    first = top.filter(pl.col("book") == "btc_mxn").row(0, named=True)
    assert first["best_bid"] == Decimal("46850.01")
    assert first["best_ask"] == Decimal("46990.00")
    assert first["best_bid_amount"] == Decimal("0.60271953")
    assert first["mid"] == Decimal("46920.005")
    assert first["spread"] == Decimal("139.99")


def test_range_books_and_missing_hours(local_archive: Path) -> None:
    result = load(local_archive, "2026-11-20T10:00", "2026-11-20T13:00")
    # Hour 10: 15 btc + 13 eth; hour 11 does not exist; hour 12: one each.
    per_book = dict(result.top.group_by("book").len().sort("book").iter_rows())
    assert per_book == {"btc_mxn": 16, "eth_mxn": 14}
    assert result.snapshots == 30
    assert result.levels.height == 29 * 6 + 4  # the first snapshot has 2 levels a side
    assert [c.name for c in result.corrupt] == [CORRUPT_NAME]
    slots = result.top["slot"].dt.epoch("ms").to_list()
    assert T12 in slots and T12 + 8571 in slots

    eth = load_levels(
        local_archive, "2026-11-20T10:00:08.571Z", "2026-11-20T10:00:25.714Z", ["eth_mxn"]
    )
    assert eth["slot"].dt.epoch("ms").unique().to_list() == [T10 + 8571]


def test_load_lists_only_the_hour_prefixes_in_range(local_archive: Path) -> None:
    src = RecordingSource(LocalSource(local_archive))
    load_levels(src, "2026-11-20T10:00", "2026-11-20T11:00")
    assert src.listed == ["2026/11/20/10/"]
    src.listed.clear()
    load_levels(src, "2026-11-20T10:30", "2026-11-20T12:00:01")
    assert src.listed == ["2026/11/20/10/", "2026/11/20/11/", "2026/11/20/12/"]
    assert not any(n.startswith(("_runs", "compacted")) for n in src.read_names)


def test_gzip_objects_are_read_by_magic_bytes(tmp_path: Path) -> None:
    archive = Archive()
    archive.add_snapshot(snapshot("btc_mxn", T10, 1), gz=True)
    # gzip bytes under a plain .json name, and plain JSON under a .json.gz name
    body = json.dumps(snapshot("btc_mxn", T10 + 1000, 2)).encode()
    archive.add_raw(snapshot_name("btc_mxn", T10 + 1000), gzip.compress(body))
    archive.add_raw(
        snapshot_name("btc_mxn", T10 + 2000, gz=True),
        json.dumps(snapshot("btc_mxn", T10 + 2000, 3)).encode(),
    )
    archive.write_local(tmp_path)
    top = top_of_book(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    assert top["sequence"].to_list() == [1, 2, 3]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (gzip.compress(b'{"schema_version": 1}' * 50, mtime=0)[:30], "bad gzip"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({**snapshot("btc_mxn", T10 + 1000, 1), "extra": 1}).encode(), "unexpected"),
        (
            json.dumps(
                {k: v for k, v in snapshot("btc_mxn", T10 + 1000, 1).items() if k != "sequence"}
            ).encode(),
            "missing",
        ),
        (json.dumps(snapshot("btc_mxn", T10 + 1000, -1)).encode(), "sequence"),
        (
            json.dumps(
                snapshot("btc_mxn", T10 + 1000, 1, bids=[{"price": 1.5, "amount": "1"}])
            ).encode(),
            "price",
        ),
        (
            json.dumps(
                snapshot("btc_mxn", T10 + 1000, 1, bids=[{"price": "1e5", "amount": "1"}])
            ).encode(),
            "price",
        ),
        (
            json.dumps(
                snapshot("btc_mxn", T10 + 1000, 1, asks=[{"price": "1", "amount": "-2"}])
            ).encode(),
            "amount",
        ),
        (
            json.dumps(
                snapshot("btc_mxn", T10 + 1000, 1, asks=[{"price": "1\n2", "amount": "2"}])
            ).encode(),
            "price",
        ),
        (json.dumps(snapshot("eth_mxn", T10 + 1000, 1)).encode(), "does not match"),
        (json.dumps(snapshot("btc_mxn", T10 + 2000, 1)).encode(), "does not match"),
    ],
)
def test_corrupt_object_is_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: bytes, reason: str
) -> None:
    archive = Archive()
    archive.add_snapshot(snapshot("btc_mxn", T10, 1))
    bad = archive.add_raw(snapshot_name("btc_mxn", T10 + 1000), body)
    archive.add_snapshot(snapshot("btc_mxn", T10 + 3000, 3))
    archive.write_local(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bitso_archive"):
        result = load(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    assert result.snapshots == 2
    assert result.top["sequence"].to_list() == [1, 3]
    assert len(result.corrupt) == 1
    assert result.corrupt[0].name == bad
    assert reason in result.corrupt[0].reason
    assert bad in caplog.text


def test_value_that_does_not_fit_decimal_38_9_fails_loudly(tmp_path: Path) -> None:
    archive = Archive()
    tiny = [{"price": "46850.01", "amount": "0.0000000001"}]  # 10 decimals
    archive.add_snapshot(snapshot("btc_mxn", T10, 1, bids=tiny))
    archive.write_local(tmp_path)
    with pytest.raises(DecimalRangeError, match=r"0\.0000000001.*btc_mxn_20261120T100000"):
        load_levels(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    # 30 integer digits, and 34 (which Arrow's own cast would silently wrap around)
    for digits in (30, 34, 38):
        huge = [{"price": "1" * digits, "amount": "1"}]
        archive.add_snapshot(snapshot("btc_mxn", T10, 1, asks=huge))
        archive.write_local(tmp_path)
        with pytest.raises(DecimalRangeError, match="does not fit"):
            load_levels(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    # 29 integer digits and 9 decimals is the largest that fits
    top = [{"price": "9" * 29 + "." + "9" * 9, "amount": "1"}]
    archive.add_snapshot(snapshot("btc_mxn", T10, 1, asks=top))
    archive.write_local(tmp_path)
    levels = load_levels(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    assert levels["price"].to_list()[-1] == Decimal("9" * 29 + "." + "9" * 9)


def test_order_level_books_are_summed_by_price(tmp_path: Path) -> None:
    """An anchor (or any aggregate=false snapshot) lists orders; as levels they are summed by
    price, best first, with their order counts, so level 0 is the whole best level."""
    archive = Archive()
    bids = [
        {"price": "1.5", "amount": "0.03703807", "oid": "abc"},
        {"price": "1.4", "amount": "3", "oid": "def"},
        {"price": "1.5", "amount": "0.00539339", "oid": "jkl"},
    ]
    asks = [
        {"price": "1.6", "amount": "2", "oid": "ghi"},
        {"price": "1.6", "amount": "1", "oid": "x"},
    ]
    archive.add_snapshot(snapshot("btc_mxn", T10, 1, bids=bids, asks=asks, aggregate=False))
    archive.add_snapshot(snapshot("btc_mxn", T10 + 1000, 2))  # aggregated by Bitso
    archive.write_local(tmp_path)
    result = load(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    anchor = result.levels.filter(pl.col("sequence") == 1)
    assert anchor.select("side", "level", "price", "amount", "orders").rows() == [
        ("bid", 0, Decimal("1.5"), Decimal("0.04243146"), 2),
        ("bid", 1, Decimal("1.4"), Decimal("3"), 1),
        ("ask", 0, Decimal("1.6"), Decimal("3"), 2),
    ]
    assert result.levels.filter(pl.col("sequence") == 2)["orders"].null_count() == 6
    top = result.top.row(0, named=True)
    assert (top["best_bid"], top["best_bid_amount"]) == (Decimal("1.5"), Decimal("0.04243146"))
    assert (top["best_ask"], top["best_ask_amount"]) == (Decimal("1.6"), Decimal("3"))


def test_empty_range_gives_empty_typed_frames(local_archive: Path) -> None:
    result = load(local_archive, "2026-11-20T11:00", "2026-11-20T11:30")
    assert result.snapshots == 0 and result.levels.height == 0 and result.top.height == 0
    assert result.levels.schema["price"] == DEC


def test_bad_arguments(local_archive: Path) -> None:
    with pytest.raises(ValueError, match="end must be after"):
        load_levels(local_archive, "2026-11-20T10:00", "2026-11-20T10:00")
    with pytest.raises(ValueError, match="not a book name"):
        load_levels(local_archive, "2026-11-20T10:00", "2026-11-20T11:00", ["BTC-MXN"])
    with pytest.raises(ValueError, match="not an existing directory"):
        load_levels(local_archive / "nope", "2026-11-20T10:00", "2026-11-20T11:00")
    with pytest.raises(ValueError, match="unknown source"):
        open_source("s3://bucket/x")


def test_load_from_gcs_with_prefix_and_gzip(gcs_archive: str, local_archive: Path) -> None:
    from_gcs = load(gcs_archive, "2026-11-20T10:00", "2026-11-20T13:00")
    from_disk = load(local_archive, "2026-11-20T10:00", "2026-11-20T13:00")
    assert from_gcs.levels.equals(from_disk.levels)
    assert from_gcs.top.equals(from_disk.top)
    assert [c.name for c in from_gcs.corrupt] == [CORRUPT_NAME]
    # the gzip objects (Content-Encoding: gzip) of minute 10:03 came back
    eth_0303 = from_gcs.top.filter(
        (pl.col("book") == "eth_mxn")
        & (pl.col("slot").dt.epoch("ms") >= ms("2026-11-20T10:03:00Z"))
    )
    assert eth_0303.height >= 4
    assert iso(T10) == "2026-11-20T10:00:00.000Z"


def test_gcs_load_of_one_hour_lists_one_prefix(gcs_archive: str) -> None:
    src = RecordingSource(open_source(gcs_archive))
    levels = load_levels(src, "2026-11-20T12:00", "2026-11-20T13:00")
    assert src.listed == ["2026/11/20/12/"]
    assert levels["slot"].dt.epoch("ms").unique().sort().to_list() == [T12, T12 + 8571]


def test_inexact_mid_fails_loudly(tmp_path: Path) -> None:
    archive = Archive()
    bids = [{"price": "0.000000001", "amount": "1"}]
    asks = [{"price": "0.000000002", "amount": "1"}]
    archive.add_snapshot(snapshot("btc_mxn", T10, 1, bids=bids, asks=asks))
    archive.write_local(tmp_path)
    with pytest.raises(DecimalRangeError, match="needs more than 9 decimals"):
        top_of_book(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01")
    # the level table itself is fine
    assert load_levels(tmp_path, "2026-11-20T10:00", "2026-11-20T10:01").height == 2


def test_progress_bar_only_when_asked_and_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bitso_archive import snapshots

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = snapshots._progress_bar(1000, "snapshots", True)
    assert type(bar).__module__.startswith("tqdm")
    bar.close()
    assert isinstance(snapshots._progress_bar(1000, "snapshots", False), snapshots._NoBar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(snapshots._progress_bar(1000, "snapshots", True), snapshots._NoBar)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bitso_archive, bitso_archive.compact, bitso_archive.sources;"
        "bad = [m for m in ('polars', 'matplotlib', 'tqdm', 'google.cloud.storage') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
