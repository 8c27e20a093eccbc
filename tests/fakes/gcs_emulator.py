"""Start a local GCS emulator (gcp-storage-emulator) for tests.

    with running_gcs_emulator() as url:        # "http://127.0.0.1:PORT"
        os.environ["STORAGE_EMULATOR_HOST"] = url
        ...

It listens on 127.0.0.1 only, keeps everything in memory, and is stopped by PID
when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/storage/v1/b", timeout=1) as resp:
            return int(resp.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@contextlib.contextmanager
def running_gcs_emulator(timeout: float = 20.0) -> Iterator[str]:
    """Run ``gcp-storage-emulator start --in-memory`` on a free port; yield its URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "start",
                f"--host={HOST}",
                f"--port={port}",
                "--in-memory",
                "--quiet",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            while not _ready(url):
                if proc.poll() is not None:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    raise RuntimeError(f"the GCS emulator exited early:\n{output}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the GCS emulator did not answer on {url}")
                time.sleep(0.05)
            yield url
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
