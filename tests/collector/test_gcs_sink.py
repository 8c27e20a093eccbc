"""The GCS sink with the real google-cloud-storage client against a strict emulator.

`StrictGcs` enforces `ifGenerationMatch` (the emulator alone does not) and fails on demand.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings
from bitso_collector.errors import StorageError
from bitso_collector.sinks import GcsSink, LocalSink, make_sink
from bitso_collector.sinks.gcs import _Upload
from bitso_testkit.processes import FUNCTION_DIR
from bitso_testkit.strict_gcs import StrictGcs


def fast_sink(bucket: str, **options: Any) -> GcsSink:
    """Short attempt timeouts and backoff so fault tests take well under a second each."""
    options = {"attempt_timeout": 0.5, "backoff_initial": 0.05, "backoff_max": 0.2, **options}
    return GcsSink(bucket, **options)


def outcomes(gcs: StrictGcs, bucket: str, name: str) -> list[str]:
    return [entry.outcome for entry in gcs.upload_log(bucket) if entry.name == name]


def test_writes_once_with_type_checksum_and_location(gcs: StrictGcs, bucket: str) -> None:
    sink = GcsSink(bucket)
    key = "2026/11/24/10/btc_mxn_20261124T101507.118Z.json"
    data = b'{"book":"btc_mxn"}\n'

    assert sink.create(key, data) is True
    assert sink.create(key, b'{"book":"other"}\n') is False

    assert sink.location(key) == f"gs://{bucket}/{key}"
    (stored,) = gcs.list_objects(bucket)
    assert stored["name"] == key
    assert stored["contentType"] == "application/json"
    assert stored.get("contentEncoding") is None
    assert stored["crc32c"] == _Upload(key, data, "", None).crc32c
    assert gcs.read_object(bucket, key) == data
    assert outcomes(gcs, bucket, key) == ["200", "412"]
    assert {entry.if_generation_match for entry in gcs.upload_log(bucket)} == {"0"}


def test_gzip_bodies_carry_content_encoding(gcs: StrictGcs, bucket: str) -> None:
    key = "2026/11/24/10/btc_mxn_20261124T101507.118Z.json.gz"
    data = gzip.compress(b'{"book":"btc_mxn"}\n')

    assert GcsSink(bucket).create(key, data, content_encoding="gzip") is True

    (stored,) = gcs.list_objects(bucket)
    assert (stored["contentType"], stored["contentEncoding"]) == ("application/json", "gzip")
    assert gzip.decompress(gcs.read_object(bucket, key)) == b'{"book":"btc_mxn"}\n'


@pytest.mark.parametrize("status", [503, 429, 500])
def test_transient_errors_are_retried(gcs: StrictGcs, bucket: str, status: int) -> None:
    gcs.fail(3, status, bucket=bucket)

    assert fast_sink(bucket).create("a.json", b"{}\n") is True

    assert outcomes(gcs, bucket, "a.json") == [str(status)] * 3 + ["200"]


def test_a_hung_upload_times_out_and_is_retried(gcs: StrictGcs, bucket: str) -> None:
    gcs.hang(1, seconds=5, bucket=bucket)
    started = time.monotonic()

    assert fast_sink(bucket).create("a.json", b"{}\n") is True

    assert time.monotonic() - started < 2
    assert outcomes(gcs, bucket, "a.json") == ["hang", "200"]


def test_a_write_that_landed_unheard_counts_as_ours(gcs: StrictGcs, bucket: str) -> None:
    """The reply is lost after the object was written: the retry's 412 is our own object."""
    gcs.drop_reply(1, bucket=bucket)

    assert fast_sink(bucket).create("claim", b'{"run_id":"ours"}') is True

    assert outcomes(gcs, bucket, "claim") == ["dropped", "412"]
    assert gcs.read_object(bucket, "claim") == b'{"run_id":"ours"}'


def test_a_412_after_a_retry_for_someone_elses_object_is_a_duplicate(
    gcs: StrictGcs, bucket: str
) -> None:
    assert GcsSink(bucket).create("claim", b'{"run_id":"theirs"}') is True
    gcs.fail(1, 503, bucket=bucket)

    assert fast_sink(bucket).create("claim", b'{"run_id":"ours"}') is False

    assert outcomes(gcs, bucket, "claim") == ["200", "503", "412"]
    assert gcs.read_object(bucket, "claim") == b'{"run_id":"theirs"}'


def test_failing_for_good_raises_by_the_deadline(gcs: StrictGcs, bucket: str) -> None:
    gcs.fail(None, 503, bucket=bucket)
    sink = fast_sink(bucket)
    started = time.time()

    with pytest.raises(StorageError, match=rf"gs://{bucket}/a.json not stored .*HTTP 503"):
        sink.create("a.json", b"{}\n", deadline=started + 1.5)

    assert time.time() < started + 1.5
    assert len(outcomes(gcs, bucket, "a.json")) >= 3
    assert gcs.list_objects(bucket) == []


