"""The pure parts of streams: messages, subscription bookkeeping, sequence checks, coverage,
slot uses, backfill selection, the gzipped objects and the run record's part."""

from __future__ import annotations

import gzip
import io
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bitso_collector.call_summary import CallSummary, SlotUseNote, slot_uses_phrase
from bitso_collector.clock import Clock, ShiftedClock
from bitso_collector.config import ConfigError, load_settings
from bitso_collector.errors import MalformedReply, UnknownBook
from bitso_collector.rest_trades import (
    PAGE_LIMIT,
    RestTrade,
    TradesWindow,
    parse_trades_reply,
    trades_path,
)
from bitso_collector.sinks.local import LocalSink
from bitso_collector.slot_policy import SlotUse
from bitso_collector.streams.backfill import LOOKBACK_MS, NEW_CHAIN_LOOKBACK_MS, choose
from bitso_collector.streams.objects import StreamObject
from bitso_collector.streams.planner import SlotPlanner
from bitso_collector.streams.protocol import Kind, classify, subscribe_text
from bitso_collector.streams.session import StreamSession
from bitso_collector.streams.state import StreamState, encode_line
from bitso_collector.streams.subscriptions import Subscriptions
from bitso_collector.streams.tally import ChannelTally, SequenceGap, Unwatched
from bitso_collector.streams.writer import NamedObject, ObjectResult
from bitso_format import SLOT_USES, parse_iso_millis
from bitso_logs import JsonLogger
from tests.support.schemas import RUN_RECORD

CHANNELS = ("trades", "diff-orders")
MINUTE_MS = 1_795_515_300_000
#: Anchor again every 15 minutes.
EVERY_MS = 15 * 60_000


# -- protocol ---------------------------------------------------------------------------------
def test_messages_are_told_apart_by_shape_not_guessed() -> None:
    ack = classify('{"action":"subscribe","response":"ok","time":1,"type":"trades"}', CHANNELS)
    assert (ack.kind, ack.channel, ack.book) == (Kind.ACK, "trades", None)
    refused = classify('{"action":"subscribe","response":"bad","type":"trades"}', CHANNELS)
    assert refused.kind is Kind.REJECTED
    assert classify('{"type":"ka"}', CHANNELS).kind is Kind.KEEPALIVE
    diff = classify(
        '{"type":"diff-orders","book":"btc_mxn","sequence":7,"payload":[],"sent":1}', CHANNELS
    )
    assert (diff.kind, diff.book, diff.sequence) == (Kind.DATA, "btc_mxn", 7)
    trades = classify('{"type":"trades","book":"eth_mxn","payload":[{"i":5},{"i":6}]}', CHANNELS)
    assert (trades.kind, trades.trade_ids) == (Kind.DATA, (5, 6))
    for text in ["not json", "[1]", '{"type":"orders","book":"btc_mxn"}', '{"type":"trades"}']:
        assert classify(text, CHANNELS).kind is Kind.OTHER, text
    only_trades = classify('{"type":"diff-orders","book":"b_c","sequence":1}', ("trades",))
    assert only_trades.kind is Kind.OTHER
    assert json.loads(subscribe_text("btc_mxn", "trades")) == {
        "action": "subscribe",
        "book": "btc_mxn",
        "type": "trades",
    }


# -- subscriptions ----------------------------------------------------------------------------
def test_one_subscribe_per_channel_is_outstanding_and_acks_match_in_order() -> None:
    subs = Subscriptions(["a_b", "c_d"], CHANNELS, ack_timeout=2.0)
    assert subs.to_send(0.0) == [("a_b", "trades"), ("a_b", "diff-orders")]
    assert subs.to_send(0.1) == []  # both channels wait for their ack
    assert subs.ack("diff-orders", 0.2) == "a_b"
    assert subs.to_send(0.2) == [("c_d", "diff-orders")]
    assert subs.ack("trades", 0.3) == "a_b"
    assert subs.ack("trades", 0.35) is None  # a stray ack belongs to nothing
    assert subs.to_send(0.3) == [("c_d", "trades")]
    assert subs.ack("trades", 0.4) == "c_d"
    assert subs.ack("diff-orders", 0.5) == "c_d"
    assert subs.settled
    assert subs.acknowledged == {
        ("a_b", "diff-orders"): 0.2,
        ("a_b", "trades"): 0.3,
        ("c_d", "diff-orders"): 0.5,
        ("c_d", "trades"): 0.4,
    }


