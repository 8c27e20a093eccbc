"""Fixtures for the archive tests: the snapshot scenario on local disk and in the GCS emulator, and
the streams world (tests/archive/stream_market.py) written once a module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.archive.helpers import Archive, scenario
from tests.archive.stream_market import World, build_world


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


@pytest.fixture(scope="module")
def world() -> World:
    """The streams world; a module may override it (another seed)."""
    return build_world()


@pytest.fixture(scope="module")
def archive_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's world written to a local directory."""
    return world.archive.write_local(tmp_path_factory.mktemp("archive"))
