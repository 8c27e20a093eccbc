"""Shared fixtures: the fake Bitso in-process, the GCS emulator behind the strict proxy, and the
real functions-framework server."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bitso_format import iso_millis, seconds_to_ms
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.processes import FUNCTION_DIR, base_env, free_port, running
from bitso_testkit.strict_gcs import StrictGcs, running_strict_gcs
from tests.support.clock_control import SHIFT_FILE_ENV, ClockControl
from tests.support.schemas import check_run_record

SCHEDULE_HEADER = "X-CloudScheduler-ScheduleTime"
_buckets = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (end-to-end, then slow), so parallel workers (pytest-xdist) start
    them at once and finish together; otherwise in the order collected."""

    def rank(item: pytest.Item) -> int:
        return (item.get_closest_marker("e2e") is None) * 2 + (
            item.get_closest_marker("slow") is None
        )

    items.sort(key=rank)


@pytest.fixture
def fake_bitso() -> Iterator[FakeBitso]:
    with FakeBitso() as fake:
        yield fake


@pytest.fixture(scope="session")
def gcs() -> Iterator[StrictGcs]:
    """The one GCS of the session (of each xdist worker): an in-memory emulator behind the strict
    proxy, which enforces create-only writes as GCS does and fails on demand."""
    with running_strict_gcs() as proxy:
        yield proxy


@pytest.fixture
def bucket(gcs: StrictGcs, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket; STORAGE_EMULATOR_HOST points this process's clients at the proxy,
    and the faults the test asked for are cleared after it."""
    name = f"bucket-{next(_buckets)}"
    gcs.create_bucket(name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    yield name
    gcs.clear()


@dataclass
class FunctionServer:
    url: str
    data_dir: Path
    log_path: Path
    clock: ClockControl | None
    #: The server's process (the leader of its own process group: signal it with `killpg`).
    process: subprocess.Popen[bytes] | None = None

    def call(
        self,
        body: Any = None,
        minute_start: float | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 75,
    ) -> requests.Response:
        """POST to the function, as Cloud Scheduler does when `minute_start` is given."""
        sent = dict(headers or {})
        if minute_start is not None:
            sent[SCHEDULE_HEADER] = iso_millis(seconds_to_ms(minute_start))
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        reply = requests.post(self.url, data=data, headers=sent, timeout=timeout)
        if reply.headers.get("Content-Type", "").startswith("application/json"):
            check_run_record(reply.json())
        return reply

    def new_minute(self, seconds_into_minute: float = 0.5) -> float:
        """Move the server's clock to just after the start of a fresh minute; its start."""
        assert self.clock is not None, "this server runs on the real clock"
        return self.clock.jump_to_minute(seconds_into_minute)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


StartFunction = Callable[..., FunctionServer]


@pytest.fixture
def start_function(tmp_path: Path) -> Iterator[StartFunction]:
    """Starts `functions-framework --target=fetch_book` as a process with the given settings.

    With `shifted_clock` (the default) it runs through a launcher whose clock the test moves,
    so each call lands at a chosen point of a fresh minute; without it, the plain CLI.
    """
    with ExitStack() as stack:
        count = 0

        def start(settings: Mapping[str, str], shifted_clock: bool = True) -> FunctionServer:
            nonlocal count
            count += 1
            data_dir = tmp_path / f"data{count}"
            log_path = tmp_path / f"function{count}.log"
            port = free_port()
            env = {"LOCAL_DATA_DIR": str(data_dir), **settings}
            cli = ["--target=fetch_book", f"--source={FUNCTION_DIR / 'main.py'}", f"--port={port}"]
            clock = None
            if shifted_clock:
                clock = ClockControl(tmp_path / f"clock{count}")
                env[SHIFT_FILE_ENV] = str(clock.path)
                args = [sys.executable, "-m", "tests.support.serve_function", *cli]
            else:
                args = [str(Path(sys.executable).parent / "functions-framework"), *cli]
            url = f"http://127.0.0.1:{port}"
            process = stack.enter_context(
                running(args, base_env(env), f"{url}/robots.txt", log_path)
            )
            return FunctionServer(url, data_dir, log_path, clock, process)

        yield start