def test_a_book_never_answered_is_given_up_on_without_taking_the_next_books_ack() -> None:
    subs = Subscriptions(["nope_mxn", "btc_mxn"], ("trades",), ack_timeout=2.0)
    assert subs.to_send(10.0) == [("nope_mxn", "trades")]
    assert subs.next_expiry() == 12.0
    assert subs.expire(11.9) == []
    assert subs.expire(12.0) == [("nope_mxn", "trades")]
    assert subs.to_send(12.0) == [("btc_mxn", "trades")]
    assert subs.ack("trades", 12.1) == "btc_mxn"
    assert subs.unanswered == [("nope_mxn", "trades")]
    assert subs.settled and subs.next_expiry() is None
    again = Subscriptions(["nope_mxn", "btc_mxn"], ("trades",), 2.0, answer_last=subs.unanswered)
    assert again.to_send(0.0) == [("btc_mxn", "trades")]  # the unanswered book waits its turn


def test_a_refused_subscribe_frees_its_channel() -> None:
    subs = Subscriptions(["a_b", "c_d"], ("trades",), ack_timeout=2.0)
    subs.to_send(0.0)
    assert subs.reject("trades") == "a_b"
    assert subs.rejected == [("a_b", "trades")]
    assert subs.to_send(0.1) == [("c_d", "trades")]


# -- sequences and coverage -------------------------------------------------------------------
def test_every_diff_that_does_not_follow_by_one_is_a_gap_across_cuts() -> None:
    tally = ChannelTally()
    tally.went_live(0.0)
    gaps = [tally.received(float(n), seq) for n, seq in enumerate((5, 6, 8, 9, 9, 4, 5))]
    assert gaps == [None, None, SequenceGap(6, 8), None, SequenceGap(9, 9), SequenceGap(9, 4), None]
    first = tally.cut(10.0, [])
    assert (first.first_sequence, first.last_sequence, len(first.sequence_gaps)) == (5, 5, 3)
    assert first.covers == (0.0, 10.0) and not first.continuous  # the chain's first cut
    assert tally.received(11.0, 7) == SequenceGap(5, 7)  # the gap at the boundary is seen
    second = tally.cut(20.0, [])
    assert second.covers == (10.0, 20.0) and not second.continuous  # broke at the boundary
    tally.received(21.0, 8)
    third = tally.cut(30.0, [])
    assert third.continuous and third.sequence_gaps == ()


def test_outages_and_freezes_are_the_unwatched_spans_of_a_cut() -> None:
    tally = ChannelTally()
    tally.went_live(1.0)
    tally.went_down(5.0)
    tally.went_live(7.0)
    tally.went_down(50.0)
    cut = tally.cut(60.0, [(20.0, 22.5)])
    assert cut.covers == (1.0, 60.0)
    assert cut.unwatched == (
        Unwatched(5.0, 7.0, "outage"),
        Unwatched(20.0, 22.5, "frozen"),
        Unwatched(50.0, 60.0, "outage"),
    )
    assert cut.uncovered_ms == 12_000  # outages only; a freeze is not a lost subscription
    assert cut.reconnects == 1
    tally.went_live(61.0)  # still down at the cut: the next cut's outage starts at the cut
    later = tally.cut(120.0, [])
    assert later.unwatched == (Unwatched(60.0, 61.0, "outage"),) and not later.continuous


def test_the_instances_own_close_ends_the_watch_and_is_no_outage() -> None:
    """Stopping, the instance closes the socket, then cuts: the cut covers up to the close, and
    the moment between them is no lost subscription."""
    tally = ChannelTally()
    tally.went_live(1.0)
    tally.went_down(59.2, closed=True)
    cut = tally.cut(59.3, [(58.0, 59.3)])
    assert cut.covers == (1.0, 59.2)
    assert cut.unwatched == (Unwatched(58.0, 59.2, "frozen"),)
    assert cut.uncovered_ms == 0
    assert tally.cut(60.0, []).covers is None  # nothing watched since the close


# -- slot uses --------------------------------------------------------------------------------
def test_slot_uses_are_the_format_modules() -> None:
    assert tuple(str(use) for use in SlotUse) == SLOT_USES


