"""A strict GCS: a reverse proxy on 127.0.0.1 in front of gcp-storage-emulator.

The emulator ignores `ifGenerationMatch`; real GCS does not, and the collector's exactness rests on
it. The proxy enforces it on JSON API uploads (the only way the Python client writes):

    POST /upload/storage/v1/b/<bucket>/o?uploadType=multipart&ifGenerationMatch=0
         (the object name is in the first, JSON part of the multipart body)
    POST /upload/storage/v1/b/<bucket>/o?uploadType=resumable&ifGenerationMatch=0[&name=...]
         (checked again when the session's data arrives, `...&upload_id=...`)

A precondition that does not hold answers 412 `conditionNotMet` as GCS does, and the check and the
write happen under one lock, so two racing creates of one name give one 200 and one 412.
Everything else (metadata, downloads, listings, bucket calls) passes through unchanged.

Faults on demand, on uploads whose object name matches an optional regex (and optionally only in
one bucket):
- `fail(times, status)`: answer `status` (default 503) without writing;
- `hang(times, seconds)`: hold the request `seconds` without writing, then drop the connection;
- `drop_reply(times, seconds)`: write the object, then drop the connection with no reply (the
  write landed but the client never heard: its retry meets a 412 for its own object).
`times=None` means for good, until `clear()`.

Python:   with running_strict_gcs() as gcs: gcs.url, gcs.create_bucket("b"), gcs.fail(3)
Process:  python -m bitso_testkit.strict_gcs   (starts an emulator too; prints the proxy URL)
Control:  POST /_strict/faults {"kind": "fail", "times": 3, "status": 503, "match": "\\.json$"},
          POST /_strict/clear, GET /_strict/uploads (the upload log as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from bitso_testkit.gcs_emulator import running_gcs_emulator
from bitso_testkit.loopback import LoopbackServer

FAULT_KINDS = ("fail", "hang", "drop_reply")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
_UPLOAD_PATH = re.compile(r"^/upload/storage/v1/b/(?P<bucket>[^/]+)/o$")


@dataclass
class Fault:
    kind: str
    times: int | None = 1
    status: int = 503
    seconds: float = 30.0
    match: str | None = None
    bucket: str | None = None

    def applies(self, bucket: str, name: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.bucket is not None and bucket != self.bucket:
            return False
        return self.match is None or re.search(self.match, name) is not None


@dataclass
class Upload:
    """One upload request as the proxy saw it: `outcome` is the HTTP status it answered, or
    `hang` / `dropped` (written, no reply)."""

    at: float
    bucket: str
    name: str
    if_generation_match: str | None
    outcome: str


def _precondition_failed() -> bytes:
    message = "At least one of the pre-conditions you specified did not hold."
    return json.dumps(
        {
            "error": {
                "code": 412,
                "message": message,
                "errors": [
                    {
                        "message": message,
                        "domain": "global",
                        "reason": "conditionNotMet",
                        "locationType": "header",
                        "location": "If-Match",
                    }
                ],
            }
        }
    ).encode()


def _error_body(status: int) -> bytes:
    return json.dumps(
        {"error": {"code": status, "message": f"injected fault: HTTP {status}", "errors": []}}
    ).encode()


def _multipart_name(content_type: str, body: bytes) -> str | None:
    """The `name` in the JSON metadata part of a multipart/related upload body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return None
    boundary = b"--" + match.group(1).encode()
    for part in body.split(boundary)[1:]:
        _, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        try:
            metadata = json.loads(content.rstrip(b"\r\n"))
        except ValueError:
            return None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return name if isinstance(name, str) else None
    return None


