"""A fake Bitso WebSocket on 127.0.0.1, driven by the same `Exchange` as the fake REST server, so
what the socket sends and what REST serves always agree.

Protocol (Bitso's docs, WebSocket "General", "Trades" and "Diff-Orders" channels):
- The client sends `{"action": "subscribe", "book": B, "type": T}`; for a book the exchange knows
  and a channel in `CHANNELS` the server answers `{"action": "subscribe", "response": "ok",
  "time": ms, "type": T}` (no book in it). An unknown book or channel gets no answer at all.
- Every `1 / rate` seconds per book the market makes a change; subscribers of the book get its
  `diff-orders` message and, for a fill, its `trades` message (`Change.messages`).
- `{"type": "ka"}` every `keepalive_s` seconds on every connection.

Faults on demand (thread-safe, for tests): `drop_diffs(n)` withholds the next n diffs (their
sequences are spent, so the client sees a gap), `cut()` aborts every open connection, `silence(s)`
sends nothing at all (keep-alives included) for s seconds, `stall()` sends nothing more on the
connections open now (a half-dead link: a new connection is served as usual), `burst(n)` makes n
changes at once and sends them back to back, `refuse(s)` rejects new connections for s seconds.

What each connection was sent is logged in `sent` (data messages, in order), `dropped`, `acks`.

As a process, `python -m bitso_testkit.fake_ws --books btc_mxn,eth_mxn --rate 20` starts the
exchange, the fake REST server and this socket, prints `{"rest": URL, "ws": URL}` on one line,
and takes faults as JSON on `POST /_control` of the socket's port (`{"drop_diffs": 1}`,
`{"cut": true}`, `{"silence": 12}`, `{"stall": true}`, `{"burst": 100}`, `{"refuse": 3}`,
`{"rate": 50}`);
`GET /_stats` answers the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Self

from aiohttp import WSMsgType, web

from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.market import Change, Exchange

CHANNELS = ("trades", "diff-orders")
KEEPALIVE = {"type": "ka"}
#: Changes a second a book the process may make: below the 1,000 a second its first sequence
#: (its start in epoch ms) rises by between two runs.
MAX_RATE = 1000.0
#: How often the market clock ticks (changes due since the last tick are made together).
TICK_S = 0.005


@dataclass
class Sent:
    """One data message as the fake sent it on one connection."""

    connection: int
    message: dict[str, Any]


@dataclass
class Stats:
    connections: int = 0
    refused: int = 0
    subscribes: int = 0
    acks: int = 0
    unanswered: list[tuple[str, str]] = field(default_factory=list)
    keepalives: int = 0
    messages: int = 0
    dropped: list[tuple[str, int]] = field(default_factory=list)
    changes: int = 0


class _Connection:
    def __init__(self, number: int, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.number = number
        self.ws = ws
        self.request = request
        self.subscriptions: set[tuple[str, str]] = set()
        #: Sent nothing more (`FakeBitsoWs.stall`).
        self.stalled = False


class FakeBitsoWs:
    """The fake socket as an object: `with FakeBitsoWs(exchange) as ws: ws.url ...`.

    `rate` is changes a second per book; `clock` (epoch seconds) stamps messages, so a test can
    give it the same shifted clock as the collector it drives. `log_sent=False` keeps no log of
    sent messages (for long benchmark runs).
    """

    def __init__(
        self,
        exchange: Exchange,
        *,
        rate: float = 20.0,
        keepalive_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        port: int = 0,
        log_sent: bool = True,
    ) -> None:
        self.exchange = exchange
        self.rate = rate
        self.keepalive_s = keepalive_s
        self.clock = clock
        self.log_sent = log_sent
        self.sent: list[Sent] = []
        self.stats = Stats()
        self._port = port
        self._lock = threading.Lock()
        self._connections: dict[int, _Connection] = {}
        self._drop: dict[str | None, int] = {}
        self._silent_until = 0.0
        self._refuse_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._bound_port = 0

    # -- life -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._bound_port}/"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self._bound_port}/_control"

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        app.router.add_post("/_control", self._control)
        app.router.add_get("/_stats", self._stats)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._bound_port = int(self._runner.addresses[0][1])
        self._tasks = [
            asyncio.create_task(self._market_clock()),
            asyncio.create_task(self._keepalives()),
        ]

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for connection in list(self._connections.values()):
            with contextlib.suppress(Exception):
                await connection.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- faults (any thread) --------------------------------------------------------------
    def drop_diffs(self, count: int = 1, book: str | None = None) -> None:
        """Withhold the next `count` diffs (of `book`, or of any book) from every connection."""
        with self._lock:
            self._drop[book] = self._drop.get(book, 0) + count

    def cut(self) -> None:
        """Abort every open connection (no close frame: the client sees the link die)."""
        self._call(self._cut)

    def stall(self) -> None:
        """Send nothing more on the connections open now, keep-alives included, and keep them
        open: the client sees only silence. Connections opened later are served as usual."""
        with self._lock:
            for connection in self._connections.values():
                connection.stalled = True

    def silence(self, seconds: float) -> None:
        """Send nothing on any connection, keep-alives included, for `seconds`."""
        with self._lock:
            self._silent_until = time.monotonic() + seconds

    def refuse(self, seconds: float) -> None:
        """Answer new connection attempts with HTTP 503 for `seconds`."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds

    def burst(self, count: int, book: str | None = None) -> None:
        """Make `count` changes now (on `book`, or round the books) and send them back to back."""
        books = [book] if book is not None else list(self.exchange.markets)
        self._call(lambda: self._burst(count, books))

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = rate

    def sent_to(self, connection: int | None = None) -> list[dict[str, Any]]:
        """The data messages sent (to one connection, or to any), in order."""
        with self._lock:
            return [s.message for s in self.sent if connection in (None, s.connection)]

    def _call(self, make: Callable[[], Any]) -> None:
        async def run() -> None:
            result = make()
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    # -- the socket -----------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            refusing = time.monotonic() < self._refuse_until
            if refusing:
                self.stats.refused += 1
        if refusing:
            return web.Response(status=503, text="refused on purpose")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            self.stats.connections += 1
            connection = _Connection(self.stats.connections, ws, request)
            self._connections[connection.number] = connection
        try:
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    await self._on_text(connection, frame.data)
        finally:
            with self._lock:
                self._connections.pop(connection.number, None)
        return ws

    async def _on_text(self, connection: _Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            return
        if not isinstance(request, dict) or request.get("action") != "subscribe":
            return
        book, channel = request.get("book"), request.get("type")
        with self._lock:
            self.stats.subscribes += 1
            known = isinstance(book, str) and self.exchange.knows(book) and channel in CHANNELS
            if not known:
                self.stats.unanswered.append((str(book), str(channel)))
                return
            assert isinstance(book, str) and isinstance(channel, str)
            connection.subscriptions.add((book, channel))
            self.stats.acks += 1
        ack = {"action": "subscribe", "response": "ok", "time": self._now_ms(), "type": channel}
        await self._send(connection, ack)

    async def _send(self, connection: _Connection, message: dict[str, Any]) -> bool:
        if connection.ws.closed:
            return False
        try:
            await connection.ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionError, RuntimeError):
            return False
        return True

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _silent(self) -> bool:
        with self._lock:
            return time.monotonic() < self._silent_until

    # -- the market and keep-alives -------------------------------------------------------
    async def _market_clock(self) -> None:
        owed = dict.fromkeys(self.exchange.markets, 0.0)
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            with self._lock:
                rate = self.rate
            changes: list[Change] = []
            for book in owed:
                owed[book] += (now - last) * rate
                while owed[book] >= 1:
                    owed[book] -= 1
                    changes.append(self.exchange.step(book, self._now_ms()))
            last = now
            await self._deliver(changes)

    async def _burst(self, count: int, books: list[str]) -> None:
        changes = [
            self.exchange.step(books[index % len(books)], self._now_ms()) for index in range(count)
        ]
        await self._deliver(changes)

    async def _deliver(self, changes: list[Change]) -> None:
        silent = self._silent()
        for change in changes:
            with self._lock:
                self.stats.changes += 1
            for message in change.messages():
                if message["type"] == "diff-orders" and self._take_drop(change.book):
                    with self._lock:
                        self.stats.dropped.append((change.book, change.sequence))
                    continue
                if silent:
                    continue
                await self._broadcast(change.book, message)

    def _take_drop(self, book: str) -> bool:
        with self._lock:
            for key in (book, None):
                if self._drop.get(key, 0) > 0:
                    self._drop[key] -= 1
                    return True
        return False

    async def _broadcast(self, book: str, message: dict[str, Any]) -> None:
        key = (book, message["type"])
        with self._lock:
            targets = [
                c for c in self._connections.values() if key in c.subscriptions and not c.stalled
            ]
        for connection in targets:
            if await self._send(connection, message):
                with self._lock:
                    self.stats.messages += 1
                    if self.log_sent:
                        self.sent.append(Sent(connection.number, message))

    async def _keepalives(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            if self._silent():
                continue
            with self._lock:
                targets = [c for c in self._connections.values() if not c.stalled]
            for connection in targets:
                if await self._send(connection, KEEPALIVE):
                    with self._lock:
                        self.stats.keepalives += 1

    def _cut(self) -> None:
        with self._lock:
            targets = list(self._connections.values())
        for connection in targets:
            transport = connection.request.transport
            if transport is not None:
                transport.abort()

    # -- control over HTTP (process mode) -------------------------------------------------
    async def _control(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            await self._apply(changes)
        except (ValueError, TypeError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"ok": True})

    async def _apply(self, changes: dict[str, Any]) -> None:
        known = {"drop_diffs", "cut", "silence", "stall", "burst", "refuse", "rate"}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(sorted(unknown))}; allowed: {known}")
        if "drop_diffs" in changes:
            self.drop_diffs(int(changes["drop_diffs"]))
        if changes.get("cut"):
            self._cut()
        if "silence" in changes:
            self.silence(float(changes["silence"]))
        if changes.get("stall"):
            self.stall()
        if "refuse" in changes:
            self.refuse(float(changes["refuse"]))
        if "rate" in changes:
            self.set_rate(float(changes["rate"]))
        if "burst" in changes:
            await self._burst(int(changes["burst"]), list(self.exchange.markets))

    async def _stats(self, request: web.Request) -> web.Response:
        with self._lock:
            body = asdict(self.stats)
        return web.json_response(body)