def test_anchor_on_the_first_slot_after_the_ack_then_backfill_then_snapshots() -> None:
    planner = SlotPlanner(["btc_mxn"], CHANNELS, EVERY_MS)
    now = MINUTE_MS
    assert planner.use_for("btc_mxn", now).use is SlotUse.SNAPSHOT  # nothing acknowledged yet
    planner.live("btc_mxn", "diff-orders", now)
    planner.live("btc_mxn", "trades", now)
    anchor = planner.use_for("btc_mxn", now)
    assert anchor.use is SlotUse.ANCHOR
    backfill = planner.use_for("btc_mxn", now)  # the anchor's reply is not in yet: the next slot
    assert backfill.use is SlotUse.TRADES_BACKFILL
    assert backfill.window == TradesWindow(now - NEW_CHAIN_LOOKBACK_MS)
    planner.anchored(anchor, stored=True, at_ms=now + 500)
    planner.backfilled(backfill, choose([], backfill.window, set()))
    assert planner.unanchored() == [] and planner.owing() == []
    # An unbroken chain spends no slot until its anchor is ANCHOR_EVERY_MINUTES old.
    for minute in range(1, 15):
        assert planner.use_for("btc_mxn", now + 500 + minute * 60_000).use is SlotUse.SNAPSHOT
    assert planner.use_for("btc_mxn", now + 500 + EVERY_MS).use is SlotUse.ANCHOR


def test_a_gap_re_anchors_on_the_books_next_slot_and_a_stale_anchor_does_not_count() -> None:
    planner = SlotPlanner(["btc_mxn", "eth_mxn"], ("diff-orders",), EVERY_MS)
    now = MINUTE_MS
    planner.live("btc_mxn", "diff-orders", now)
    first = planner.use_for("btc_mxn", now)
    planner.anchored(first, stored=True, at_ms=now)
    planner.gap("btc_mxn")
    assert planner.unanchored() == ["btc_mxn", "eth_mxn"]
    second = planner.use_for("btc_mxn", now)
    assert second.use is SlotUse.ANCHOR
    planner.gap("btc_mxn")  # while the anchor was in flight
    planner.anchored(second, stored=True, at_ms=now)
    assert "btc_mxn" in planner.unanchored()
    third = planner.use_for("btc_mxn", now)
    planner.anchored(third, stored=False, at_ms=now)  # the request failed: owed again
    fourth = planner.use_for("btc_mxn", now)
    assert fourth.use is SlotUse.ANCHOR
    planner.anchored(fourth, stored=True, at_ms=now)
    assert planner.unanchored() == ["eth_mxn"]  # never acknowledged, never anchored
    assert planner.use_for("zzz_mxn", now).use is SlotUse.SNAPSHOT  # a book it does not follow


def test_a_lost_connection_re_anchors_and_backfills_since_the_last_trade_held() -> None:
    planner = SlotPlanner(["btc_mxn"], CHANNELS, EVERY_MS)
    now = MINUTE_MS
    planner.live("btc_mxn", "diff-orders", now)
    planner.live("btc_mxn", "trades", now)
    planner.anchored(planner.use_for("btc_mxn", now), stored=True, at_ms=now)
    backfill = planner.use_for("btc_mxn", now)
    planner.backfilled(backfill, choose([], TradesWindow(0), set()))
    assert all(planner.streamed("btc_mxn", (tid,)) for tid in (10, 11, 12))
    planner.forget_held()
    assert planner.held_tids("btc_mxn") == {12}  # bounded: only the newest is still needed
    planner.down("btc_mxn", "diff-orders", now + 5000)
    planner.down("btc_mxn", "trades", now + 5000)
    assert planner.use_for("btc_mxn", now).use is SlotUse.SNAPSHOT  # not subscribed again yet
    planner.live("btc_mxn", "trades", now + 6000)
    planner.live("btc_mxn", "diff-orders", now + 6000)
    assert planner.use_for("btc_mxn", now + 6000).use is SlotUse.ANCHOR
    after = planner.use_for("btc_mxn", now + 6000)
    assert after.use is SlotUse.TRADES_BACKFILL
    assert after.window == TradesWindow(now + 5000 - LOOKBACK_MS, 12)


def page(tids: list[int], start_ms: int) -> list[RestTrade]:
    """A newest-first page: tid t made at start_ms + 10 * t."""
    return [
        RestTrade(t, start_ms + 10 * t, {"tid": t, "created_at": "?", "price": "1", "amount": "1"})
        for t in tids
    ]