class StrictGcs(LoopbackServer):
    """The proxy as an object: `with StrictGcs(emulator_url) as gcs: gcs.url ...`."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the upstream must be on this machine, not {upstream}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.uploads: list[Upload] = []
        self._faults: list[Fault] = []
        self._sessions: dict[str, tuple[str, str, str]] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        super().__init__(_handler_for(self), port)

    # -- faults ---------------------------------------------------------------------------
    def inject(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {fault.kind!r}; allowed: {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(fault)

    def fail(
        self,
        times: int | None = 1,
        status: int = 503,
        match: str | None = None,
        bucket: str | None = None,
    ) -> None:
        self.inject(Fault("fail", times, status=status, match=match, bucket=bucket))

    def hang(
        self,
        times: int | None = 1,
        seconds: float = 30.0,
        match: str | None = None,
        bucket: str | None = None,
    ) -> None:
        self.inject(Fault("hang", times, seconds=seconds, match=match, bucket=bucket))

    def drop_reply(
        self,
        times: int | None = 1,
        seconds: float = 0.0,
        match: str | None = None,
        bucket: str | None = None,
    ) -> None:
        self.inject(Fault("drop_reply", times, seconds=seconds, match=match, bucket=bucket))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, bucket: str, name: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.applies(bucket, name):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _log(self, bucket: str, name: str, condition: str | None, outcome: str) -> None:
        with self._lock:
            self.uploads.append(Upload(time.time(), bucket, name, condition, outcome))

    def upload_log(self, bucket: str | None = None) -> list[Upload]:
        with self._lock:
            return [entry for entry in self.uploads if bucket in (None, entry.bucket)]

    # -- talking to the emulator ------------------------------------------------------------
    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def generation(self, bucket: str, name: str) -> int:
        """The live generation of `bucket/name` on the emulator; 0 when there is none."""
        path = f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        status, _, body = self.forward("GET", path, {}, b"")
        if status == 404:
            return 0
        if status != 200:
            raise RuntimeError(f"the emulator answered {status} for {bucket}/{name}")
        return int(json.loads(body).get("generation") or 0)

    # -- helpers for tests and the demo -----------------------------------------------------
    def create_bucket(self, name: str) -> None:
        body = json.dumps({"name": name}).encode()
        status, _, reply = self.forward(
            "POST", "/storage/v1/b?project=test", {"Content-Type": "application/json"}, body
        )
        if status != 200:
            raise RuntimeError(f"cannot create bucket {name}: {status} {reply[:200]!r}")

    def list_objects(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        """Object resources in `bucket` (the emulator returns them all in one page)."""
        path = f"/storage/v1/b/{quote(bucket, safe='')}/o?prefix={quote(prefix, safe='')}"
        status, _, body = self.forward("GET", path, {}, b"")
        if status != 200:
            raise RuntimeError(f"cannot list {bucket}: {status} {body[:200]!r}")
        items: list[dict[str, Any]] = json.loads(body).get("items") or []
        return sorted(items, key=lambda item: str(item["name"]))

    def read_object(self, bucket: str, name: str) -> bytes:
        """The stored bytes, as written (no decompressive transcoding)."""
        path = f"/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        status, _, body = self.forward("GET", path + "?alt=media", {}, b"")
        if status != 200:
            raise RuntimeError(f"cannot read {bucket}/{name}: {status}")
        return body


def _handler_for(proxy: StrictGcs) -> type[BaseHTTPRequestHandler]:
    class StrictGcsHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_json(self, status: int, body: bytes) -> None:
            self._send(status, [("Content-Type", "application/json")], body)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _drop(self, seconds: float) -> None:
            if seconds > 0:
                proxy._stopping.wait(seconds)
            self.close_connection = True

        def _handle(self) -> None:
            body = self._body()
            parts = urlsplit(self.path)
            if parts.path.startswith("/_strict/"):
                self._control(parts.path, body)
                return
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in _HOP_BY_HOP
            }
            upload = _UPLOAD_PATH.match(parts.path)
            if upload and self.command in ("POST", "PUT"):
                self._upload(upload.group("bucket"), parts.query, headers, body)
                return
            status, reply_headers, reply = proxy.forward(self.command, self.path, headers, body)
            self._send(status, reply_headers, reply)

        def _upload(self, bucket: str, query: str, headers: dict[str, str], body: bytes) -> None:
            params = {key: values[0] for key, values in parse_qs(query).items()}
            session = params.get("upload_id")
            condition = params.get("ifGenerationMatch")
            name = params.get("name")
            if session is not None:
                with proxy._lock:
                    bucket, name, condition = proxy._sessions.get(
                        session, (bucket, name or "", condition or "")
                    )
                condition = condition or None
            elif name is None:
                content_type = self.headers.get("Content-Type", "")
                if params.get("uploadType") == "multipart":
                    name = _multipart_name(content_type, body)
                elif body:
                    with contextlib.suppress(ValueError, AttributeError):
                        name = json.loads(body).get("name")
            name = name or ""
            fault = proxy._take_fault(bucket, name)
            if fault is not None and fault.kind == "fail":
                proxy._log(bucket, name, condition, str(fault.status))
                self._send_json(fault.status, _error_body(fault.status))
                return
            if fault is not None and fault.kind == "hang":
                proxy._log(bucket, name, condition, "hang")
                self._drop(fault.seconds)
                return
            with proxy._write_lock:
                if condition is not None and proxy.generation(bucket, name) != int(condition):
                    proxy._log(bucket, name, condition, "412")
                    self._send_json(412, _precondition_failed())
                    return
                status, reply_headers, reply = proxy.forward(self.command, self.path, headers, body)
            if session is None and params.get("uploadType") == "resumable" and status == 200:
                location = dict((k.lower(), v) for k, v in reply_headers).get("location", "")
                new_session = parse_qs(urlsplit(location).query).get("upload_id", [None])[0]
                if new_session is not None:
                    with proxy._lock:
                        proxy._sessions[new_session] = (bucket, name, condition or "")
            if fault is not None and fault.kind == "drop_reply":
                proxy._log(bucket, name, condition, "dropped")
                self._drop(fault.seconds)
                return
            proxy._log(bucket, name, condition, str(status))
            self._send(status, reply_headers, reply)

        def _control(self, path: str, body: bytes) -> None:
            if path == "/_strict/uploads" and self.command == "GET":
                entries = [asdict(entry) for entry in proxy.upload_log()]
                self._send_json(200, json.dumps(entries).encode())
            elif path == "/_strict/clear" and self.command == "POST":
                proxy.clear()
                self._send_json(200, b'{"ok": true}')
            elif path == "/_strict/faults" and self.command == "POST":
                try:
                    proxy.inject(Fault(**json.loads(body or b"{}")))
                except (TypeError, ValueError) as error:
                    self._send_json(400, json.dumps({"error": str(error)}).encode())
                    return
                self._send_json(200, b'{"ok": true}')
            else:
                self._send_json(404, b'{"error": "unknown control path"}')

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return StrictGcsHandler


@contextlib.contextmanager
def running_strict_gcs() -> Iterator[StrictGcs]:
    """An in-memory emulator (a process) with the strict proxy (a thread) in front of it."""
    with running_gcs_emulator() as emulator_url, StrictGcs(emulator_url) as proxy:
        yield proxy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A strict GCS proxy on 127.0.0.1")
    parser.add_argument("--upstream", help="an emulator URL (default: start one)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        upstream = args.upstream or stack.enter_context(running_gcs_emulator())
        proxy = stack.enter_context(StrictGcs(upstream, args.port))
        for bucket in args.bucket:
            proxy.create_bucket(bucket)
        print(proxy.url, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # so the emulator is stopped too
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
