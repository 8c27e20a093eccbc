"""The instance's stream: one WebSocket connection that outlives the calls, cut by each call.

The first call that records streams opens it; later calls find it open. Each call cuts it near
its end (`cut`): every message received since the previous cut is handed over and stored, one
object per book, channel and hour of receipt, named by the call's minute (claimed, so unique).
At the instance's end (`shutdown`: SIGTERM, or the command's exit) the last cut is named by its
instant and the instance id, and a shutdown record says what it covered.
"""

from __future__ import annotations

import json
import threading
import uuid

from bitso_format import (
    SHUTDOWN_RECORD_SCHEMA_VERSION,
    seconds_to_ms,
    shutdown_record_name,
    stream_name,
)
from bitso_logs import JsonLogger

from ..clock import Clock
from ..errors import StorageError
from ..sinks.base import Sink
from .client import (
    ACK_TIMEOUT_S,
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    SILENCE_S,
    SocketOptions,
    StreamSocket,
)
from .record_part import ChannelSummary, LostObject, StreamsSummary
from .state import Cut, StreamState
from .writer import NamedObject, ObjectResult, StreamWriter


def new_instance_id() -> str:
    """8 hex digits (`bitso_format.INSTANCE_PATTERN`), drawn when the instance starts."""
    return uuid.uuid4().hex[:8]


def _by_key(item: tuple[tuple[str, str, int], object]) -> tuple[str, str, int]:
    return item[0]


class PendingCut:
    """A cut being stored; `summary()` waits for it (until the cut's `finish_by`)."""

    def __init__(self, session: StreamSession, cut: Cut, objects: list[NamedObject]) -> None:
        self._session = session
        self._cut = cut
        self._writer = StreamWriter(session.sink, session.clock, session.log)
        self._objects = objects

    def start(self, finish_by: float, parallel: bool = True) -> None:
        self._writer.start(self._objects, finish_by, parallel)

    def summary(self) -> StreamsSummary:
        return self._session.summarise(self._cut, self._writer.finish())


class StreamSession:
    """`scale` shrinks the socket's timeouts with a compressed minute (tests, benchmarks), as
    the runner's margins are."""

    def __init__(
        self,
        url: str,
        books: tuple[str, ...],
        channels: tuple[str, ...],
        anchor_every_ms: int,
        sink: Sink,
        prefix: str,
        clock: Clock,
        log: JsonLogger,
        scale: float = 1.0,
        instance: str | None = None,
    ) -> None:
        self.instance = instance or new_instance_id()
        self.started_at = clock.now()
        self.sink = sink
        self.prefix = prefix
        self.clock = clock
        self.log = log.bind(instance=self.instance)
        self.state = StreamState(books, channels, anchor_every_ms, clock)
        options = SocketOptions(
            url,
            books,
            channels,
            silence_s=SILENCE_S * scale,
            max_backoff_s=MAX_BACKOFF_S * scale,
            first_backoff_s=FIRST_BACKOFF_S * scale,
            ack_timeout_s=ACK_TIMEOUT_S * scale,
        )
        self._socket = StreamSocket(options, self.state, clock, self.log)
        self._cut_lock = threading.Lock()
        self._opened = False
        self._closed = False

    def open(self) -> None:
        """Connect and subscribe in the background, once; a later call finds it open."""
        with self._cut_lock:
            if not self._opened and not self._closed:
                self._opened = True
                self._socket.start()

    def cut(self, minute_ms: int, finish_by: float) -> PendingCut | None:
        """Cut now for the call of `minute_ms` and start storing; None after the shutdown."""
        with self._cut_lock:
            if self._closed:
                return None
            cut = self.state.cut(self.clock.now())
            pending = PendingCut(self, cut, self._named(cut, minute_ms, None))
        pending.start(finish_by)
        return pending

    def shutdown(self, finish_by: float) -> StreamsSummary | None:
        """Close the socket, cut what it holds, store it and the shutdown record (by
        `finish_by`); None when the stream never opened, or is shut already."""
        with self._cut_lock:
            if self._closed or not self._opened:
                self._closed = True
                return None
            self._closed = True
            self._socket.stop()
            at = self.clock.now()
            cut = self.state.cut(at)
            pending = PendingCut(self, cut, self._named(cut, seconds_to_ms(at), self.instance))
        # At the interpreter's exit (atexit, after SIGTERM) no thread pool may start: store here.
        pending.start(finish_by, parallel=False)
        summary = pending.summary()
        record = {
            "schema_version": SHUTDOWN_RECORD_SCHEMA_VERSION,
            "kind": "shutdown",
            "instance": self.instance,
            "at": summary.to_json()["cut_at"],
            "streams": summary.to_json(),
        }
        name = shutdown_record_name(self.prefix, seconds_to_ms(at), self.instance)
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self.sink.create(name, data, deadline=finish_by)
        except StorageError as error:
            self.log.error("shutdown record not stored", key=name, reason=str(error))
        self.log.log(
            "INFO",
            "stream flushed at shutdown",
            event="stream_shutdown",
            messages=summary.messages,
            lost=len(summary.lost),
        )
        return summary

    def _named(self, cut: Cut, cut_ms: int, instance: str | None) -> list[NamedObject]:
        return [
            NamedObject(
                book,
                channel,
                stream_name(self.prefix, channel, book, hour_ms, cut_ms, instance),
                stream,
            )
            for (book, channel, hour_ms), stream in sorted(cut.objects.items(), key=_by_key)
            if stream.lines
        ]

    def summarise(self, cut: Cut, results: dict[NamedObject, ObjectResult]) -> StreamsSummary:
        return summarise(cut, results, self.state, self.instance, self.started_at)


def summarise(
    cut: Cut,
    results: dict[NamedObject, ObjectResult],
    state: StreamState,
    instance: str,
    started_at: float,
) -> StreamsSummary:
    """The record's part of a cut, given what became of each of its objects."""
    stored: dict[tuple[str, str], list[str]] = {}
    lost = []
    for named, result in results.items():
        if result.stored:
            stored.setdefault((named.book, named.channel), []).append(named.name)
        else:
            lost.append(LostObject(named.book, named.channel, result.name, result.reason))
    books = {
        book: {
            channel: ChannelSummary(
                cut.channels[(book, channel)], tuple(stored.get((book, channel), ()))
            )
            for channel in state.channels
        }
        for book in state.books
    }
    return StreamsSummary(
        channels=state.channels,
        instance=instance,
        instance_started_at=started_at,
        cut_at=cut.at,
        frozen=cut.frozen,
        connections=cut.connections,
        failed_connects=cut.failed_connects,
        keepalives=cut.keepalives,
        ignored=cut.ignored,
        disconnects=cut.disconnects,
        unacknowledged=cut.unacknowledged,
        books=books,
        lost=tuple(lost),
    )