def test_a_full_page_asks_for_the_next_and_an_outage_restarts_from_the_newest() -> None:
    planner = SlotPlanner(["btc_mxn"], ("trades",), EVERY_MS)
    planner.live("btc_mxn", "trades", MINUTE_MS)
    first = planner.use_for("btc_mxn", MINUTE_MS)
    full = page(list(range(1000, 1000 - PAGE_LIMIT, -1)), MINUTE_MS)
    planner.backfilled(first, choose(full, first.window or TradesWindow(0), set()))
    second = planner.use_for("btc_mxn", MINUTE_MS)
    assert second.use is SlotUse.TRADES_BACKFILL and second.marker == 901
    planner.down("btc_mxn", "trades", MINUTE_MS + 1000)
    planner.backfilled(second, choose(page([900], MINUTE_MS), TradesWindow(0), set()))
    planner.live("btc_mxn", "trades", MINUTE_MS + 2000)
    third = planner.use_for("btc_mxn", MINUTE_MS + 2000)
    assert third.use is SlotUse.TRADES_BACKFILL and third.marker is None  # from the newest
    assert third.window == TradesWindow(MINUTE_MS - NEW_CHAIN_LOOKBACK_MS)  # the wider one
    planner.backfilled(third, None)  # failed: still owed
    assert planner.owing() == ["btc_mxn"]


# -- backfill selection -----------------------------------------------------------------------
def test_the_backfill_takes_the_window_minus_what_is_held() -> None:
    since = MINUTE_MS - LOOKBACK_MS
    trades = page([110, 109, 108, 107, 106], since - 1075)  # 108 is made at exactly `since`
    chosen = choose(trades, TradesWindow(since), held={109})
    assert [t.tid for t in chosen.chosen] == [110, 108]
    assert chosen.next_marker is None  # 107 is older than the window: done
    after = choose(trades, TradesWindow(since, after_tid=106), held=set())
    assert [t.tid for t in after.chosen] == [110, 109, 108, 107]
    full = page(list(range(500, 500 - PAGE_LIMIT, -1)), since)
    assert choose(full, TradesWindow(since), set()).next_marker == 401
    assert choose(full[:-1], TradesWindow(since), set()).next_marker is None


def test_trades_replies_are_parsed_strictly() -> None:
    body = {
        "success": True,
        "payload": [
            {
                "book": "btc_mxn",
                "created_at": "2026-11-24T10:14:59.500+00:00",
                "amount": "0.02000000",
                "maker_side": "buy",
                "price": "5545.01",
                "tid": 55845,
            }
        ],
    }
    [trade] = parse_trades_reply(200, json.dumps(body).encode())
    assert trade.tid == 55845
    assert trade.created_ms == parse_iso_millis("2026-11-24T10:14:59.500Z")
    assert trade.entry == body["payload"][0]  # stored exactly as REST gave it
    for key, bad in [("tid", "55845"), ("price", 5545.01), ("created_at", "yesterday")]:
        broken: dict[str, Any] = {**body["payload"][0], key: bad}
        with pytest.raises(MalformedReply, match=key):
            parse_trades_reply(200, json.dumps({"success": True, "payload": [broken]}).encode())
    unknown = {"success": False, "error": {"code": "0301", "message": "Unknown order book"}}
    with pytest.raises(UnknownBook):
        parse_trades_reply(400, json.dumps(unknown).encode())
    with pytest.raises(MalformedReply, match="list"):
        parse_trades_reply(200, b'{"success": true, "payload": {}}')
    assert trades_path("btc_mxn") == "/v3/trades/?book=btc_mxn&sort=desc&limit=100"
    assert trades_path("btc_mxn", 7).endswith("&limit=100&marker=7")


# -- objects and the record's part ------------------------------------------------------------
def test_an_object_is_gzipped_ndjson_in_the_order_added() -> None:
    stored = StreamObject()
    lines = [{"received_at": f"2026-11-24T10:15:0{n}.000Z", "message": {"n": n}} for n in range(5)]
    for line in lines:
        stored.add_encoded(encode_line(line))
    data = stored.finish()
    assert stored.finish() == data
    text = gzip.decompress(data).decode()
    assert text.endswith("\n") and [json.loads(x) for x in text.splitlines()] == lines
    assert stored.lines == 5 and stored.raw_bytes == len(text.encode())
    assert stored.add_encoded(encode_line(lines[0])) is False  # too late: the object is finished
    assert stored.finish() == data and stored.lines == 5