def rising_exchange(books: list[str], seed: int, start_ms: int) -> Exchange:
    """The process's market. Like Bitso's, its sequences and trade ids only rise: each run starts
    at its start in epoch ms, above anything an earlier run reached (it made fewer than
    `MAX_RATE` changes a second), so an archive several runs add to (make try) never holds two
    different diffs under one sequence, or two trades under one id."""
    return Exchange(books, seed, start_ms=start_ms, first_sequence=start_ms, first_tid=start_ms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Bitso REST + WebSocket on 127.0.0.1")
    parser.add_argument("--books", default="btc_mxn", help="comma-separated books")
    parser.add_argument("--rate", type=float, default=20.0, help="changes a second per book")
    parser.add_argument("--keepalive", type=float, default=2.0, help="seconds between ka")
    parser.add_argument("--rest-port", type=int, default=0)
    parser.add_argument("--ws-port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", default="none", help="REST latency profile or seconds")
    parser.add_argument(
        "--shift", type=float, default=0.0, help="seconds added to the clock that stamps messages"
    )
    args = parser.parse_args(argv)
    shift = args.shift
    start_ms = int((time.time() + shift) * 1000)
    if not 0 < args.rate < MAX_RATE:
        parser.error(f"--rate {args.rate} must be above 0 and below {MAX_RATE} changes a second")
    exchange = rising_exchange(args.books.split(","), args.seed, start_ms)
    latency: str | float = args.latency
    with contextlib.suppress(ValueError):
        latency = float(args.latency)
    rest = FakeBitso(Behaviour(latency=latency), args.rest_port, exchange=exchange)
    socket = FakeBitsoWs(
        exchange,
        rate=args.rate,
        keepalive_s=args.keepalive,
        clock=lambda: time.time() + shift,
        port=args.ws_port,
        log_sent=False,
    )
    with rest, socket:
        print(json.dumps({"rest": rest.url, "ws": socket.url}), flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
