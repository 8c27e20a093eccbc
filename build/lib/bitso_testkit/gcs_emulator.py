"""Start a local GCS emulator (gcp-storage-emulator) for tests.

    with running_gcs_emulator() as url:        # "http://127.0.0.1:PORT"
        os.environ["STORAGE_EMULATOR_HOST"] = url
        ...

It listens on 127.0.0.1 only, keeps everything in memory, and is stopped by PID
when the block ends.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bitso_testkit.processes import base_env, free_port, running


@contextlib.contextmanager
def running_gcs_emulator(timeout: float = 20.0) -> Iterator[str]:
    """Run ``gcp-storage-emulator start --in-memory`` on a free port; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1",
            f"--port={port}", "--in-memory", "--quiet"]  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="gcs-emulator-") as scratch,
        running(
            args,
            base_env({}),
            f"{url}/storage/v1/b",
            Path(scratch) / "emulator.log",
            timeout=timeout,
            cwd=Path(scratch),
        ),
    ):
        yield url
