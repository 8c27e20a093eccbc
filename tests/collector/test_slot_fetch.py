"""Fetching one slot: the path it asks for, the recorder call its reply becomes, and the same
calls from the blocking and the asyncio strategies for the same replies."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from bitso_collector.bitso_client import BitsoClient
from bitso_collector.clock import SystemClock
from bitso_collector.errors import (
    BitsoError,
    MalformedReply,
    RequestTimeout,
    ServerError,
    Throttled,
)
from bitso_collector.grid import Slot
from bitso_collector.outcomes import Outcome
from bitso_collector.rate_guard import Pacer
from bitso_collector.recorder import CallRecorder, SlotStart
from bitso_collector.rest_trades import RestTrade, parse_trades_reply
from bitso_collector.slot_policy import PlannedUse, SlotUse
from bitso_collector.strategies import FetchJob, Strategy
from bitso_collector.strategies.asyncio_strategy import AsyncioStrategy
from bitso_collector.strategies.blocking import ThreadedStrategy
from bitso_collector.strategies.slot_fetch import Reply, settle_slot, slot_path
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from bitso_testkit.market import Exchange

START_MS = 1_795_515_300_000
BOOK = {"bids": [{"price": "1", "amount": "2"}], "asks": [], "sequence": "7"}
TRADE = {
    "book": "btc_mxn",
    "tid": 11,
    "created_at": "2026-11-25T08:15:00+0000",
    "price": "1",
    "amount": "2",
    "maker_side": "buy",
}


def body(payload: Any) -> bytes:
    return json.dumps({"success": True, "payload": payload}).encode()


@dataclass
class CallLog:
    """A recorder that notes its calls, but not their times; `uses` and `full` decide what each
    slot (by number) fetches: a trades page, and a full (`aggregate=false`) book."""

    uses: dict[int, SlotUse] = field(default_factory=dict)
    full: set[int] = field(default_factory=set)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    throttled: bool = False

    def start(self, slot: Slot, at: float) -> SlotStart:
        use = PlannedUse(slot.book, self.uses.get(slot.number, SlotUse.SNAPSHOT))
        return SlotStart(at, use, aggregate=slot.number not in self.full)

    def skipped(self, slot: Slot, reason: Outcome) -> None:
        self.calls.append(("skipped", slot.number, reason))

    def failed(self, slot: Slot, error: Exception, start: SlotStart | None = None) -> None:
        self.calls.append(("failed", slot.number, type(error), str(error)))

    def replied(self, slot: Slot, start: SlotStart, at: float, payload: dict[str, Any]) -> None:
        self.calls.append(("replied", slot.number, payload))

    def backfilled(self, slot: Slot, start: SlotStart, at: float, trades: list[RestTrade]) -> None:
        self.calls.append(("backfilled", slot.number, trades))


class StoppedClock:
    def now(self) -> float:
        return START_MS / 1000

    def sleep_until(self, when: float) -> None:
        raise AssertionError("settling a slot never waits")


def job_for(log: CallLog, slots: list[Slot], clock: Any, spacing: float = 1.0) -> FetchJob:
    return FetchJob(
        slots=slots,
        clock=clock,
        pacer=Pacer(100, 60.0),
        max_late=spacing * 0.9,
        deadline=slots[-1].at + 2.0,
        aggregate=True,
        recorder=cast(CallRecorder, log),
        slot_spacing=spacing,
    )


SLOT = Slot(5, START_MS, "btc_mxn")


def settled(reply: Reply | Exception, use: SlotUse = SlotUse.SNAPSHOT) -> tuple[Any, ...]:
    """The one recorder call `reply` becomes, for `SLOT` fetched for `use`."""
    log = CallLog(uses={SLOT.number: use})
    job = job_for(log, [SLOT], StoppedClock())
    settle_slot(job, SLOT, log.start(SLOT, SLOT.at), reply)
    [call] = log.calls
    return call


def test_the_path_is_a_trades_page_for_a_backfill_else_the_order_book() -> None:
    log = CallLog(uses={1: SlotUse.TRADES_BACKFILL}, full={2})
    backfill = SlotStart(0.0, PlannedUse("btc_mxn", SlotUse.TRADES_BACKFILL, marker=42), True)
    assert slot_path(Slot(1, 0, "btc_mxn"), backfill) == (
        "/v3/trades/?book=btc_mxn&sort=desc&limit=100&marker=42"
    )
    assert slot_path(Slot(2, 0, "eth_mxn"), log.start(Slot(2, 0, "eth_mxn"), 0.0)) == (
        "/v3/order_book/?book=eth_mxn&aggregate=false"
    )


def test_a_reply_becomes_replied_or_backfilled() -> None:
    assert settled((200, body(BOOK))) == ("replied", 5, BOOK)
    trades = parse_trades_reply(200, body([TRADE]))
    assert settled((200, body([TRADE])), SlotUse.TRADES_BACKFILL) == ("backfilled", 5, trades)


def test_a_failure_becomes_failed_with_its_own_error_and_a_bug_as_unexpected() -> None:
    assert settled(RequestTimeout("no reply within 0.2 s")) == (
        "failed",
        5,
        RequestTimeout,
        "no reply within 0.2 s",
    )
    assert settled((200, body([TRADE]))) == (
        "failed",
        5,
        MalformedReply,
        "the payload is not an order book (bids, asks, sequence)",
    )
    assert settled((200, body(BOOK)), SlotUse.TRADES_BACKFILL)[:3] == ("failed", 5, MalformedReply)
    # Only the type of an unknown error is named: its message may quote a header, and so a key.
    assert settled(KeyError("secret")) == ("failed", 5, BitsoError, "unexpected KeyError")


# -- both strategies, the same replies --------------------------------------------------------
#: What the fake does with each request, in order, and what each slot fetches.
SCRIPT = ["ok", "ok", "5xx", "garbage", "empty", "truncate", "slow", "throttle", "ok"]
FULL_BOOK = 0  # about 90 KB: the asyncio strategy reads it off its loop
BACKFILL = len(SCRIPT) - 1  # a btc_mxn slot, as are the even ones
#: Apart enough that requests reach the fake in slot order, on a busy machine too.
SPACING = 0.15


@pytest.fixture(scope="module")
def exchange() -> Iterator[Exchange]:
    """Markets with a deep book and some trades, never stepped again: every reply is the same."""
    exchange = Exchange(["btc_mxn", "eth_mxn"], seed=5, start_ms=START_MS, depth=1000)
    for step in range(300):
        exchange.step("btc_mxn", START_MS + step * 10)
    yield exchange


def recorded(make: Callable[[str], Strategy], exchange: Exchange) -> list[tuple[Any, ...]]:
    """The recorder calls of one run through `SCRIPT` of the strategy `make(url)` builds, in slot
    order."""
    log = CallLog(uses={BACKFILL: SlotUse.TRADES_BACKFILL}, full={FULL_BOOK})
    first_ms = int(time.time() * 1000) + 200
    slots = [
        Slot(number, first_ms + int(number * SPACING * 1000), ("btc_mxn", "eth_mxn")[number % 2])
        for number in range(len(SCRIPT))
    ]
    # With 2 in flight, a request waits one spacing for its reply: less than a "slow" reply.
    job = job_for(log, slots, SystemClock(), spacing=SPACING)
    with FakeBitso(Behaviour(script=deque(SCRIPT), slow_seconds=0.5), exchange=exchange) as fake:
        strategy = make(fake.url)
        try:
            strategy.run(job)
        finally:
            strategy.close()
        give_up = time.monotonic() + 2  # the fake notes the "slow" request once it has answered
        while len(fake.requests) < len(SCRIPT) and time.monotonic() < give_up:
            time.sleep(0.02)
        arrived = sorted(fake.requests, key=lambda entry: entry.at)
        assert [entry.fault for entry in arrived] == SCRIPT
    return sorted(log.calls, key=lambda call: call[1])


def test_both_strategies_give_the_recorder_the_same_calls(exchange: Exchange) -> None:
    threaded = recorded(lambda url: ThreadedStrategy(BitsoClient(url), max_in_flight=2), exchange)
    asyncio = recorded(lambda url: AsyncioStrategy(url, max_in_flight=2), exchange)
    assert asyncio == threaded
    assert [call[:3] for call in threaded] == [
        ("replied", 0, exchange.order_book("btc_mxn", aggregate=False)),
        ("replied", 1, exchange.order_book("eth_mxn")),
        ("failed", 2, ServerError),
        ("failed", 3, MalformedReply),
        ("failed", 4, MalformedReply),
        ("failed", 5, MalformedReply),
        ("failed", 6, RequestTimeout),
        ("failed", 7, Throttled),
        ("backfilled", 8, parse_trades_reply(200, body(exchange.trades("btc_mxn", limit=100)))),
    ]
    assert threaded[6][3] == "no reply within 0.1 s"  # f"{0.15:.1f}"
