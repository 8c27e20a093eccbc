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
from bitso_http import SCHEDULE_HEADER
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.processes import FUNCTION_DIR, base_env, free_port, running
from bitso_testkit.strict_gcs import StrictGcs, running_strict_gcs
from tests.support.clock_control import SHIFT_FILE_ENV, ClockControl
from tests.support.schemas import check_run_record

_buckets = itertools.count()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For parallel runs (`make test`: pytest-xdist, --dist loadgroup): the longest tests first
    (end-to-end and slow, end-to-end, slow; a longer timeout of their own first), so the workers
    start them at once and finish together. Each slow test goes to a worker on its own; the
    other tests of a module go to one worker together, so its module fixtures are set up once;
    so do a module's serial tests, so they run one after another."""

    def rank(item: pytest.Item) -> tuple[int, float]:
        e2e, slow = (item.get_closest_marker(name) is not None for name in ("e2e", "slow"))
        timeout = item.get_closest_marker("timeout")
        return (not e2e) * 2 + (not slow), -(timeout.args[0] if timeout else 0)

    items.sort(key=rank)
    for item in items:
        if item.get_closest_marker("slow") is None or item.get_closest_marker("serial"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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

        def start(
            settings: Mapping[str, str],
            shifted_clock: bool = True,
            after: FunctionServer | None = None,
        ) -> FunctionServer:
            """`after`: a server this one replaces, as a new instance does: the same data
            directory and the same (shifted) clock."""
            nonlocal count
            count += 1
            data_dir = after.data_dir if after is not None else tmp_path / f"data{count}"
            log_path = tmp_path / f"function{count}.log"
            port = free_port()
            env = {"LOCAL_DATA_DIR": str(data_dir), **settings}
            cli = ["--target=fetch_book", f"--source={FUNCTION_DIR / 'main.py'}", f"--port={port}"]
            clock = None
            if after is not None:
                clock = after.clock
            elif shifted_clock:
                clock = ClockControl(tmp_path / f"clock{count}")
            if clock is not None:
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
