"""``compact``: hive layout, Parquet schema, exact decimals, idempotency, local and GCS."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bitso_archive import compact_hour, compact_range
from bitso_archive.compact import HourNotClosedError
from bitso_archive.sources import GcsSource
from tests.archive.helpers import CORRUPT_NAME, T10, T12, Archive, snapshot

BTC_10 = "compacted/book=btc_mxn/year=2026/month=11/day=20/hour=10/btc_mxn_20261120T10.parquet"
ETH_10 = "compacted/book=eth_mxn/year=2026/month=11/day=20/hour=10/eth_mxn_20261120T10.parquet"
DEC = pa.decimal128(38, 9)
TS = pa.timestamp("ms", tz="UTC")
TABLES = ("trades", "book_changes", "book_snapshots", "quotes", "coverage")


def _statuses(summary: dict[str, Any], kind: str = "levels") -> tuple[int, int, int]:
    """(written, exists, empty) among the outputs of one kind (the levels files by default)."""
    statuses = [o["status"] for o in summary["outputs"] if o["kind"] == kind]
    return statuses.count("written"), statuses.count("exists"), statuses.count("empty")


def _check_parquet(data: bytes) -> pa.Table:
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read()
    assert table.schema.names == [
        "slot",
        "received_at",
        "sequence",
        "side",
        "level",
        "price",
        "amount",
        "orders",
    ]
    types = {f.name: f.type for f in table.schema}
    assert types["slot"] == TS and types["received_at"] == TS
    assert types["price"] == DEC and types["amount"] == DEC
    assert types["sequence"] == pa.int64() and types["level"] == pa.int32()
    assert types["side"] == pa.string() and types["orders"] == pa.int32()
    assert table.schema.field("orders").nullable
    return table


def test_compact_local_layout_schema_and_values(local_archive: Path) -> None:
    result = compact_hour(local_archive, "2026-11-20T10")
    summary = result.as_dict()
    assert _statuses(summary) == (2, 0, 0)
    # The tables too (see tests/archive/test_datasets_*): no streams here, so REST snapshots
    # give book_changes and quotes, and no trades nor book_snapshots (nothing is known).
    for table, expected in (
        ("book_changes", (2, 0, 0)),
        ("quotes", (2, 0, 0)),
        ("coverage", (2, 0, 0)),
        ("trades", (0, 0, 2)),
        ("book_snapshots", (0, 0, 2)),
    ):
        assert _statuses(summary, table) == expected, table
    assert [c["object"] for c in summary["corrupt"]] == [CORRUPT_NAME]  # once, though read twice
    levels = [o for o in summary["outputs"] if o["kind"] == "levels"]
    assert {o["object"]: o["snapshots"] for o in levels} == {BTC_10: 15, ETH_10: 13}

    btc = _check_parquet((local_archive / BTC_10).read_bytes())
    assert btc.num_rows == 14 * 6 + 4
    first = btc.slice(0, 4).to_pylist()
    assert [(r["side"], r["level"], r["price"], r["amount"]) for r in first] == [
        ("bid", 0, Decimal("46850.01"), Decimal("0.60271953")),
        ("bid", 1, Decimal("46850.00"), Decimal("0.00000001")),
        ("ask", 0, Decimal("46990.00"), Decimal("0.19090000")),
        ("ask", 1, Decimal("46990.5"), Decimal("12.5")),
    ]
    assert first[0]["slot"].isoformat() == "2026-11-20T10:00:00+00:00"
    assert first[0]["orders"] is None
    # rows are in slot order, bids then asks
    slots = btc.column("slot").cast(pa.int64()).to_pylist()
    assert slots == sorted(slots)
    eth = _check_parquet((local_archive / ETH_10).read_bytes())
    assert eth.num_rows == 13 * 6
    # hive partitions are read back from the path (and are not columns in the file)
    dataset = ds.dataset(
        local_archive / "compacted",
        partitioning="hive",
        exclude_invalid_files=True,
        ignore_prefixes=list(TABLES),  # the tables' folders beside the levels' book= ones
    )
    both = dataset.to_table()
    assert {"book", "year", "month", "day", "hour"} <= set(both.schema.names)
    assert both.num_rows == btc.num_rows + eth.num_rows


def test_compact_is_idempotent_and_deterministic(
    local_archive: Path, archive: Archive, tmp_path: Path
) -> None:
    compact_hour(local_archive, "2026-11-20T10")
    files = sorted((local_archive / "compacted").rglob("*.parquet"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    again = compact_hour(local_archive, "2026-11-20T10:30")
    assert again.as_dict()["written"] == 0 and again.as_dict()["existing"] == 2 + 2 * 3
    assert sorted((local_archive / "compacted").rglob("*.parquet")) == files
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before

    # The same input elsewhere gives byte-identical files.
    other = archive.write_local(tmp_path / "copy")
    compact_hour(other, "2026-11-20T10")
    for path, (data, _) in before.items():
        assert (other / path.relative_to(local_archive)).read_bytes() == data
    assert not list(tmp_path.rglob(".*.tmp"))


def test_compact_range_skips_missing_and_open_hours(local_archive: Path) -> None:
    result = compact_range(
        local_archive, "2026-11-20T10:00", "2026-11-20T13:00", ["btc_mxn"], now="2026-11-20T12:30"
    )
    summary = result.as_dict()
    assert summary["hours"] == ["2026-11-20T10", "2026-11-20T11"]
    levels = [o for o in summary["outputs"] if o["kind"] == "levels"]
    assert [(o["hour"], o["status"]) for o in levels] == [
        ("2026-11-20T10", "written"),
        ("2026-11-20T11", "empty"),
    ]
    assert summary["skipped_open_hours"] == ["2026-11-20T12"]
    assert not (local_archive / "compacted/book=btc_mxn/year=2026/month=11/day=20/hour=11").exists()
    assert not (local_archive / ETH_10).exists()
    with pytest.raises(HourNotClosedError):
        compact_hour(local_archive, T12, now=T12 + 3_599_999)


def test_compacted_prefix_and_source_prefix(tmp_path: Path) -> None:
    archive = Archive()
    archive.add_snapshot(snapshot("btc_mxn", T10, 1))
    root = archive.write_local(tmp_path)
    compact_hour(root, T10, compacted_prefix="parquet/v1")
    assert (root / BTC_10.replace("compacted/", "parquet/v1/")).is_file()


def test_compact_in_gcs_is_create_only(gcs_archive: str, gcs_bucket: Any) -> None:
    first = compact_hour(gcs_archive, "2026-11-20T10").as_dict()
    assert _statuses(first)[:2] == (2, 0)
    blob = gcs_bucket.get_blob(f"collector/{BTC_10}")
    generation, data = blob.generation, blob.download_as_bytes()
    table = _check_parquet(data)
    assert table.column("price")[0].as_py() == Decimal("46850.01")
    assert table.column("amount")[1].as_py() == Decimal("0.00000001")

    second = compact_hour(gcs_archive, "2026-11-20T10").as_dict()
    assert _statuses(second)[:2] == (0, 2)
    assert second["written"] == 0
    assert gcs_bucket.get_blob(f"collector/{BTC_10}").generation == generation
    names = [b.name for b in gcs_bucket.list_blobs(prefix="collector/compacted/book=")]
    assert sorted(names) == [f"collector/{BTC_10}", f"collector/{ETH_10}"]


def test_gcs_write_new_treats_412_as_already_there() -> None:
    from google.api_core.exceptions import PreconditionFailed

    calls: list[dict[str, Any]] = []

    class Blob:
        def upload_from_string(self, data: bytes, **kwargs: Any) -> None:
            calls.append(kwargs)
            raise PreconditionFailed("exists")

    class Bucket:
        def blob(self, name: str) -> Blob:
            assert name == "p/x.parquet"
            return Blob()

    class Client:
        def bucket(self, name: str) -> Bucket:
            return Bucket()

    source = GcsSource("b", "p", client=Client())
    assert source.write_new("x.parquet", b"data", "application/vnd.apache.parquet") is False
    assert calls[0]["if_generation_match"] == 0
