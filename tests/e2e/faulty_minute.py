"""One scheduled call through the real server with streams on, a diff dropped 8 s in and the
socket cut (reconnects refused for half a second) 15 s in: what the read-back tests read; and the
fake market it is recorded from, whose own book is their truth."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import Exchange
from tests.conftest import FunctionServer, StartFunction

BOOKS = ("btc_mxn", "eth_mxn")
CALL_SECONDS = 24
#: Price levels, best first: (price, amount, orders).
Levels = list[tuple[Decimal, Decimal, int]]


@dataclass(frozen=True)
class FakeMarket:
    """One order-level market, served by the fake REST server and the fake socket alike."""

    exchange: Exchange
    rest: FakeBitso
    socket: FakeBitsoWs


@contextmanager
def fake_market(seed: int) -> Iterator[FakeMarket]:
    exchange = Exchange(BOOKS, seed=seed, start_ms=int(time.time() * 1000))
    with FakeBitso(exchange=exchange) as rest, FakeBitsoWs(exchange, rate=20) as socket:
        yield FakeMarket(exchange, rest, socket)


def market_levels(exchange: Exchange, book: str, sequence: int) -> tuple[Levels, Levels]:
    """The market's book after `sequence`, its orders summed by price (best first)."""
    truth = exchange.order_book(book, aggregate=False, sequence=sequence)
    sides = []
    for key, best_first in (("bids", True), ("asks", False)):
        levels: dict[Decimal, list[Any]] = {}
        for order in truth[key]:
            level = levels.setdefault(Decimal(order["price"]), [Decimal(0), 0])
            level[0] += Decimal(order["amount"])
            level[1] += 1
        sides.append([(p, a, n) for p, (a, n) in sorted(levels.items(), reverse=best_first)])
    return sides[0], sides[1]


def record_faulty_minute(
    start_function: StartFunction, market: FakeMarket
) -> tuple[FunctionServer, float, requests.Response]:
    """The server, the minute's start and the call's reply (asserted 200)."""
    rest, socket = market.rest, market.socket
    server = start_function(
        {
            "BITSO_BOOKS": ",".join(BOOKS),
            "BITSO_API_URL": rest.url,
            "BITSO_WS_URL": socket.url,
            "STREAMS": "trades,diff-orders",
        }
    )
    minute = server.new_minute(-0.3)
    assert server.clock is not None
    shift = server.clock.now() - time.time()
    socket.clock = lambda: time.time() + shift  # the socket stamps messages with that clock
    replies: list[Any] = []
    call = threading.Thread(
        target=lambda: replies.append(
            server.call({"duration_seconds": CALL_SECONDS}, minute_start=minute, timeout=90)
        )
    )
    call.start()
    while socket.clock() < minute + 8:
        time.sleep(0.05)
    socket.drop_diffs(1, "btc_mxn")
    while socket.clock() < minute + 15:
        time.sleep(0.05)
    socket.refuse(0.5)
    socket.cut()
    call.join()
    (reply,) = replies
    assert reply.status_code == 200, reply.text
    return server, minute, reply
