"""End to end with streams on: the real functions-framework server as a process, the fake Bitso
REST server and the fake socket in this process, both driven by one order-level market per book
(so what the socket sends and what REST serves agree)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bitso_format import (
    floor_hour,
    parse_iso_millis,
    parse_rfc3339,
    seconds_to_ms,
    stream_name,
)
from bitso_testkit.fake_bitso import TRADES_PATH, FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import Exchange
from tests.conftest import FunctionServer, StartFunction
from tests.support.schemas import SNAPSHOT, STREAM_LINE

pytestmark = pytest.mark.e2e
BOOKS = ("btc_mxn", "eth_mxn")
CHANNELS = ("trades", "diff-orders")
RPM = 59
TRANSIT_JITTER_S = 0.05


class Fakes:
    def __init__(self, exchange: Exchange, rest: FakeBitso, socket: FakeBitsoWs) -> None:
        self.exchange = exchange
        self.rest = rest
        self.socket = socket

    def settings(self, **extra: str) -> dict[str, str]:
        return {
            "BITSO_BOOKS": ",".join(BOOKS),
            "BITSO_API_URL": self.rest.url,
            "BITSO_WS_URL": self.socket.url,
            "STREAMS": ",".join(CHANNELS),
            **extra,
        }

    def follow(self, server: FunctionServer) -> None:
        """Stamp the socket's messages with the server's (shifted) clock, as Bitso's clock and
        ours agree."""
        assert server.clock is not None
        shift = server.clock.now() - time.time()
        self.socket.clock = lambda: time.time() + shift


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    exchange = Exchange(BOOKS, seed=11, start_ms=int(time.time() * 1000))
    with FakeBitso(exchange=exchange) as rest, FakeBitsoWs(exchange, rate=20) as socket:
        yield Fakes(exchange, rest, socket)


def lines(data_dir: Path, channel: str, book: str, minute: float) -> list[dict[str, Any]]:
    """The lines of the cut the call of `minute` stored (its receipts' hours, in order)."""
    minute_ms = seconds_to_ms(minute)
    found = []
    for hour_ms in (floor_hour(minute_ms) - 3_600_000, floor_hour(minute_ms)):
        path = data_dir / stream_name("", channel, book, hour_ms, minute_ms)
        if path.exists():
            found += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    return found


@pytest.mark.slow
def test_a_short_call_records_both_channels_and_anchors_each_book(
    start_function: StartFunction, fakes: Fakes
) -> None:
    server = start_function(fakes.settings())
    minute = server.new_minute(-0.2)
    fakes.follow(server)

    reply = server.call({"duration_seconds": 6}, minute_start=minute)

    assert reply.status_code == 200, reply.text
    record = reply.json()
    assert record["status"] == "ok"
    streams = record["streams"]
    assert streams["channels"] == list(CHANNELS) and streams["connections"] == 1
    assert streams["unacknowledged"] == [] and streams["lost"] == []
    uses = [(u["book"], u["use"]) for u in record["slot_uses"]]
    for book in BOOKS:  # the first slot of each book anchors it, the next backfills trades
        assert [use for b, use in uses if b == book] == ["anchor", "trades_backfill"]
        for channel in CHANNELS:
            entry = streams["books"][book][channel]
            minute_ms = seconds_to_ms(minute)
            name = stream_name("", channel, book, floor_hour(minute_ms), minute_ms)
            assert entry["objects"] == [name]
            stored = lines(server.data_dir, channel, book, minute)
            for line in stored:
                jsonschema.validate(line, STREAM_LINE)
            streamed = [line["message"] for line in stored if "message" in line]
            sent = [
                m for m in fakes.socket.sent_to(1) if m["book"] == book and m["type"] == channel
            ]
            # Everything sent before the call's cut is stored, in order; what came after it is
            # the next cut's (here: the shutdown's, when the test stops the server).
            cut_ms = parse_iso_millis(streams["cut_at"])
            assert streamed == sent[: len(streamed)]
            assert all(m["sent"] > cut_ms - 100 for m in sent[len(streamed) :])
            assert entry["messages"] == len(streamed) > 0
    anchors = [u for u in record["slot_uses"] if u["use"] == "anchor"]
    for anchor in anchors:
        stamp = anchor["slot"].replace("-", "").replace(":", "")
        [path] = server.data_dir.glob(f"2*/**/{anchor['book']}_{stamp}.json")
        snapshot = json.loads(path.read_text())
        jsonschema.validate(snapshot, SNAPSHOT)
        assert snapshot["aggregate"] is False and all("oid" in o for o in snapshot["bids"])
    # a backfill slot stores trades, not a snapshot, and is no failure
    assert record["written"] == record["slots_planned"] - 2 and record["failed"] == {}
    summary = [line for line in server.log_lines() if line.get("event") == "run_summary"][-1]
    assert summary["stream_messages"] == sum(
        c["messages"] for b in streams["books"].values() for c in b.values()
    )
    assert summary["stream_gaps"] == 0 and summary["stream_reconnects"] == 0


def burst_trades(fakes: Fakes, changes: int) -> list[int]:
    """Make `changes` changes at once; the ids of the trades among them."""
    before = {book: len(m.trade_log) for book, m in fakes.exchange.markets.items()}
    fakes.socket.burst(changes)
    with fakes.exchange.lock:
        return [
            trade.tid
            for book, market in fakes.exchange.markets.items()
            for trade in market.trade_log[before[book] :]
        ]


def rest_starts(rest: FakeBitso) -> list[float]:
    return sorted(entry.at for entry in rest.requests)


def most_in_any_window(starts: list[float], window: float = 60.0) -> int:
    most, recent = 0, deque[float]()
    for at in starts:
        recent.append(at)
        while recent[0] <= at - window:
            recent.popleft()
        most = max(most, len(recent))
    return most


@pytest.mark.slow
@pytest.mark.timeout(260)
def test_two_minutes_with_a_dropped_diff_and_a_cut_keep_every_diff_and_every_trade(
    start_function: StartFunction, fakes: Fakes
) -> None:
    server = start_function(fakes.settings())
    first = server.new_minute(-0.3)
    fakes.follow(server)
    second = first + 60
    now = fakes.socket.clock
    replies: dict[float, Any] = {}

    def call(minute: float) -> None:
        replies[minute] = server.call(minute_start=minute, timeout=80)

    call(first)
    # Changes made between the calls: the instance's socket stays open, so they are streamed
    # (no backfill, no new anchor).
    between = burst_trades(fakes, 60)
    faults = threading.Thread(target=call, args=(second,))
    faults.start()
    while now() < second + 20:
        time.sleep(0.05)
    fakes.socket.drop_diffs(1, "btc_mxn")
    while now() < second + 35:
        time.sleep(0.05)
    fakes.socket.refuse(1.0)  # the outage lasts a second ...
    fakes.socket.cut()
    outage = burst_trades(fakes, 60)  # ... and trades are made while nobody listens
    faults.join()

    records = {}
    for minute in (first, second):
        reply = replies[minute]
        assert reply.status_code == 200, reply.text
        records[minute] = reply.json()
        record = records[minute]
        assert record["status"] == "ok", {
            key: record.get(key)
            for key in ("minute", "failed", "failures", "slots_missed_late", "lost", "slot_uses")
        } | {"unacknowledged": record["streams"]["unacknowledged"]}
    one, two = records[first]["streams"], records[second]["streams"]

    # the gap and the reconnect are in the second minute's record
    [(dropped_book, dropped)] = fakes.socket.stats.dropped
    assert dropped_book == "btc_mxn"
    gaps = two["books"]["btc_mxn"]["diff-orders"]["sequence_gaps"]
    assert {"after": dropped - 1, "next": dropped + 1} in gaps
    assert one["disconnects"] == [] and len(two["disconnects"]) == 1
    assert one["connections"] == 1 and two["connections"] == 1  # the one reopened after the cut
    assert two["failed_connects"] >= 1
    for book in BOOKS:
        for channel in CHANNELS:
            assert one["books"][book][channel]["reconnects"] == 0
            assert two["books"][book][channel]["reconnects"] == 1
            assert 900 <= two["books"][book][channel]["uncovered_ms"] <= 3000
            # the second cut runs on from the first (the outage inside it is named apart)
            assert (
                two["books"][book][channel]["covers"]["from"]
                == (one["books"][book][channel]["covers"]["to"])
            )
            reasons = {u["reason"] for u in two["books"][book][channel]["unwatched"]}
            assert "outage" in reasons

    # Every diff the socket delivered before the second cut is stored once, in order, across
    # both cuts: connection 1 until the cut socket, connection 2 after it.
    cut_at = parse_iso_millis(two["disconnects"][0]["at"])
    second_cut = parse_iso_millis(two["cut_at"])
    for book in BOOKS:
        stored = [
            line["message"]
            for minute in (first, second)
            for line in lines(server.data_dir, "diff-orders", book, minute)
        ]
        sequences = [m["sequence"] for m in stored]
        assert len(sequences) == len(set(sequences)) and sequences == sorted(sequences)
        for connection, until in ((1, cut_at), (2, second_cut)):
            sent = [
                m
                for m in fakes.socket.sent_to(connection)
                if m["book"] == book and m["type"] == "diff-orders" and m["sent"] < until - 100
            ]
            assert sent and all(m in stored for m in sent)
        assert len(stored) > 500

    # the re-anchors: btc_mxn's next slot after the gap, and every book's next after the cut
    diffs = lines(server.data_dir, "diff-orders", "btc_mxn", second)
    gap_seen = next(
        parse_iso_millis(line["received_at"])
        for line in diffs
        if line["message"]["sequence"] == dropped + 1
    )
    btc_slots = [
        u for u in records[second]["slot_uses"] if u["book"] == "btc_mxn" and u["use"] == "anchor"
    ]
    after_gap = [u for u in btc_slots if parse_iso_millis(u["slot"]) > gap_seen]
    assert after_gap and parse_iso_millis(after_gap[0]["slot"]) - gap_seen < 2 * 60_000 / RPM + 50
    for book in BOOKS:
        later = [
            u["use"]
            for u in records[second]["slot_uses"]
            if u["book"] == book and parse_iso_millis(u["slot"]) > cut_at
        ]
        assert later[:2] == ["anchor", "trades_backfill"]
    check_the_last_anchor_rebuilds_the_book(server, fakes.exchange, second)

    # every trade of the two minutes is stored, the holes filled from REST
    held: dict[int, str] = {}
    for minute in (first, second):
        for book in BOOKS:
            for line in lines(server.data_dir, "trades", book, minute):
                jsonschema.validate(line, STREAM_LINE)
                if "trade" in line:
                    held.setdefault(line["trade"]["tid"], "rest")
                else:
                    for trade in line["message"]["payload"]:
                        held[trade["i"]] = "socket"
    # Trades made after the second cut belong to the next cut (here: the shutdown's).
    last_cut = parse_iso_millis(two["cut_at"])
    made = [
        trade
        for market in fakes.exchange.markets.values()
        for trade in market.trade_log
        if seconds_to_ms(first) - 1000 <= trade.created_ms < last_cut - 100
    ]
    assert len(made) > 500
    missing = [t.tid for t in made if t.tid not in held]
    assert missing == []
    assert outage and all(held[tid] == "rest" for tid in outage)
    assert between and all(held[tid] == "socket" for tid in between)  # continuous: streamed
    assert two["books"]["btc_mxn"]["trades"]["backfilled"] > 0

    # no REST start beyond the budget, anchors and backfills included: any 60 s hold at most
    # 59 starts (seen by the fake, so up to TRANSIT_JITTER_S of a request's way there may make
    # slot k of one minute and slot k of the next look a little less than 60 s apart)
    starts = rest_starts(fakes.rest)
    assert most_in_any_window(starts, 60.0 - TRANSIT_JITTER_S) <= RPM
    assert len(starts) == sum(r["requests_sent"] for r in records.values())
    assert not [e for e in fakes.rest.requests if e.status == 420]
    assert any(e.path == TRADES_PATH for e in fakes.rest.requests)
    summary = [line for line in server.log_lines() if line.get("event") == "run_summary"][-1]
    assert summary["stream_gaps"] >= 1 and summary["stream_reconnects"] == 1
    assert summary["backfilled_trades"] == sum(
        two["books"][b]["trades"]["backfilled"] for b in BOOKS
    )


def check_the_last_anchor_rebuilds_the_book(
    server: FunctionServer, exchange: Exchange, minute: float
) -> None:
    """The book rebuilt from a minute's last anchor and the diffs stored after it is the
    market's book at the last stored sequence, order for order."""
    for book in BOOKS:
        anchors = sorted(
            server.data_dir.glob(f"2*/**/{book}_*.json"),
            key=lambda p: p.name,
        )
        snapshots = [json.loads(p.read_text()) for p in anchors]
        in_minute = [
            s
            for s in snapshots
            if not s["aggregate"]
            and parse_rfc3339(s["slot"]) // 60_000 == seconds_to_ms(minute) // 60_000
        ]
        anchor = in_minute[-1]
        orders = {o["oid"]: (o["price"], o["amount"]) for o in anchor["bids"] + anchor["asks"]}
        last = anchor["sequence"]
        for line in lines(server.data_dir, "diff-orders", book, minute):
            message = line["message"]
            if message["sequence"] <= anchor["sequence"]:
                continue
            assert message["sequence"] == last + 1  # no gap after the last anchor
            last = message["sequence"]
            for entry in message["payload"]:
                if entry["s"] == "open":
                    orders[entry["o"]] = (entry["r"], entry["a"])
                else:
                    orders.pop(entry["o"])
        truth = exchange.order_book(book, aggregate=False, sequence=last)
        assert orders == {
            o["oid"]: (o["price"], o["amount"]) for o in truth["bids"] + truth["asks"]
        }
