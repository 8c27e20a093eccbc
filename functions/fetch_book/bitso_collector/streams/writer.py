"""Stores a call's stream objects when its minute's fetching is over: all at once, each on a
thread of its own (so a slow store delays no other), create-only, given up on at `finish_by`.
Nothing here runs before the last slot has started, so no slot can wait for it."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

from bitso_format import stream_name
from bitso_logs import JsonLogger

from ..clock import Clock
from ..errors import StorageError
from ..sinks.base import Sink
from .objects import StreamObject

CONTENT_TYPE = "application/x-ndjson"
#: At most this many objects are stored at the same time.
MAX_PARALLEL = 32


@dataclass(frozen=True, slots=True)
class ObjectResult:
    name: str
    stored: bool
    reason: str = ""


class StreamWriter:
    def __init__(self, sink: Sink, prefix: str, minute_ms: int, clock: Clock, log: JsonLogger):
        self._sink = sink
        self._prefix = prefix
        self._minute_ms = minute_ms
        self._clock = clock
        self._log = log
        self._pool: ThreadPoolExecutor | None = None
        self._writes: dict[Future[bool], tuple[tuple[str, str], str]] = {}
        self._finish_by: float | None = None

    def start(self, objects: dict[tuple[str, str], StreamObject], finish_by: float) -> None:
        """Begin storing every (book, channel) object given."""
        self._finish_by = finish_by
        self._pool = ThreadPoolExecutor(
            max(1, min(MAX_PARALLEL, len(objects))), thread_name_prefix="stream-write"
        )
        for (book, channel), stream in objects.items():
            name = stream_name(self._prefix, channel, book, self._minute_ms)
            future = self._pool.submit(self._write, name, stream)
            self._writes[future] = ((book, channel), name)

    def finish(self) -> dict[tuple[str, str], ObjectResult]:
        """Wait until `finish_by`; what is not stored by then is lost."""
        finish_by = self._finish_by or self._clock.now()
        _, late = wait_for(self._writes, timeout=max(0.0, finish_by - self._clock.now()))
        results = {}
        for future, (key, name) in self._writes.items():
            if future in late:
                future.cancel()
                result = ObjectResult(name, False, "storage: not stored before the call's deadline")
            else:
                error = future.exception()
                reason = "" if error is None else f"storage: {error}"
                if error is not None and not isinstance(error, StorageError):
                    reason = f"storage: {type(error).__name__}: {error}"
                result = ObjectResult(name, error is None, reason)
            if not result.stored:
                self._log.error("stream object lost", object=name, reason=result.reason)
            results[key] = result
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return results

    def _write(self, name: str, stream: StreamObject) -> bool:
        return self._sink.create(
            name,
            stream.finish(),
            content_type=CONTENT_TYPE,
            content_encoding="gzip",
            deadline=self._finish_by,
        )
