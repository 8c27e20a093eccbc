"""Fixtures for the archive tests: the scenario on local disk and in a GCS emulator."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitso_testkit.gcs_emulator import running_gcs_emulator
from tests.archive.helpers import Archive, scenario

_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """One in-memory GCS emulator for the whole session: its http://127.0.0.1:PORT URL."""
    with running_gcs_emulator() as url:
        yield url


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh, empty bucket in the emulator (STORAGE_EMULATOR_HOST points at it)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    return client.create_bucket(f"archive-test-{next(_bucket_numbers)}")


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