def offline_session(prefix: str, clock: Clock) -> StreamSession:
    """A session never opened: its naming and its record part, with no socket and no writes."""
    return StreamSession(
        "ws://127.0.0.1:9/",
        ("btc_mxn",),
        CHANNELS,
        EVERY_MS,
        LocalSink(Path("never-written")),
        prefix,
        clock,
        JsonLogger(io.StringIO()),
        instance="0a1b2c3d",
    )


def test_the_state_turns_messages_into_lines_counts_and_the_record_part() -> None:
    start = MINUTE_MS / 1000
    clock = ShiftedClock(start - time.time())
    state = StreamState(["btc_mxn"], CHANNELS, EVERY_MS, clock)
    state.connected()
    state.acknowledged("btc_mxn", "diff-orders", start + 0.2)
    state.acknowledged("btc_mxn", "trades", start + 0.3)
    for n, at in [(10, 1.0), (11, 2.0), (13, 3.0)]:
        text = json.dumps({"type": "diff-orders", "book": "btc_mxn", "sequence": n, "payload": []})
        state.received(classify(text, CHANNELS), start + at)
    state.received(classify('{"type":"ka"}', CHANNELS), start + 3.5)
    state.received(
        classify('{"type":"trades","book":"btc_mxn","payload":[{"i":4}]}', CHANNELS), start + 4
    )
    state.lost(start + 10.0, "silent")
    state.connected()
    state.acknowledged("btc_mxn", "diff-orders", start + 10.5)
    state.frozen(start + 30.0, start + 31.5)
    # A message received in the next hour goes to an object of that hour.
    late = json.dumps({"type": "diff-orders", "book": "btc_mxn", "sequence": 14, "payload": []})
    state.received(classify(late, CHANNELS), start + 3600.0)
    cut = state.cut(start + 3600.5)
    assert sorted(cut.objects) == [
        ("btc_mxn", "diff-orders", MINUTE_MS - MINUTE_MS % 3_600_000),
        ("btc_mxn", "diff-orders", MINUTE_MS - MINUTE_MS % 3_600_000 + 3_600_000),
        ("btc_mxn", "trades", MINUTE_MS - MINUTE_MS % 3_600_000),
    ]
    diffs = cut.channels[("btc_mxn", "diff-orders")]
    assert (diffs.messages, diffs.first_sequence, diffs.last_sequence) == (4, 10, 14)
    assert diffs.sequence_gaps == (SequenceGap(11, 13),)
    assert (diffs.reconnects, diffs.uncovered_ms) == (1, 500)
    assert diffs.covers == (start + 0.2, start + 3600.5)
    assert [u.reason for u in diffs.unwatched] == ["outage", "frozen"]
    trades = cut.channels[("btc_mxn", "trades")]
    assert (trades.messages, trades.reconnects) == (1, 0)
    assert trades.unwatched[0] == Unwatched(start + 10.0, start + 3600.5, "outage")
    session = offline_session("", clock)
    named = {(n.book, n.channel): n for n in session._named(cut, MINUTE_MS, None)}
    results = {
        named[("btc_mxn", "diff-orders")]: ObjectResult("d/x.ndjson.gz", stored=True),
        named[("btc_mxn", "trades")]: ObjectResult("t/x.ndjson.gz", stored=False, reason="503"),
    }
    summary = session.summarise(cut, results)
    assert [(x.book, x.channel, x.object) for x in summary.lost] == [
        ("btc_mxn", "trades", "t/x.ndjson.gz")
    ]
    assert (summary.connections, summary.keepalives, summary.gaps, summary.reconnects) == (
        2,
        1,
        1,
        1,
    )
    body = summary.to_json()
    jsonschema.validate(body, RUN_RECORD["$defs"]["streams"] | {"$defs": RUN_RECORD["$defs"]})
    assert body["instance"] == "0a1b2c3d"
    assert body["disconnects"] == [{"at": "2026-11-24T10:15:10.000Z", "reason": "silent"}]
    channel = body["books"]["btc_mxn"]["diff-orders"]
    assert channel["sequence_gaps"] == [{"after": 11, "next": 13}]
    assert channel["objects"] == [named[("btc_mxn", "diff-orders")].name]
    assert not channel["continuous"]
    assert channel["covers"] == {
        "from": "2026-11-24T10:15:00.200Z",
        "to": "2026-11-24T11:15:00.500Z",
    }
    hour = MINUTE_MS - MINUTE_MS % 3_600_000
    data = cut.objects[("btc_mxn", "diff-orders", hour)].finish()
    lines = gzip.decompress(data).splitlines()
    assert [json.loads(x)["message"]["sequence"] for x in lines] == [10, 11, 13]
    assert json.loads(lines[0])["received_at"] == "2026-11-24T10:15:01.000Z"
    assert state.cut(start + 3601).objects == {}  # every line handed over exactly once


