"""The ``compact_hour`` HTTP Cloud Function, through functions-framework's test client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from functions_framework import create_app

from bitso_archive import compact_app
from bitso_http import SCHEDULE_HEADER
from tests.archive.helpers import CORRUPT_NAME

MAIN = Path(__file__).resolve().parents[2] / "functions" / "compact_hour" / "main.py"
BTC_10 = "compacted/book=btc_mxn/year=2026/month=11/day=20/hour=10/btc_mxn_20261120T10.parquet"


@pytest.fixture
def client(local_archive: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("GCS_BUCKET", raising=False)
    monkeypatch.delenv("OBJECT_PREFIX", raising=False)
    monkeypatch.delenv("COMPACTED_PREFIX", raising=False)
    monkeypatch.setenv("LOCAL_DATA_DIR", str(local_archive))
    compact_app.reset_runtime()
    return create_app(target="compact_hour", source=str(MAIN)).test_client()


def _log_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_compacts_the_hour_in_the_body(
    client: Any, local_archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resp = client.post("/", json={"hour": "2026-11-20T10"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "ok" and body["hour"] == "2026-11-20T10"
    # Per book: the levels file, and book_changes, quotes and coverage (no streams here).
    assert (body["written"], body["existing"], body["snapshots"]) == (2 * 4, 0, 28)
    assert [c["object"] for c in body["corrupt"]] == [CORRUPT_NAME]
    table = pq.read_table(local_archive / BTC_10)
    assert str(table.schema.field("price").type) == "decimal128(38, 9)"

    logs = _log_lines(capsys.readouterr().out)
    summary = [entry for entry in logs if entry["message"].startswith("compacted")]
    assert len(summary) == 1
    assert summary[0]["severity"] == "WARNING"  # one corrupt object was skipped
    assert summary[0]["written"] == 2 * 4
    assert any(CORRUPT_NAME in entry["message"] for entry in logs)

    again = client.post("/", json={"hour": "2026-11-20T10"})
    assert again.status_code == 200
    assert (again.get_json()["written"], again.get_json()["existing"]) == (0, 2 * 4)


def test_without_body_compacts_the_hour_before_the_schedule_time(
    client: Any, local_archive: Path
) -> None:
    resp = client.post("/", headers={SCHEDULE_HEADER: "2026-11-20T11:05:00Z"})
    assert resp.status_code == 200
    assert resp.get_json()["hour"] == "2026-11-20T10"
    assert (local_archive / BTC_10).is_file()


def test_without_body_or_header_uses_now(client: Any) -> None:
    resp = client.post("/")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["written"] == 0 and body["empty"] == 0  # nothing archived an hour ago


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        json.dumps({"hour": "yesterday"}).encode(),
        json.dumps({"hour": "2026-11-20T10:30"}).encode(),
        json.dumps({"hour": "2026-11-20T10", "extra": 1}).encode(),
        json.dumps({"hour": "2999-01-01T00"}).encode(),
    ],
)
def test_bad_bodies_get_400(client: Any, body: bytes, local_archive: Path) -> None:
    resp = client.post("/", data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["status"] == "bad_request"
    assert not (local_archive / "compacted" / "book=btc_mxn").exists()


@pytest.mark.parametrize("header", ["yesterday", "9999-12-31T23:30:00-01:00"])
def test_a_schedule_time_that_is_not_one_gets_400_naming_the_header(
    client: Any, header: str, local_archive: Path
) -> None:
    resp = client.post("/", headers={SCHEDULE_HEADER: header})
    assert resp.status_code == 400
    assert resp.get_json()["error"].startswith(f"{SCHEDULE_HEADER}={header!r}")
    assert not (local_archive / "compacted" / "book=btc_mxn").exists()


def test_compacts_in_gcs(
    gcs_archive: str, gcs_bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GCS_BUCKET", gcs_bucket.name)
    monkeypatch.setenv("OBJECT_PREFIX", "collector")
    monkeypatch.setenv("COMPACTED_PREFIX", "pq")
    compact_app.reset_runtime()
    client = create_app(target="compact_hour", source=str(MAIN)).test_client()
    resp = client.post("/", json={"hour": "2026-11-20T10"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["written"] == 2 * 4
    name = "collector/" + BTC_10.replace("compacted/", "pq/")
    assert gcs_bucket.get_blob(name) is not None
    coverage = name.replace("pq/", "pq/coverage/")
    assert gcs_bucket.get_blob(coverage) is not None


def test_main_imports_no_polars_or_matplotlib() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.path[:0] = ['.', 'functions/compact_hour'];"
        "import main;"
        "bad = [m for m in ('polars', 'matplotlib', 'tqdm') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = MAIN.parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("GCS_BUCKET", "gs://"), ("OBJECT_PREFIX", "../elsewhere"), ("COMPACTED_PREFIX", "a b")],
)
def test_a_bad_setting_answers_500_naming_it(
    client: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    compact_app.reset_runtime()
    resp = client.post("/", json={"hour": "2026-11-20T10"})
    assert resp.status_code == 500
    body = resp.get_json()
    assert body["status"] == "misconfigured"
    assert body["error"].startswith(f"{name}={value!r}")
