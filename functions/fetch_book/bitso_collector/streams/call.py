"""One call's streams, as the runner drives them: opened after the minute is claimed, closed and
stored by themselves near the minute's end (on a thread of their own, so no slot waits for it),
summarised for the run record."""

from __future__ import annotations

import threading

from bitso_logs import JsonLogger

from ..clock import Clock
from ..sinks.base import Sink
from .client import (
    ACK_TIMEOUT_S,
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    SILENCE_S,
    SocketOptions,
    StreamSocket,
)
from .state import StreamState
from .summary import StreamsSummary
from .writer import StreamWriter

#: How long past its deadline the socket may take to close before it is stopped.
CLOSE_GRACE_S = 0.1


class CallStreams:
    """`scale` shrinks the socket's timeouts with a compressed minute (tests, benchmarks), as
    the runner's margins are."""

    def __init__(
        self,
        url: str,
        books: tuple[str, ...],
        channels: tuple[str, ...],
        minute_ms: int,
        sink: Sink,
        prefix: str,
        clock: Clock,
        log: JsonLogger,
        scale: float = 1.0,
    ) -> None:
        self.state = StreamState(books, channels, minute_ms)
        options = SocketOptions(
            url,
            books,
            channels,
            silence_s=SILENCE_S * scale,
            max_backoff_s=MAX_BACKOFF_S * scale,
            first_backoff_s=FIRST_BACKOFF_S * scale,
            ack_timeout_s=ACK_TIMEOUT_S * scale,
        )
        self._socket = StreamSocket(options, self.state, clock, log)
        self._writer = StreamWriter(sink, prefix, minute_ms, clock, log)
        self._clock = clock
        self._stop_at = 0.0
        self._closer: threading.Thread | None = None
        self._aborted = threading.Event()

    def open(self, stop_at: float, finish_by: float) -> None:
        """Connect and subscribe in the background. The socket closes by itself at `stop_at`,
        even when the last slot's reply came in earlier, so the hole between this call and the
        next stays within the next call's trades backfill; then the objects are stored, each on
        its own thread, given up on at `finish_by`."""
        self._stop_at = stop_at
        self._socket.start(stop_at)
        self._closer = threading.Thread(
            target=self._close_and_store, args=(finish_by,), name="stream-close", daemon=True
        )
        self._closer.start()

    def _close_and_store(self, finish_by: float) -> None:
        self._socket.join(max(0.0, self._stop_at - self._clock.now()) + CLOSE_GRACE_S)
        self.state.close()
        if not self._aborted.is_set():
            self._writer.start(self.state.to_store(), finish_by)

    def abort(self) -> None:
        """Close the socket now and store nothing (the call is failing)."""
        self._aborted.set()
        self._socket.stop()
        self.state.close()

    def summary(self, window: tuple[float, float]) -> StreamsSummary:
        """Wait for the stores, then the run record's part (coverage over `window`)."""
        if self._closer is not None:
            self._closer.join()
        return self.state.summary(window, self._writer.finish())
