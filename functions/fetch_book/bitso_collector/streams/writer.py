"""Stores a cut's stream objects: all at once, each on a thread of its own (so a slow store
delays no other), create-only, given up on at `finish_by`. A call's cut starts after its last
slot has started, so no slot can wait for it."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class NamedObject:
    book: str
    channel: str
    name: str
    stream: StreamObject


class StreamWriter:
    def __init__(self, sink: Sink, clock: Clock, log: JsonLogger):
        self._sink = sink
        self._clock = clock
        self._log = log
        self._pool: ThreadPoolExecutor | None = None
        self._writes: dict[Future[bool], NamedObject] = {}
        self._finish_by: float | None = None

    def start(self, objects: list[NamedObject], finish_by: float, parallel: bool = True) -> None:
        """Begin storing every object given; `parallel=False` stores them here, one after the
        other (at the interpreter's exit, when no new thread pool may start)."""
        self._finish_by = finish_by
        if not parallel:
            for named in objects:
                self._writes[self._store_here(named)] = named
            return
        self._pool = ThreadPoolExecutor(
            max(1, min(MAX_PARALLEL, len(objects))), thread_name_prefix="stream-write"
        )
        for named in objects:
            self._writes[self._pool.submit(self._write, named.name, named.stream)] = named

    def finish(self) -> dict[NamedObject, ObjectResult]:
        """Wait until `finish_by`; what is not stored by then is lost."""
        finish_by = self._finish_by or self._clock.now()
        _, late = wait_for(self._writes, timeout=max(0.0, finish_by - self._clock.now()))
        results = {}
        for future, named in self._writes.items():
            name = named.name
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
            results[named] = result
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return results

    def _store_here(self, named: NamedObject) -> Future[bool]:
        done: Future[bool] = Future()
        try:
            done.set_result(self._write(named.name, named.stream))
        except Exception as error:
            done.set_exception(error)
        return done

    def _write(self, name: str, stream: StreamObject) -> bool:
        return self._sink.create(
            name,
            stream.finish(),
            content_type=CONTENT_TYPE,
            content_encoding="gzip",
            deadline=self._finish_by,
        )
