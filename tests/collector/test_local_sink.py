"""The local sink: atomic, create-only, directories made as needed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bitso_collector.errors import StorageError
from bitso_collector.sinks import LocalSink

KEY = "2026/11/24/10/btc_mxn_20261124T101507.118Z.json"


def test_writes_create_directories_and_leave_no_temp_files(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path / "data")
    assert sink.create(KEY, b'{"a":1}\n') is True
    assert (tmp_path / "data" / KEY).read_bytes() == b'{"a":1}\n'
    assert sorted(p.name for p in (tmp_path / "data" / KEY).parent.iterdir()) == [Path(KEY).name]
    assert sink.location(KEY) == str(tmp_path / "data" / KEY)


def test_an_existing_name_is_never_overwritten(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    assert sink.create(KEY, b"first") is True
    assert sink.create(KEY, b"second") is False
    assert (tmp_path / KEY).read_bytes() == b"first"


def test_racing_writers_store_exactly_one(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        barrier.wait()
        results.append(sink.create(KEY, f"writer {n}".encode()))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert (tmp_path / KEY).read_bytes().startswith(b"writer ")
    assert len(list((tmp_path / KEY).parent.iterdir())) == 1


def test_a_file_in_the_way_is_a_storage_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "2026").write_text("not a directory")
    with pytest.raises(StorageError, match=r"cannot write .*btc_mxn"):
        LocalSink(tmp_path).create(KEY, b"x")
