"""The fake Bitso socket speaks Bitso's protocol, agrees with the fake REST server, and breaks on
demand. Driven here by a bare aiohttp client, so the fake is proven apart from the collector."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.fake_ws import MAX_RATE, FakeBitsoWs, rising_exchange
from bitso_testkit.market import Exchange

BOOKS = ("btc_mxn", "eth_mxn")


@pytest.fixture
def exchange() -> Exchange:
    return Exchange(BOOKS, seed=2, start_ms=int(time.time() * 1000))


@pytest.fixture
def socket(exchange: Exchange) -> Iterator[FakeBitsoWs]:
    with FakeBitsoWs(exchange, rate=100, keepalive_s=0.2) as fake:
        yield fake


async def listen(
    url: str,
    subscribe: list[tuple[str, str]],
    seconds: float,
    during: Any = None,
) -> tuple[list[dict[str, Any]], str]:
    """Everything received in `seconds` after subscribing, and how the connection ended."""
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        for book, channel in subscribe:
            await ws.send_str(json.dumps({"action": "subscribe", "book": book, "type": channel}))
        if during is not None:
            asyncio.get_running_loop().call_later(seconds / 3, during)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frame = await ws.receive(timeout=left)
            except TimeoutError:
                return received, "open"
            if frame.type is not aiohttp.WSMsgType.TEXT:
                return received, "closed"
            received.append(json.loads(frame.data))
    return received, "open"


def data(received: list[dict[str, Any]], channel: str) -> list[dict[str, Any]]:
    return [m for m in received if m.get("type") == channel and "book" in m]


def test_acks_answer_known_books_in_order_and_carry_no_book(socket: FakeBitsoWs) -> None:
    wanted = [("btc_mxn", "diff-orders"), ("nope_mxn", "trades"), ("eth_mxn", "trades")]
    received, how = asyncio.run(listen(socket.url, wanted, 0.6))
    acks = [m for m in received if m.get("action") == "subscribe"]
    assert [a["type"] for a in acks] == ["diff-orders", "trades"]  # nothing for nope_mxn
    assert all(
        a["response"] == "ok" and "book" not in a and isinstance(a["time"], int) for a in acks
    )
    assert socket.stats.unanswered == [("nope_mxn", "trades")]
    assert how == "open"
    assert {m["book"] for m in data(received, "diff-orders")} == {"btc_mxn"}
    assert {m["book"] for m in data(received, "trades")} <= {"eth_mxn"}
    assert sum(m == {"type": "ka"} for m in received) >= 2


def test_what_the_socket_sends_rebuilds_what_rest_serves(
    socket: FakeBitsoWs, exchange: Exchange
) -> None:
    with FakeBitso(exchange=exchange) as rest:
        received: list[dict[str, Any]] = []

        async def run() -> None:
            async with aiohttp.ClientSession() as session, session.ws_connect(socket.url) as ws:
                await ws.send_str(
                    json.dumps({"action": "subscribe", "book": "btc_mxn", "type": "diff-orders"})
                )
                await ws.receive(timeout=2)  # the ack
                await asyncio.sleep(0.2)
                anchor = await asyncio.to_thread(
                    requests.get, f"{rest.url}/v3/order_book/?book=btc_mxn&aggregate=false"
                )
                received.append(anchor.json()["payload"])
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    frame = await ws.receive(timeout=2)
                    received.append(json.loads(frame.data))

        asyncio.run(run())
        socket.set_rate(0)
        time.sleep(0.05)
        anchor, messages = received[0], received[1:]
        book = {o["oid"]: (o["price"], o["amount"]) for o in anchor["bids"] + anchor["asks"]}
        last = int(anchor["sequence"])
        for message in data(messages, "diff-orders"):
            if message["sequence"] <= last:
                continue  # already in the anchor
            assert message["sequence"] == last + 1
            last = message["sequence"]
            for entry in message["payload"]:
                if entry["s"] == "open":
                    book[entry["o"]] = (entry["r"], entry["a"])
                else:
                    book.pop(entry["o"])
        now = exchange.order_book("btc_mxn", aggregate=False, sequence=last)
        assert book == {o["oid"]: (o["price"], o["amount"]) for o in now["bids"] + now["asks"]}
        trades = requests.get(f"{rest.url}/v3/trades/?book=btc_mxn&limit=100").json()["payload"]
        assert [t["tid"] for t in trades] == sorted((t["tid"] for t in trades), reverse=True)


def test_a_dropped_diff_skips_its_sequence(socket: FakeBitsoWs) -> None:
    received, _ = asyncio.run(
        listen(
            socket.url, [("eth_mxn", "diff-orders")], 0.9, lambda: socket.drop_diffs(1, "eth_mxn")
        )
    )
    sequences = [m["sequence"] for m in data(received, "diff-orders")]
    jumps = [(a, b) for a, b in itertools.pairwise(sequences) if b != a + 1]
    assert len(jumps) == 1 and jumps[0][1] == jumps[0][0] + 2
    assert socket.stats.dropped == [("eth_mxn", jumps[0][0] + 1)]


def test_a_cut_ends_the_connection_at_once(socket: FakeBitsoWs) -> None:
    started = time.monotonic()
    received, how = asyncio.run(listen(socket.url, [("btc_mxn", "diff-orders")], 3, socket.cut))
    assert how == "closed"
    assert time.monotonic() - started < 2
    assert data(received, "diff-orders")


def test_a_silent_connection_sends_nothing_but_stays_open(socket: FakeBitsoWs) -> None:
    def go_quiet() -> None:
        socket.silence(5)

    received, how = asyncio.run(listen(socket.url, [("btc_mxn", "diff-orders")], 1.2, go_quiet))
    assert how == "open"
    before = len(received)
    quiet, how = asyncio.run(listen(socket.url, [("btc_mxn", "diff-orders")], 0.6))
    assert how == "open" and before > 0
    assert [m for m in quiet if m.get("type") != "diff-orders" or "book" not in m] == [
        m for m in quiet if m.get("action") == "subscribe"
    ]  # only the ack: no data, no keep-alive
    assert data(quiet, "diff-orders") == []


def test_a_stalled_connection_goes_quiet_while_a_new_one_is_served(socket: FakeBitsoWs) -> None:
    received, how = asyncio.run(listen(socket.url, [("btc_mxn", "diff-orders")], 1.2, socket.stall))
    assert how == "open"  # never closed: the client hears only silence
    diffs = data(received, "diff-orders")
    assert diffs == socket.sent_to(1)
    # Stalled a third of the way in at 100 a second: nothing after it, keep-alives neither (how
    # many came before depends on the CPU; the stall is that the rest never did).
    assert 0 < len(diffs) < 70
    later, _ = asyncio.run(listen(socket.url, [("btc_mxn", "diff-orders")], 0.5))
    assert len(data(later, "diff-orders")) > 20


def test_a_burst_sends_every_message_back_to_back(socket: FakeBitsoWs) -> None:
    socket.set_rate(0)
    received, _ = asyncio.run(
        listen(socket.url, [("btc_mxn", "diff-orders")], 1.0, lambda: socket.burst(500, "btc_mxn"))
    )
    sequences = [m["sequence"] for m in data(received, "diff-orders")]
    assert len(sequences) == 500
    assert sequences == list(range(sequences[0], sequences[0] + 500))


def test_refused_connections_are_answered_503(socket: FakeBitsoWs) -> None:
    socket.refuse(5)

    async def connect() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(socket.url):
                    return 101
            except aiohttp.WSServerHandshakeError as error:
                return error.status

    assert asyncio.run(connect()) == 503
    assert socket.stats.refused == 1


def test_faults_can_be_sent_as_json_to_the_control_port(socket: FakeBitsoWs) -> None:
    assert requests.post(socket.control_url, json={"drop_diffs": 2}, timeout=5).ok
    bad = requests.post(socket.control_url, json={"explode": True}, timeout=5)
    assert bad.status_code == 400 and "explode" in bad.json()["error"]
    received, _ = asyncio.run(listen(socket.url, [("btc_mxn", "diff-orders")], 0.5))
    assert len(socket.stats.dropped) == 2
    stats = requests.get(socket.control_url.replace("_control", "_stats"), timeout=5).json()
    assert stats["connections"] == 1 and stats["acks"] == 1
    assert data(received, "diff-orders")


def test_a_later_run_of_the_process_starts_above_everything_an_earlier_one_sent() -> None:
    """Two `make try` runs add to one archive: the second's sequences and trade ids start above
    the first's, however fast the first changed its market."""
    start_ms = 1_795_515_300_000
    first = rising_exchange(["btc_mxn"], 0, start_ms)
    market = first.markets["btc_mxn"]
    for n in range(int(MAX_RATE) - 1):  # just under the most a second the process makes
        market.step(start_ms + n)
    last_tid = max(trade.tid for trade in market.trade_log)
    later = rising_exchange(["btc_mxn"], 0, start_ms + 1000).markets["btc_mxn"]
    assert later.sequence > market.sequence
    later.step(start_ms + 1000)
    while not later.trade_log:
        later.step(start_ms + 1001)
    assert later.trade_log[0].tid > last_tid
