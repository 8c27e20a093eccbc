"""Fixtures for the archive tests: the scenario on local disk and in the GCS emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.archive.helpers import Archive, scenario


@pytest.fixture
def gcs_bucket(bucket: str) -> Any:
    """The fresh bucket (tests/conftest.py) as a google-cloud-storage Bucket."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    return client.bucket(bucket)


@pytest.fixture
def archive() -> Archive:
    return scenario()


@pytest.fixture
def local_archive(tmp_path: Path, archive: Archive) -> Path:
    """The scenario written to a local directory (no prefix)."""
    return archive.write_local(tmp_path / "data")


@pytest.fixture
def gcs_archive(gcs_bucket: Any) -> str:
    """The scenario uploaded under the prefix "collector"; returns gs://bucket/collector."""
    scenario("collector").upload(gcs_bucket)
    return f"gs://{gcs_bucket.name}/collector"
