"""A fake Bitso public API on 127.0.0.1 that behaves like the real one where the collector cares.

- `GET /v3/order_book/?book=B[&aggregate=false]`: Bitso's envelope, 50 aggregated levels a side
  (prices and amounts as strings), a `sequence` that rises per book, and for `aggregate=false` a
  full order-level book with `oid`s (about 600 KB for btc_mxn).
- With an `Exchange` (order-level markets, `bitso_testkit.market`), the order book is served from
  its markets instead (so it agrees with what the fake socket sends), and
  `GET /v3/trades/?book=B[&sort=desc][&limit=25][&marker=TID]` serves their trades; both count
  against the same rate window. Without one, `/v3/trades/` is an unknown path.
- Unknown book: 400 with code 0301. Unknown path: 404 with an empty body.
- At most `limit` request starts in any rolling `window` seconds; past it, 420 with code 0801 and
  every request is refused for one more window (Bitso's lockout).
- A neighbour on the same IP (`neighbour_per_window`): another client whose request starts, evenly
  spaced, count against the same window and lockout, so a 420 can come from the shared budget. It
  has been spending at that pace for a window already when it is configured.
- Its own clock (`clock`, default the real one): a test can run it on the collector's timeline.
- Faults on demand, scripted per request or as the default: latency, 5xx, malformed or truncated
  bodies, hung connections. Signatures are checked when the fake knows the keys.

In tests use `FakeBitso` in-process; as a process (`python -m bitso_testkit.fake_bitso`) it prints
its URL and takes the same settings over `POST /_control`, and reports on `GET /_requests`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bitso_testkit.loopback import LoopbackServer
from bitso_testkit.market import BOOKS, Exchange

LEVELS = 50
FAULTS = ("ok", "slow", "5xx", "garbage", "truncate", "hang", "throttle", "empty")
ORDER_BOOK_PATH = "/v3/order_book/"
TRADES_PATH = "/v3/trades/"


def _latency_typical(rng: random.Random) -> float:
    return min(1.5, rng.lognormvariate(-1.6, 0.55))


#: Latency profiles (seconds per reply): fast ~50 ms, typical median 200 ms with a tail to 1.5 s,
#: slow median 1.2 s.
LATENCY_PROFILES: dict[str, Callable[[random.Random], float]] = {
    "none": lambda rng: 0.0,
    "fast": lambda rng: max(0.01, rng.gauss(0.05, 0.01)),
    "typical": _latency_typical,
    "slow": lambda rng: max(0.6, rng.gauss(1.2, 0.15)),
}


@dataclass
class Behaviour:
    """What the fake does; tests change it between or during calls."""

    default: str = "ok"
    script: deque[str] = field(default_factory=deque)
    latency: str | float = "none"
    slow_seconds: float = 3.0
    limit: int = 60
    window: float = 60.0
    lockout: bool = True
    #: Request starts per `window` of a second client on the same IP (0: none).
    neighbour_per_window: int = 0
    api_key: str | None = None
    api_secret: str | None = None


@dataclass
class RequestLog:
    at: float
    book: str | None
    aggregate: bool
    fault: str
    status: int
    auth: str
    path: str = ORDER_BOOK_PATH


@dataclass(frozen=True)
class NeighbourStart:
    """One request of the neighbour: when it started and whether Bitso refused it."""

    at: float
    refused: bool


class SimulatedBook:
    """A deterministic, slowly moving book per name with a rising sequence."""

    def __init__(self, name: str, seed: int) -> None:
        mid, price_places, amount_places = BOOKS[name]
        self.name = name
        self.mid = Decimal(mid)
        self.price_step = Decimal(1).scaleb(-price_places)
        self.amount_quantum = Decimal(1).scaleb(-amount_places)
        self.rng = random.Random(seed)
        self.sequence = 18805917 + seed

    def next(self, aggregate: bool) -> dict[str, Any]:
        self.sequence += 1
        tick = self.mid * Decimal("0.0002")
        self.mid += tick * self.rng.randint(-2, 2)
        per_level = 1 if aggregate else 20
        bids = self._side(-1, per_level, aggregate)
        asks = self._side(1, per_level, aggregate)
        return {
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "bids": bids,
            "asks": asks,
            "sequence": str(self.sequence),
        }

    def _side(self, sign: int, per_level: int, aggregate: bool) -> list[dict[str, str]]:
        levels = []
        spread = max(self.price_step, (self.mid * Decimal("0.0005")).quantize(self.price_step))
        for index in range(LEVELS):
            price = (self.mid + sign * (spread + spread * index)).quantize(self.price_step)
            for order in range(per_level):
                amount = (Decimal(self.rng.randint(1, 5_000_000)) * self.amount_quantum).quantize(
                    self.amount_quantum
                )
                # Plain notation, as Bitso sends it (a Decimal prints 0.00000034 as 3.4E-7).
                level = {"book": self.name, "price": f"{price:f}", "amount": f"{amount:f}"}
                if not aggregate:
                    level["oid"] = f"{self.rng.getrandbits(64):016x}{index:02d}{order:02d}"
                levels.append(level)
        return levels


class FakeBitso(LoopbackServer):
    """The fake as an object: `with FakeBitso() as fake: fake.url ...`."""

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        port: int = 0,
        exchange: Exchange | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        #: Order-level markets to serve the order book and trades from (None: `SimulatedBook`s).
        self.exchange = exchange
        self.clock = clock
        self.requests: list[RequestLog] = []
        self.served: list[dict[str, Any]] = []
        self._neighbour: list[NeighbourStart] = []
        self._starts: deque[float] = deque()
        self._locked_until = 0.0
        self._neighbour_next = clock() - self.behaviour.window
        self._books = {name: SimulatedBook(name, seed) for seed, name in enumerate(BOOKS)}
        self._rng = random.Random(7)
        self._lock = threading.Lock()
        super().__init__(_handler_for(self), port)

    def configure(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                if name == "script":
                    self.behaviour.script = deque(value)
                elif name == "neighbour_per_window":
                    self._neighbour_until(self.clock())
                    self.behaviour.neighbour_per_window = int(value)
                    self._neighbour_next = self.clock() - self.behaviour.window
                elif hasattr(self.behaviour, name):
                    setattr(self.behaviour, name, value)
                else:
                    raise ValueError(f"unknown setting {name!r}")

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.served.clear()

    def neighbour_starts(self) -> list[NeighbourStart]:
        """The neighbour's requests so far, oldest first."""
        with self._lock:
            self._neighbour_until(self.clock())
            return list(self._neighbour)

    # -- what one request gets ------------------------------------------------------------
    def admit(self, now: float) -> tuple[bool, str]:
        """Counts the start against the rolling window; returns (throttled, fault to apply)."""
        with self._lock:
            self._neighbour_until(now)
            over = self._count_start(now)
            behaviour = self.behaviour
            fault = behaviour.script.popleft() if behaviour.script else behaviour.default
            return over, fault

    def _count_start(self, now: float) -> bool:
        """One request start on the shared budget (lock held); True when it is refused."""
        behaviour = self.behaviour
        while self._starts and self._starts[0] <= now - behaviour.window:
            self._starts.popleft()
        over = len(self._starts) >= behaviour.limit or now < self._locked_until
        self._starts.append(now)
        if over and behaviour.lockout and now >= self._locked_until:
            self._locked_until = now + behaviour.window
        return over

    def _neighbour_until(self, now: float) -> None:
        """Counts the neighbour's starts due by `now`, each at its own time (lock held), so the
        neighbour keeps its pace whether or not anyone else calls meanwhile."""
        per_window = self.behaviour.neighbour_per_window
        if per_window <= 0:
            self._neighbour_next = now
            return
        spacing = self.behaviour.window / per_window
        while self._neighbour_next <= now:
            at = self._neighbour_next
            self._neighbour.append(NeighbourStart(at, self._count_start(at)))
            self._neighbour_next = at + spacing

    def latency(self) -> float:
        latency = self.behaviour.latency
        if isinstance(latency, int | float):
            return float(latency)
        with self._lock:
            return LATENCY_PROFILES[latency](self._rng)

    def knows(self, book: str | None) -> bool:
        if self.exchange is not None:
            return book is not None and self.exchange.knows(book)
        return book in BOOKS

    def book_payload(self, name: str, aggregate: bool) -> dict[str, Any]:
        if self.exchange is not None:
            payload = self.exchange.order_book(name, aggregate)
            with self._lock:
                self.served.append({"book": name, "aggregate": aggregate, **payload})
            return payload
        with self._lock:
            payload = self._books[name].next(aggregate)
            self.served.append({"book": name, "aggregate": aggregate, **payload})
            return payload

    def trades_payload(self, name: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        """`/v3/trades/` from the exchange; ValueError names a bad parameter."""
        assert self.exchange is not None
        sort = params.get("sort", ["desc"])[0]
        raw_limit = params.get("limit", ["25"])[0]
        raw_marker = params.get("marker", [None])[0]
        if not raw_limit.isdigit():
            raise ValueError(f"limit={raw_limit!r} is not a whole number")
        if raw_marker is not None and not raw_marker.isdigit():
            raise ValueError(f"marker={raw_marker!r} is not a trade id")
        marker = None if raw_marker is None else int(raw_marker)
        return self.exchange.trades(name, sort, int(raw_limit), marker)

    def check_auth(self, header: str | None, path: str) -> str:
        if not header:
            return "none"
        match = re.fullmatch(r"Bitso ([^:]+):(\d+):([0-9a-f]{64})", header)
        key, secret = self.behaviour.api_key, self.behaviour.api_secret
        if not match or key is None or secret is None or match.group(1) != key:
            return "invalid"
        expected = hmac.new(
            secret.encode(), f"{match.group(2)}GET{path}".encode(), hashlib.sha256
        ).hexdigest()
        return "valid" if hmac.compare_digest(expected, match.group(3)) else "invalid"

    def record(self, entry: RequestLog) -> None:
        with self._lock:
            self.requests.append(entry)


def _error(code: str, message: str) -> bytes:
    return json.dumps(
        {"success": False, "error": {"code": code, "message": message, "details": []}}
    ).encode()


def _handler_for(fake: FakeBitso) -> type[BaseHTTPRequestHandler]:
    class FakeBitsoHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm the body then waits for
        # the client's delayed ACK, adding ~40 ms to every reply on a kept-alive connection.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: bytes, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/_requests":
                with fake._lock:
                    body = [entry.__dict__ for entry in fake.requests]
                self._send(200, json.dumps(body).encode())
                return
            if parts.path == "/_served":
                with fake._lock:
                    served = list(fake.served)
                self._send(200, json.dumps(served).encode())
                return
            if parts.path == ORDER_BOOK_PATH or (
                parts.path == TRADES_PATH and fake.exchange is not None
            ):
                self._public(parts.path, parts.query)
                return
            self._send(404, b"")

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/_control":
                self._send(404, b"")
                return
            length = int(self.headers.get("Content-Length") or 0)
            changes = json.loads(self.rfile.read(length) or b"{}")
            if changes.pop("reset_log", False):
                fake.reset_log()
            try:
                fake.configure(**changes)
            except ValueError as error:
                self._send(400, json.dumps({"error": str(error)}).encode())
                return
            self._send(200, b'{"ok": true}')

        def _public(self, path: str, query: str) -> None:
            """One public request (order book or trades), through the window and the faults."""
            now = fake.clock()
            params = parse_qs(query)
            book = params.get("book", [None])[0]
            aggregate = params.get("aggregate", ["true"])[0] != "false"
            auth = fake.check_auth(self.headers.get("Authorization"), self.path)
            throttled, fault = fake.admit(now)

            def done(status: int, applied: str = fault) -> None:
                fake.record(RequestLog(now, book, aggregate, applied, status, auth, path))

            if throttled or fault == "throttle":
                done(420, "throttle")
                self._send(420, _error("0801", "You have hit the request rate-limit"))
                return
            if auth == "invalid":
                done(401)
                self._send(401, _error("0201", "Invalid Nonce or Invalid Signature"))
                return
            if book is None or not fake.knows(book):
                done(400)
                self._send(400, _error("0301", f"Unknown order book {book}"))
                return
            delay = fake.behaviour.slow_seconds if fault == "slow" else fake.latency()
            if fault == "hang":
                done(0)
                fake._stopping.wait(120)
                return
            if delay:
                time.sleep(delay)
            if fault == "5xx":
                done(503)
                self._send(503, b"<html><body>503 Service Unavailable</body></html>")
                return
            if fault == "garbage":
                done(200)
                self._send(200, b'{"success": true, "payload": {"bids": [{"price": 4')
                return
            if fault == "empty":
                done(200)
                self._send(200, b"")
                return
            payload: Any
            if path == TRADES_PATH:
                try:
                    payload = fake.trades_payload(book, params)
                except ValueError as error:
                    done(400)
                    self._send(400, _error("0102", f"Invalid parameter: {error}"))
                    return
            else:
                payload = fake.book_payload(book, aggregate)
            body = json.dumps({"success": True, "payload": payload}).encode()
            if fault == "truncate":
                done(200)
                self._send(200, body[: len(body) // 2], length=len(body))
                self.close_connection = True
                return
            done(200)
            self._send(200, body)

    return FakeBitsoHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Bitso public API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", default="none", help="profile name or seconds")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument(
        "--neighbour", type=int, default=0, help="requests per window of a second client"
    )
    args = parser.parse_args(argv)
    latency: str | float = args.latency
    if args.latency not in LATENCY_PROFILES:
        latency = float(args.latency)
    behaviour = Behaviour(
        latency=latency,
        window=args.window,
        limit=args.limit,
        neighbour_per_window=args.neighbour,
    )
    fake = FakeBitso(behaviour, args.port)
    fake.start()
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