def test_a_trade_backfilled_before_the_socket_delivered_it_is_stored_once() -> None:
    """A trade made just before a backfill's page was served can reach the socket after the
    page: the socket's copy is counted as `repeated`, not stored again, across a cut too."""
    start = MINUTE_MS / 1000
    clock = ShiftedClock(start - time.time())
    state = StreamState(["btc_mxn"], ("trades",), EVERY_MS, clock)
    state.acknowledged("btc_mxn", "trades", start)

    def trade(tid: int) -> Any:
        text = {"type": "trades", "book": "btc_mxn", "payload": [{"i": tid}]}
        return classify(json.dumps(text), ("trades",))

    def stored(cut: Any) -> list[tuple[str, int]]:
        lines = [
            json.loads(x)
            for o in cut.objects.values()
            for x in gzip.decompress(o.finish()).splitlines()
        ]
        return [
            ("rest", x["trade"]["tid"])
            if "trade" in x
            else ("stream", x["message"]["payload"][0]["i"])
            for x in lines
        ]

    backfill = state.use_for("btc_mxn")
    assert backfill.use is SlotUse.TRADES_BACKFILL
    state.received(trade(20), start + 1.0)
    state.backfilled(backfill, page([22, 21, 20, 19], MINUTE_MS - 1000), start + 1.5)
    state.received(trade(21), start + 1.6)
    first = state.cut(start + 2.0)
    state.received(trade(22), start + 2.1)  # after the cut: still known as backfilled
    state.received(trade(23), start + 2.2)
    second = state.cut(start + 3.0)
    assert stored(first) == [("stream", 20), ("rest", 22), ("rest", 21), ("rest", 19)]
    assert stored(second) == [("stream", 23)]
    assert first.channels[("btc_mxn", "trades")].repeated == 1
    assert second.channels[("btc_mxn", "trades")].repeated == 1
    assert second.channels[("btc_mxn", "trades")].messages == 1
    assert state.use_for("btc_mxn").use is SlotUse.SNAPSHOT  # the window was covered
    state.cut(start + 4.0)
    assert state._planner.held_tids("btc_mxn") == {23}  # the socket passed the backfill


def test_a_line_and_a_cut_that_race_still_fall_on_the_right_side_of_cut_at() -> None:
    """Times are read before the state's lock is taken. A message read just after the cut's
    time but taken in first is in that cut, which then ends at its time; one read just before
    a cut that took the lock first is in the next cut, stamped at that cut: a cut holds exactly
    what was received after the previous cut and up to its own `cut_at`."""
    start = MINUTE_MS / 1000
    state = StreamState(["btc_mxn"], CHANNELS, EVERY_MS, ShiftedClock(0.0))
    state.acknowledged("btc_mxn", "diff-orders", start)

    def diff(sequence: int) -> Any:
        text = {"type": "diff-orders", "book": "btc_mxn", "sequence": sequence, "payload": []}
        return classify(json.dumps(text), CHANNELS)

    def received(cut: Any) -> list[float]:
        [stream] = cut.objects.values()
        lines = gzip.decompress(stream.finish()).splitlines()
        return [parse_iso_millis(json.loads(line)["received_at"]) / 1000 for line in lines]

    state.received(diff(1), start + 1.0)
    state.received(diff(2), start + 59.020)
    first = state.cut(start + 59.019)
    state.received(diff(3), start + 59.010)
    state.received(diff(4), start + 70.0)
    second = state.cut(start + 119.0)

    assert first.at == start + 59.020
    assert received(first) == [start + 1.0, start + 59.020]
    assert received(second) == [start + 59.020, start + 70.0]
    first_covers = first.channels[("btc_mxn", "diff-orders")].covers
    second_covers = second.channels[("btc_mxn", "diff-orders")].covers
    assert first_covers is not None and second_covers is not None
    assert first_covers[1] == second_covers[0] == first.at
    assert second.channels[("btc_mxn", "diff-orders")].continuous