def test_the_deadline_is_read_on_the_sinks_clock(gcs: StrictGcs, bucket: str) -> None:
    """The collector's clock may be shifted (tests, benchmarks); its deadlines are on it."""
    clock = ShiftedClock(3600.0)
    gcs.fail(None, 503, bucket=bucket)
    started = time.monotonic()

    with pytest.raises(StorageError, match="HTTP 503"):
        fast_sink(bucket, clock=clock).create("a.json", b"{}\n", deadline=clock.now() + 1.5)

    assert time.monotonic() - started < 1.5
    assert len(outcomes(gcs, bucket, "a.json")) >= 2


def test_a_passed_deadline_sends_nothing(gcs: StrictGcs, bucket: str) -> None:
    with pytest.raises(StorageError, match="before the deadline"):
        GcsSink(bucket).create("a.json", b"{}\n", deadline=time.time() - 1)

    assert gcs.upload_log(bucket) == []


@pytest.mark.parametrize("status", [400, 403])
def test_permanent_errors_fail_at_once(gcs: StrictGcs, bucket: str, status: int) -> None:
    gcs.fail(1, status, bucket=bucket)

    with pytest.raises(StorageError, match=f"HTTP {status}"):
        fast_sink(bucket).create("a.json", b"{}\n")

    assert outcomes(gcs, bucket, "a.json") == [str(status)]


def test_a_missing_bucket_fails_at_once(bucket: str) -> None:
    with pytest.raises(StorageError, match=r"gs://no-such-bucket/a\.json: HTTP 404"):
        GcsSink("no-such-bucket").create("a.json", b"{}\n")


def test_one_client_per_sink_created_on_first_use(bucket: str) -> None:
    from google.cloud import storage  # type: ignore[attr-defined]

    made: list[Any] = []

    def factory() -> Any:
        made.append(storage.Client())
        return made[-1]

    sink = GcsSink(bucket, client_factory=factory)
    assert made == []
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: sink.create(f"k{n}.json", b"{}\n"), range(16)))

    assert results == [True] * 16
    assert len(made) == 1


@pytest.mark.parametrize("kind", ["gcs", "local"])
def test_racing_claims_give_exactly_one_winner(
    kind: str, bucket: str, tmp_path: Any, gcs: StrictGcs
) -> None:
    sink = GcsSink(bucket) if kind == "gcs" else LocalSink(tmp_path)
    key = "_runs/2026/11/24/10/20261124T1015Z.claim"
    start = threading.Barrier(8)

    def claim(n: int) -> bool:
        start.wait()
        return sink.create(key, json.dumps({"run_id": n}).encode())

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(8)))

    assert sorted(results) == [False] * 7 + [True]
    if kind == "gcs":
        assert sorted(outcomes(gcs, bucket, key)) == ["200"] + ["412"] * 7


class _StubBlob:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.content_encoding: str | None = None

    def upload_from_string(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


class _UnreadableBucket:
    """Creates answer 412; reads answer 403 (a service account with objectCreator only)."""

    name = "b"

    def blob(self, key: str) -> _StubBlob:
        from google.api_core.exceptions import PreconditionFailed

        return _StubBlob(PreconditionFailed("exists"))

    def get_blob(self, key: str, **kwargs: Any) -> Any:
        from google.api_core.exceptions import Forbidden

        raise Forbidden("objectCreator cannot read")


def test_an_unprovable_412_after_a_retry_is_not_ours() -> None:
    upload = _Upload("claim", b"ours", "application/json", None)

    assert upload.attempt(_UnreadableBucket(), 1.0, may_have_landed=True) is False
    assert upload.attempt(_UnreadableBucket(), 1.0, may_have_landed=False) is False


def test_is_ours_needs_matching_hashes() -> None:
    upload = _Upload("k", b"ours", "application/json", None)

    assert upload.is_ours(upload.md5, upload.crc32c)
    assert upload.is_ours(None, upload.crc32c)
    assert not upload.is_ours(upload.md5, "AAAAAA==")
    assert not upload.is_ours(None, None)


def test_make_sink_picks_gcs_when_a_bucket_is_set(tmp_path: Any) -> None:
    gcs_sink = make_sink(Settings(gcs_bucket="my-bucket"))
    local_sink = make_sink(Settings(local_data_dir=str(tmp_path)))

    assert isinstance(gcs_sink, GcsSink)
    assert gcs_sink.location("a/b.json") == "gs://my-bucket/a/b.json"
    assert isinstance(local_sink, LocalSink)


def test_importing_main_loads_no_google_cloud_client() -> None:
    code = (
        "import sys, main; "
        "from bitso_collector.sinks import make_sink; "
        "from bitso_collector.config import Settings; "
        "make_sink(Settings(gcs_bucket='b')); "
        "loaded = [m for m in sys.modules if m.startswith(('google.cloud.storage', "
        "'google.cloud.secretmanager'))]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=FUNCTION_DIR, check=True)
