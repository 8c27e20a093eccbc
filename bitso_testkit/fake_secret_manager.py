"""A fake Secret Manager on 127.0.0.1: the one REST method the collector calls.

    GET /v1/projects/<p>/secrets/<s>/versions/<v>:access
    -> {"name": ".../versions/<n>", "payload": {"data": <base64>, "dataCrc32c": "<int64>"}}

`latest` is the highest version. Unknown secrets or versions answer 404 NOT_FOUND, a secret listed
in `denied` 403 PERMISSION_DENIED, each in Google's error shape, so the real client
(`SecretManagerServiceClient(transport="rest")`) raises `NotFound` / `PermissionDenied`.
`fail(times, status)` makes the next accesses answer `status`; `corrupt_crc=True` sends a wrong
`dataCrc32c`. Every access is logged in `requests` (names only, never values).

    with FakeSecretManager({"projects/p/secrets/key": "abc"}) as fake:
        os.environ["SECRET_MANAGER_ENDPOINT"] = fake.url   # what bitso_collector.secrets reads
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import signal
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

import google_crc32c

from bitso_testkit.loopback import LoopbackServer

_ACCESS = re.compile(r"^/v1/(projects/[^/]+/secrets/[^/]+)/versions/([^/:]+):access$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error(status: int, message: str) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": status,
                "message": message,
                "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            }
        }
    ).encode()


class FakeSecretManager(LoopbackServer):
    """`secrets` maps `projects/P/secrets/S` to its value (version 1) or list of values."""

    def __init__(self, secrets: Mapping[str, str | list[str]] | None = None, port: int = 0):
        self._lock = threading.Lock()
        self.secrets: dict[str, list[str]] = {}
        for name, value in (secrets or {}).items():
            self.add(name, value)
        self.denied: set[str] = set()
        self.corrupt_crc = False
        self.requests: list[tuple[str, int]] = []
        self._failures: list[int] = []
        super().__init__(_handler_for(self), port)

    def add(self, secret: str, value: str | list[str]) -> None:
        """Add `secret` (`projects/P/secrets/S`) with one value or a list of versions."""
        with self._lock:
            self.secrets[secret] = [value] if isinstance(value, str) else list(value)

    def fail(self, times: int = 1, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def access(self, secret: str, version: str) -> tuple[int, bytes]:
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                return status, _error(status, f"injected fault: HTTP {status}")
            if secret in self.denied:
                return 403, _error(
                    403,
                    f"Permission 'secretmanager.versions.access' denied for resource "
                    f"'{secret}/versions/{version}' (or it may not exist).",
                )
            versions = self.secrets.get(secret)
            number = len(versions) if versions and version == "latest" else None
            if versions and version.isdigit() and 1 <= int(version) <= len(versions):
                number = int(version)
            if not versions or number is None:
                return 404, _error(
                    404,
                    f"Secret [{secret}] not found or has no versions."
                    if not versions
                    else f"Secret Version [{secret}/versions/{version}] not found.",
                )
            data = versions[number - 1].encode()
            crc = google_crc32c.value(data) + (1 if self.corrupt_crc else 0)
            body = {
                "name": f"{secret}/versions/{number}",
                "payload": {
                    "data": base64.b64encode(data).decode("ascii"),
                    "dataCrc32c": str(crc),
                },
            }
            return 200, json.dumps(body).encode()


def _handler_for(fake: FakeSecretManager) -> type[BaseHTTPRequestHandler]:
    class FakeSecretManagerHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            match = _ACCESS.fullmatch(path)
            if not match:
                self._send(404, _error(404, f"unknown path {path}"))
                return
            status, body = fake.access(match.group(1), match.group(2))
            with fake._lock:
                fake.requests.append((f"{match.group(1)}/versions/{match.group(2)}", status))
            self._send(status, body)

    return FakeSecretManagerHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Secret Manager on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--secret", action="append", default=[], help="projects/P/secrets/S=VALUE (repeatable)"
    )
    args = parser.parse_args(argv)
    secrets = dict(item.split("=", 1) for item in args.secret)
    with FakeSecretManager(secrets, args.port) as fake:
        print(fake.url, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