def test_cut_objects_are_named_by_the_calls_minute_or_the_shutdown_under_the_receipt_hour() -> None:
    clock = ShiftedClock(0.0)
    session = offline_session("p", clock)
    state = session.state
    hour = MINUTE_MS - MINUTE_MS % 3_600_000
    text = json.dumps({"type": "diff-orders", "book": "btc_mxn", "sequence": 1, "payload": []})
    state.acknowledged("btc_mxn", "diff-orders", hour / 1000 - 1)
    state.received(classify(text, CHANNELS), hour / 1000 - 0.5)  # the hour before
    cut = state.cut(hour / 1000 + 1)
    [call] = session._named(cut, hour, None)
    assert call.name == "p/diff-orders/2026/11/24/09/btc_mxn_20261124T1000Z.ndjson.gz"
    state.received(classify(text, CHANNELS), hour / 1000 + 2)
    [flush] = session._named(state.cut(hour / 1000 + 3), hour + 3000, "0a1b2c3d")
    assert (
        flush.name == "p/diff-orders/2026/11/24/10/btc_mxn_20261124T100003.000Z-0a1b2c3d.ndjson.gz"
    )
    assert isinstance(flush, NamedObject)


# -- settings ---------------------------------------------------------------------------------
def test_streams_settings_are_checked_and_named() -> None:
    settings = load_settings({"STREAMS": " diff-orders,TRADES "}, dotenv=None)
    assert settings.streams == ("trades", "diff-orders")
    assert settings.ws_url == "wss://ws.bitso.com"
    assert settings.anchor_every_minutes == 10
    assert load_settings({"ANCHOR_EVERY_MINUTES": "5"}, dotenv=None).anchor_every_minutes == 5
    for bad in ("0", "1441", "ten", "1.5"):
        with pytest.raises(ConfigError, match=r"ANCHOR_EVERY_MINUTES.*1 to 1440"):
            load_settings({"ANCHOR_EVERY_MINUTES": bad}, dotenv=None)
    assert load_settings({}, dotenv=None).streams == ()
    local = load_settings({"BITSO_WS_URL": "ws://127.0.0.1:8765/"}, dotenv=None)
    assert local.ws_url == "ws://127.0.0.1:8765/"
    for env, words in [
        ({"STREAMS": "orders"}, ["STREAMS", "'orders'", "trades, diff-orders"]),
        ({"STREAMS": "trades,trades"}, ["STREAMS", "more than once"]),
        ({"BITSO_WS_URL": "https://ws.bitso.com"}, ["BITSO_WS_URL", "ws:// or wss://"]),
        ({"BITSO_WS_URL": ""}, ["BITSO_WS_URL"]),
        ({"BITSO_WS_URL": "ws://127.0.0.1:99999/"}, ["BITSO_WS_URL", "port"]),
        ({"BITSO_WS_URL": "wss://me:s3cret@ws.bitso.com"}, ["BITSO_WS_URL", "credentials", "***"]),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_settings(env, dotenv=None)
        assert all(word in str(caught.value) for word in words), caught.value
        assert "s3cret" not in str(caught.value)


# -- the summary line -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uses", "phrase"),
    [
        ((), ""),
        ((SlotUse.SNAPSHOT,), ""),
        ((SlotUse.TRADES_BACKFILL,) * 2, " (2 slots were trades backfills)"),
        ((SlotUse.ANCHOR,), " (1 slot was an anchor)"),
        (
            (SlotUse.ANCHOR, SlotUse.TRADES_BACKFILL, SlotUse.ANCHOR),
            " (2 slots were anchors, 1 a trades backfill)",
        ),
        ((SlotUse.TRADES_BACKFILL, SlotUse.ANCHOR), " (1 slot was an anchor, 1 a trades backfill)"),
    ],
)
def test_the_summary_line_says_where_the_slots_that_were_not_snapshots_went(
    uses: tuple[SlotUse, ...], phrase: str
) -> None:
    notes = tuple(
        SlotUseNote("btc_mxn", f"2026-11-24T10:16:0{n}.000Z", u) for n, u in enumerate(uses)
    )
    assert slot_uses_phrase(CallSummary(slot_uses=notes)) == phrase
