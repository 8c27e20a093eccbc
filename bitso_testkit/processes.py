"""Start a server process for a test, wait until it answers, and stop it by its PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
FUNCTION_DIR = REPO / "functions" / "fetch_book"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Settings a developer may have exported that must not leak into a started server.
SETTING_PREFIXES = (
    "BITSO_", "GCS_", "STORAGE_EMULATOR_HOST", "SECRET_MANAGER_", "COMPRESSION", "STRATEGY",
    "REQUESTS_PER_MINUTE", "OBJECT_PREFIX", "LOCAL_DATA_DIR", "STREAMS",
)  # fmt: skip


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without collector or Google settings, and `extra` on top (the packages
    come from the installed project, never from a path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


@contextmanager
def running(
    args: list[str],
    env: Mapping[str, str],
    ready_url: str,
    log_path: Path,
    timeout: float = 30,
    cwd: Path = REPO,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `args` in its own process group, wait until `ready_url` answers any HTTP status,
    and stop the group by its PID on exit."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited early:\n{log_path.read_text()}")
            try:
                requests.get(ready_url, timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{args[0]} did not start:\n{log_path.read_text()}"
                    ) from None
                time.sleep(0.1)
        yield process
    finally:
        # The group may be gone already (a test that stopped the server itself).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass(frozen=True)
class FakeMarketProcess:
    """The fake Bitso as a process (`python -m bitso_testkit.fake_ws`): REST and WebSocket."""

    process: subprocess.Popen[bytes]
    rest_url: str
    ws_url: str
    log_path: Path


@contextmanager
def running_fake_market(books: str, rate: float, scratch: Path) -> Iterator[FakeMarketProcess]:
    """The fake Bitso (typical REST latency) on two free ports of 127.0.0.1, logging to
    `scratch`; stopped by its PID on exit."""
    rest_port, ws_port = free_port(), free_port()
    rest_url, ws_url = f"http://127.0.0.1:{rest_port}", f"ws://127.0.0.1:{ws_port}/"
    log_path = scratch / "fake_bitso.log"
    args = [
        "-m", "bitso_testkit.fake_ws", "--latency", "typical", f"--books={books}",
        f"--rate={rate:g}", f"--rest-port={rest_port}", f"--ws-port={ws_port}",
    ]  # fmt: skip
    with running(
        [sys.executable, *args], base_env({}), f"{rest_url}/_requests", log_path, cwd=scratch
    ) as process:
        yield FakeMarketProcess(process, rest_url, ws_url, log_path)
