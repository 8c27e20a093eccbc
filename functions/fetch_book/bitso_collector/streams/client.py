"""The WebSocket adapter: the instance's connection to Bitso, in a thread of its own with its
own event loop, so nothing it does (a burst, a slow handshake, a reconnect) can hold up the
slots, which the strategies start on other threads.

It subscribes every book and channel (`Subscriptions`: acks matched in order per channel), hands
every message to `StreamState` with its time of receipt on the collector's clock, and keeps the
connection up until `stop()`: a connection that closes, errors or stays silent for `silence_s`
is reopened at once, then after 0.25, 0.5, 1 s and at most `max_backoff_s` between tries, and
everything is subscribed again.

**Freezes.** Between requests Cloud Run may stop giving the instance CPU; the kernel keeps
receiving, and when the process runs again the messages come in a burst with late receipt
times. The loop wakes at least every `TICK_S`; a wake more than `FREEZE_MIN_S` of monotonic time
after the last one means the process did not run meanwhile: the span from the last wake until
the burst is drained (the first wait that finds nothing buffered) is reported as frozen, and the
silence it caused is not taken for the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from dataclasses import dataclass

import aiohttp

from bitso_logs import JsonLogger

from ..clock import Clock
from .protocol import Kind, classify, subscribe_text
from .state import StreamState
from .subscriptions import Subscriptions

SILENCE_S = 10.0
MAX_BACKOFF_S = 2.0
FIRST_BACKOFF_S = 0.25
ACK_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0
#: How long closing a connection may take at the end (the close handshake).
CLOSE_TIMEOUT_S = 0.1
#: How long `stop` waits for the socket's thread to end.
STOP_WAIT_S = 0.2
#: The shortest wait for a frame (a zero timeout would not even look at what is buffered).
MIN_WAIT_S = 0.001
#: The longest wait for a frame: how often the loop checks that the process kept running.
TICK_S = 0.05
#: A gap between two wakes this long means the process was frozen (or starved of CPU): receipt
#: times may be late by less than this (like network jitter); a longer stall is named `frozen`.
#: Cloud Run's pause between two calls is often shorter than a second, so a second would miss
#: most; a quarter second would also catch the CPU quota's own stalls under load.
FREEZE_MIN_S = 0.5


@dataclass(frozen=True)
class SocketOptions:
    url: str
    books: tuple[str, ...]
    channels: tuple[str, ...]
    silence_s: float = SILENCE_S
    max_backoff_s: float = MAX_BACKOFF_S
    first_backoff_s: float = FIRST_BACKOFF_S
    ack_timeout_s: float = ACK_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S

    def backoff(self, failures: int) -> float:
        """Seconds to wait before try number `failures` (0: the first try after a loss)."""
        if failures <= 0:
            return 0.0
        return min(self.max_backoff_s, self.first_backoff_s * 2.0 ** (failures - 1))


class StreamSocket:
    """`start()` opens the connection in the background; `stop()` closes it and waits."""

    def __init__(
        self,
        options: SocketOptions,
        state: StreamState,
        clock: Clock,
        log: JsonLogger | None = None,
    ) -> None:
        self.options = options
        self.state = state
        self.clock = clock
        self.log = log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        #: Subscriptions no connection of this call got an answer for (tried last next time).
        self._unanswered: set[tuple[str, str]] = set()

    def start(self, stop_at: float = math.inf) -> None:
        """Run until `stop()` (or, in tests, until `stop_at`)."""
        self._thread = threading.Thread(
            target=self._main, args=(stop_at,), name="bitso-socket", daemon=True
        )
        self._thread.start()
        self._ready.wait(timeout=5)

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Close the connection now (if still open) and wait for the thread, at most `timeout`."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the socket's thread ----------------------------------------------------------------
    def _main(self, stop_at: float) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._run(stop_at))
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _run(self, stop_at: float) -> None:
        options = self.options
        failures = 0
        async with aiohttp.ClientSession() as session:
            while True:
                wait = options.backoff(failures)
                if self.clock.now() + wait >= stop_at:
                    return
                if wait:
                    await asyncio.sleep(wait)
                ws = await self._connect(session, stop_at)
                if ws is None:
                    failures += 1
                    continue
                failures = 0
                self.state.connected()
                reason: str | None = None
                try:
                    reason = await self._serve(ws, stop_at)
                finally:
                    self.state.lost(self.clock.now(), reason)
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(CLOSE_TIMEOUT_S):
                            await ws.close()
                if reason is None:
                    return
                if self.log is not None:
                    self.log.warning("stream connection lost; reopening", reason=reason)

    async def _connect(
        self, session: aiohttp.ClientSession, stop_at: float
    ) -> aiohttp.ClientWebSocketResponse | None:
        limit = min(self.options.connect_timeout_s, stop_at - self.clock.now())
        try:
            async with asyncio.timeout(max(0.0, limit)):
                return await session.ws_connect(
                    self.options.url,
                    autoping=True,
                    heartbeat=None,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            self.state.connect_failed()
            if self.log is not None:
                self.log.warning(
                    "stream connection failed", error=f"{type(error).__name__}: {error}"
                )
            return None

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, stop_at: float) -> str | None:
        """Subscribe and receive until `stop_at` (None) or until the connection is lost (why)."""
        try:
            return await self._receive(ws, stop_at)
        except (aiohttp.ClientError, ConnectionError, OSError):  # e.g. a send on a dead link
            return "error"

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, stop_at: float) -> str | None:
        options, clock, state = self.options, self.clock, self.state
        subscriptions = Subscriptions(
            options.books, options.channels, options.ack_timeout_s, self._unanswered
        )
        last_heard = last_wake = clock.now()
        # The process's own time (monotonic, never sped up or shifted) tells a freeze; the
        # span is reported on the collector's clock.
        woke = time.monotonic()
        frozen_since: float | None = None
        await self._subscribe(ws, subscriptions, last_heard)
        while True:
            now = clock.now()
            if time.monotonic() - woke >= FREEZE_MIN_S:
                if frozen_since is None:
                    frozen_since = last_wake
                last_heard += now - last_wake  # the silence was this process's, not Bitso's
            last_wake, woke = now, time.monotonic()
            for book, channel in subscriptions.expire(now):
                self._unanswered.add((book, channel))
                state.unanswered(book, channel)
            await self._subscribe(ws, subscriptions, now)
            if now >= stop_at:
                return None
            if now - last_heard >= options.silence_s:
                return "silent"
            wait = min(stop_at, last_heard + options.silence_s) - now
            expiry = subscriptions.next_expiry()
            if expiry is not None:
                wait = min(wait, max(0.0, expiry - now))
            wait = MIN_WAIT_S if frozen_since is not None else min(wait, TICK_S)
            try:
                frame = await ws.receive(timeout=max(wait, MIN_WAIT_S))
            except TimeoutError:
                if frozen_since is not None:  # the burst is drained
                    state.frozen(frozen_since, clock.now())
                    frozen_since = None
                continue
            at = clock.now()
            if frame.type is aiohttp.WSMsgType.TEXT:
                last_heard = at
                item = classify(frame.data, options.channels)
                if item.kind is Kind.ACK and item.channel is not None:
                    answered = subscriptions.ack(item.channel, at)
                    if answered is not None:
                        self._unanswered.discard((answered, item.channel))
                        state.acknowledged(answered, item.channel, at)
                elif item.kind is Kind.REJECTED and item.channel is not None:
                    refused = subscriptions.reject(item.channel)
                    if refused is not None:
                        state.unanswered(refused, item.channel)
                else:
                    state.received(item, at)
            elif frame.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                return "closed"
            elif frame.type is aiohttp.WSMsgType.ERROR:
                return "error"
            else:
                last_heard = at  # binary frames, pongs: the connection is alive

    @staticmethod
    async def _subscribe(
        ws: aiohttp.ClientWebSocketResponse, subscriptions: Subscriptions, now: float
    ) -> None:
        for book, channel in subscriptions.to_send(now):
            await ws.send_str(subscribe_text(book, channel))
