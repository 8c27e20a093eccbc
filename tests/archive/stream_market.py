"""An order-level market for the stream tests, and the archive a collector would make of it.

Deliberately independent of bitso_format and bitso_archive: object names, time stamps, line
formats, Bitso's message fields and the rules of when the book is known are written out here
from the design contract and Bitso's docs, so the reader is checked against them, not against
itself. Prices are whole cents and amounts whole satoshis (ints), so every sum here is exact
without Decimal.

Timeline of a recorded minute M (one book, R = 12 slots, one every 5 s): the socket's
subscription is acknowledged at M + 150 ms and it closes at M + 58 s; slot 1 (the first after the
acknowledgement) is an anchor, the next free slot a trades backfill, every other slot an
aggregated snapshot (REST takes the book 40 ms after the slot and answers 80 ms after it). A
dropped diff or an outage leaves the book unanchored until the next slot, which is an anchor
again (after an outage, the slot after it backfills trades).
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.archive.helpers import EPOCH, Archive, encode, iso, ms, run_record

BOOK = "btc_mxn"
RPM = 12
SLOT_MS = 60_000 // RPM
ACK_MS = 150
CLOSE_MS = 58_000
REST_TAKES_MS = 40
REST_ANSWERS_MS = 80
T0 = ms("2026-11-20T10:00:00Z")
#: Aggregated REST books hold the best 50 levels a side.
TOP = 50

BUY, SELL = 0, 1


def price_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def amount_text(sats: int) -> str:
    return f"{sats // 10**8}.{sats % 10**8:08d}"


def stream_name(channel: str, book: str, minute_ms: int) -> str:
    moment = EPOCH + timedelta(milliseconds=minute_ms)
    return f"{channel}/{moment:%Y/%m/%d/%H}/{book}_{moment:%Y%m%dT%H%M}Z.ndjson.gz"


def rest_time(ms_: int) -> str:
    """`/v3/trades/` style: 2026-11-20T10:00:58.512+0000."""
    moment = EPOCH + timedelta(milliseconds=ms_)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms_ % 1000:03d}+0000"


Levels = tuple[tuple[str, str, int], ...]  # (price, amount, orders), best first


@dataclass
class Event:
    """One diff-orders message (and the trade it made, if any)."""

    sequence: int
    time_ms: int
    payload: list[dict[str, Any]]
    trade: dict[str, Any] | None


class Market:
    """One book's resting orders, changed one event at a time."""

    def __init__(self, seed: int, book: str = BOOK) -> None:
        self.rng = random.Random(seed)
        self.book = book
        self.orders: dict[str, list[int]] = {}  # oid -> [side, price cents, amount sats]
        self.sequence = 50_000
        self.tid = 900_000
        self.mid = 4_692_000
        self._oids = 0
        for _ in range(120):
            self._new_order()
        self.initial = {oid: list(order) for oid, order in self.orders.items()}
        self.initial_sequence = self.sequence

    def _oid(self) -> str:
        self._oids += 1
        return f"o{self._oids:06d}{self.rng.choice('abcdef')}"

    def _new_order(self) -> tuple[str, list[int]]:
        side = self.rng.choice((BUY, SELL))
        offset = self.rng.randint(1, 90) * 5
        price = self.mid - offset if side == BUY else self.mid + offset
        order = [side, price, self.rng.randint(1, 300) * 1_000_000 + self.rng.randint(0, 999)]
        oid = self._oid()
        self.orders[oid] = order
        return oid, order

    def step(self, time_ms: int) -> Event:
        self.sequence += 1
        roll = self.rng.random()
        trade = None
        if roll < 0.4 or len(self.orders) < 40:
            oid, order = self._new_order()
            payload = [self._diff(oid, order, "open", time_ms)]
        else:
            oid = self.rng.choice(sorted(self.orders))
            order = self.orders[oid]
            if roll < 0.6:
                del self.orders[oid]
                payload = [self._diff(oid, order, "cancelled", time_ms)]
            else:
                filled = order[2] if roll > 0.9 else self.rng.randint(1, order[2])
                trade = self._trade(oid, order, filled, time_ms)
                if filled == order[2]:
                    del self.orders[oid]
                    payload = [self._diff(oid, [*order[:2], 0], "completed", time_ms)]
                else:
                    order[2] -= filled
                    payload = [self._diff(oid, order, "open", time_ms)]
        if self.rng.random() < 0.05:
            self.mid += self.rng.choice((-5, 5))
        return Event(self.sequence, time_ms, payload, trade)

    def _diff(self, oid: str, order: list[int], status: str, time_ms: int) -> dict[str, Any]:
        side, price, amount = order
        entry: dict[str, Any] = {"o": oid, "d": time_ms - 1000, "r": price_text(price), "t": side}
        if status != "cancelled":
            entry["a"] = amount_text(amount)
            entry["v"] = price_text(price * amount // 10**8)
        entry["s"] = status
        if status != "open":
            entry["z"] = time_ms
        return entry

    def _trade(self, oid: str, order: list[int], filled: int, time_ms: int) -> dict[str, Any]:
        self.tid += self.rng.randint(1, 3)
        return {
            "i": self.tid,
            "a": amount_text(filled),
            "r": price_text(order[1]),
            "v": price_text(order[1] * filled // 10**8),
            "mo": oid,
            "to": f"taker{self.tid}",
            "t": 1 - order[0],
            "x": time_ms,
        }


def aggregate(orders: Iterable[list[int]], depth: int | None = None) -> tuple[Levels, Levels]:
    """Orders summed by price: bids best (highest) first, asks best (lowest) first."""
    sums: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
    for side, price, amount in orders:
        level = sums[side].setdefault(price, [0, 0])
        level[0] += amount
        level[1] += 1
    bids = sorted(sums[BUY].items(), reverse=True)[:depth]
    asks = sorted(sums[SELL].items())[:depth]

    def text(levels: list[tuple[int, list[int]]]) -> Levels:
        return tuple((price_text(p), amount_text(a), n) for p, (a, n) in levels)

    return text(bids), text(asks)


@dataclass
class MinutePlan:
    """What happens to the call of one minute."""

    recorded: bool = True
    #: Offsets into the minute: the first diff the socket would deliver after each is lost.
    drops: tuple[int, ...] = ()
    #: (from, to) offsets into the minute: the socket is down, then resubscribed.
    outages: tuple[tuple[int, int], ...] = ()
    #: Slot numbers whose aggregated snapshot is stored with one amount changed (drift).
    planted: tuple[int, ...] = ()


@dataclass(frozen=True)
class Span:
    """The generator's own account of an instant range: known (from an anchor) or not."""

    start_ms: int
    end_ms: int
    reason: str  # "known" or the reader's reason for an unknown instant
    anchor_sequence: int | None = None
    gap: tuple[int, int] | None = None  # (after, next)


@dataclass
class AnchorFact:
    name: str
    sequence: int
    received_ms: int


@dataclass
class SnapshotFact:
    name: str
    sequence: int
    planted: bool


@dataclass
class RecordedMinuteFacts:
    minute_ms: int
    stored: list[tuple[int, int]] = field(default_factory=list)  # (sequence, received)
    anchors: list[AnchorFact] = field(default_factory=list)
    aggregated: list[SnapshotFact] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    uncovered_ms: int = 0
    reconnects: int = 0
    outages: list[tuple[int, int]] = field(default_factory=list)
    backfill_slots: list[int] = field(default_factory=list)


@dataclass
class World:
    """A market, the archive recorded of it, and the facts the tests check the reader with."""

    market: Market
    events: list[Event]
    archive: Archive
    minutes: dict[int, RecordedMinuteFacts]
    trades: dict[int, dict[str, Any]]  # tid -> the trade as the socket would send it
    stored_tids: set[int] = field(default_factory=set)  # streamed or backfilled
    streamed_tids: set[int] = field(default_factory=set)

    def received_sequence(self, at_ms: int, span: Span) -> int:
        """The sequence the book has at ``at_ms`` in a known span: the anchor's, raised by
        every stored diff received by then (Bitso's procedure, on the generator's data)."""
        assert span.anchor_sequence is not None
        facts = self.minutes[at_ms - at_ms % 60_000]
        received = [seq for seq, when in facts.stored if when <= at_ms]
        return max([span.anchor_sequence, *received])

    def levels_at(self, sequences: Iterable[int], depth: int | None = None) -> dict[int, Any]:
        """The market's own aggregated book after each of ``sequences``."""
        wanted = sorted(set(sequences))
        orders = {oid: list(order) for oid, order in self.market.initial.items()}
        found: dict[int, Any] = {}
        events = iter(self.events)
        sequence = self.market.initial_sequence
        for target in wanted:
            while sequence < target:
                event = next(events)
                sequence = event.sequence
                for entry in event.payload:
                    if entry["s"] == "open":
                        price = int(entry["r"].replace(".", ""))
                        amount = int(entry["a"].replace(".", ""))
                        orders[entry["o"]] = [entry["t"], price, amount]
                    else:
                        orders.pop(entry["o"], None)
            found[target] = aggregate(orders.values(), depth)
        return found

    def known_spans(self) -> list[Span]:
        return [s for f in self.minutes.values() for s in f.spans if s.reason == "known"]

    def unknown_spans(self) -> list[Span]:
        return [s for f in self.minutes.values() for s in f.spans if s.reason != "known"]


def _snapshot(
    book: str,
    slot_ms: int,
    sequence: int,
    bids: list[dict[str, str]],
    asks: list[dict[str, str]],
    aggregate_: bool,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "book": book,
        "slot": iso(slot_ms),
        "requested_at": iso(slot_ms + 1),
        "received_at": iso(slot_ms + REST_ANSWERS_MS),
        "latency_ms": float(REST_ANSWERS_MS - 1),
        "sequence": sequence,
        "updated_at": (datetime(2026, 11, 20, tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "aggregate": aggregate_,
        "bids": bids,
        "asks": asks,
    }


def _resting(oid: str, order: list[int]) -> dict[str, str]:
    return {"price": price_text(order[1]), "amount": amount_text(order[2]), "oid": oid}


def _gzip_lines(lines: list[dict[str, Any]]) -> bytes:
    return gzip.compress(b"".join(encode(line) for line in lines), mtime=0)


def build_world(
    plans: list[MinutePlan], seed: int = 7, prefix: str = "", events_per_second: int = 20
) -> World:
    """Simulate ``len(plans)`` minutes from 10:00 and record them as the collector would."""
    market = Market(seed)
    rng = random.Random(seed + 1)
    end_ms = T0 + len(plans) * 60_000
    times: list[int] = []
    at = T0 - 2_000
    while at < end_ms + 2_000:
        at += int(rng.expovariate(events_per_second / 1000)) + 0
        times.append(at)

    # REST takes books at these times; remember what it sees.
    takes: dict[int, tuple[int, dict[str, list[int]]]] = {}
    wanted_takes = sorted(
        T0 + k * 60_000 + j * SLOT_MS + REST_TAKES_MS
        for k, plan in enumerate(plans)
        if plan.recorded
        for j in range(RPM)
    )
    events: list[Event] = []
    pending = iter(wanted_takes)
    take = next(pending, None)
    for when in times:
        while take is not None and take < when:
            takes[take] = (market.sequence, {o: list(v) for o, v in market.orders.items()})
            take = next(pending, None)
        events.append(market.step(when))
    while take is not None:
        takes[take] = (market.sequence, {o: list(v) for o, v in market.orders.items()})
        take = next(pending, None)

    archive = Archive(prefix)
    world = World(market, events, archive, {}, {})
    held_tid = 0  # the last trade the "collector" holds (streamed or backfilled)
    stored_tids = world.stored_tids
    for event in events:
        if event.trade is not None:
            world.trades[event.trade["i"]] = event.trade
    for k, plan in enumerate(plans):
        minute = T0 + k * 60_000
        if not plan.recorded:
            continue
        facts = RecordedMinuteFacts(minute)
        world.minutes[minute] = facts
        held_before = held_tid
        outages = [(minute + a, minute + b) for a, b in plan.outages]
        up_from, up_to = minute + ACK_MS, minute + CLOSE_MS

        def live(
            when: int,
            up_from: int = up_from,
            up_to: int = up_to,
            outages: list[tuple[int, int]] = outages,
        ) -> bool:
            return up_from <= when < up_to and not any(a <= when < b for a, b in outages)

        drops = sorted(minute + d for d in plan.drops)
        diff_lines: list[dict[str, Any]] = []
        trade_lines: list[dict[str, Any]] = []
        unanchored_at: list[int] = []  # when the collector learns it must re-anchor
        last_received = 0
        for event in events:
            latency = rng.choice((2, 5, 5, 9, 60))
            arrival = event.time_ms + latency
            if not live(arrival):
                continue
            if drops and arrival >= drops[0]:
                drops.pop(0)
                continue  # Bitso never sent it: a dropped diff
            received = max(last_received, arrival)
            last_received = received
            if facts.stored and event.sequence != facts.stored[-1][0] + 1:
                facts.gaps.append((facts.stored[-1][0], event.sequence))
                unanchored_at.append(received)
            facts.stored.append((event.sequence, received))
            message = {
                "type": "diff-orders",
                "book": BOOK,
                "sequence": event.sequence,
                "payload": event.payload,
            }
            diff_lines.append({"received_at": iso(received), "message": message})
            if event.trade is not None:
                trade = {
                    "type": "trades",
                    "book": BOOK,
                    "payload": [event.trade],
                    "sent": event.time_ms,
                }
                trade_lines.append({"received_at": iso(received), "message": trade})
                stored_tids.add(event.trade["i"])
                world.streamed_tids.add(event.trade["i"])
                held_tid = max(held_tid, event.trade["i"])
        for _a, b in outages:
            unanchored_at.append(b)
        facts.reconnects = len(outages)
        facts.uncovered_ms = ACK_MS + sum(b - a for a, b in outages)

        # The slots: anchors, backfills, aggregated snapshots.
        uses: dict[int, str] = {1: "anchor", 2: "trades_backfill"}
        for when in sorted(unanchored_at):
            if any(u == "anchor" and minute + j * SLOT_MS > when for j, u in uses.items()):
                continue  # an anchor is already on its way
            j = next(j for j in range(RPM) if minute + j * SLOT_MS > when and j not in uses)
            uses[j] = "anchor"
        for _a, b in outages:
            j = next(j for j in range(RPM) if minute + j * SLOT_MS > b and j not in uses)
            uses[j] = "trades_backfill"
        for j in range(RPM):
            slot = minute + j * SLOT_MS
            use = uses.get(j, "snapshot")
            if use == "trades_backfill":
                missed = [
                    t
                    for tid, t in sorted(world.trades.items())
                    if tid not in stored_tids
                    and t["x"] < slot + REST_TAKES_MS
                    and (tid > held_before if held_before else t["x"] >= minute - 1000)
                ]
                if k == 1 and j == 2:  # one streamed trade fetched again: readers drop it
                    missed.append(world.trades[min(world.streamed_tids)])
                for t in missed:
                    rest = {
                        "book": BOOK,
                        "created_at": rest_time(t["x"]),
                        "amount": t["a"],
                        "maker_side": "buy" if t["t"] == 1 else "sell",
                        "price": t["r"],
                        "tid": t["i"],
                    }
                    trade_lines.append(
                        {
                            "received_at": iso(slot + REST_ANSWERS_MS),
                            "source": "rest",
                            "trade": rest,
                        }
                    )
                    stored_tids.add(t["i"])
                    held_tid = max(held_tid, t["i"])
                continue
            sequence, orders = takes[slot + REST_TAKES_MS]
            if use == "anchor":
                by_price = sorted(orders.items(), key=lambda item: item[1][1])
                bids = [_resting(oid, o) for oid, o in reversed(by_price) if o[0] == BUY]
                asks = [_resting(oid, o) for oid, o in by_price if o[0] == SELL]
                snap = _snapshot(BOOK, slot, sequence, bids, asks, False)
                name = archive.add_snapshot(snap)
                facts.anchors.append(AnchorFact(name, sequence, slot + REST_ANSWERS_MS))
                continue
            top_bids, top_asks = aggregate(orders.values(), TOP)
            bids = [{"price": p, "amount": a} for p, a, _n in top_bids]
            asks = [{"price": p, "amount": a} for p, a, _n in top_asks]
            planted = j in plan.planted
            if planted:
                bids[0]["amount"] = amount_text(int(bids[0]["amount"].replace(".", "")) + 1)
            name = archive.add_snapshot(_snapshot(BOOK, slot, sequence, bids, asks, True))
            facts.aggregated.append(SnapshotFact(name, sequence, planted))

        archive.add_raw(stream_name("diff-orders", BOOK, minute), _gzip_lines(diff_lines))
        archive.add_raw(stream_name("trades", BOOK, minute), _gzip_lines(trade_lines))
        record = run_record(minute, [BOOK], RPM)
        backfilled = sum(1 for line in trade_lines if "trade" in line)
        record["streams"] = {
            "channels": ["trades", "diff-orders"],
            "connections": 1 + len(outages),
            "failed_connects": 0,
            "keepalives": 12,
            "ignored": 0,
            "disconnects": [{"at": iso(a), "reason": "closed"} for a, _b in outages],
            "unacknowledged": [],
            "books": {
                BOOK: {
                    "diff-orders": {
                        "messages": len(diff_lines),
                        "first_sequence": facts.stored[0][0] if facts.stored else None,
                        "last_sequence": facts.stored[-1][0] if facts.stored else None,
                        "sequence_gaps": [{"after": a, "next": n} for a, n in facts.gaps],
                        "reconnects": facts.reconnects,
                        "uncovered_ms": facts.uncovered_ms,
                        "backfilled": 0,
                        "object": stream_name("diff-orders", BOOK, minute),
                    },
                    "trades": {
                        "messages": len(trade_lines) - backfilled,
                        "first_sequence": None,
                        "last_sequence": None,
                        "sequence_gaps": [],
                        "reconnects": facts.reconnects,
                        "uncovered_ms": facts.uncovered_ms,
                        "backfilled": backfilled,
                        "object": stream_name("trades", BOOK, minute),
                    },
                }
            },
            "lost": [],
        }
        record["slot_uses"] = [
            {"book": BOOK, "slot": iso(minute + j * SLOT_MS), "use": use}
            for j, use in sorted(uses.items())
        ]
        facts.outages = outages
        facts.backfill_slots = [
            minute + j * SLOT_MS for j, u in uses.items() if u == "trades_backfill"
        ]
        archive.add_run(record)
        facts.spans = _spans(facts)
    return world


def chain_end(facts: RecordedMinuteFacts, anchor: AnchorFact) -> int:
    """The last sequence the anchor reaches through the minute's stored diffs, no hole."""
    received = {sequence for sequence, _when in facts.stored}
    last = anchor.sequence
    while last + 1 in received:
        last += 1
    return last


def _spans(facts: RecordedMinuteFacts) -> list[Span]:
    """When the book of the minute is known, from the generator's own knowledge: from each
    anchor's receipt to the receipt of the last stored diff that continues its sequence
    without a hole (a missing sequence with a stored one after it is a gap) and that came
    before the socket was next lost (an outage), whichever comes first."""
    start, end = facts.minute_ms, facts.minute_ms + 60_000
    anchors = sorted(facts.anchors, key=lambda a: a.received_ms)
    received = dict(facts.stored)
    highest = max(received, default=0)
    spans = [Span(start, anchors[0].received_ms, "before_first_anchor")]
    for index, anchor in enumerate(anchors):
        window_end = anchors[index + 1].received_ms if index + 1 < len(anchors) else end
        last_seq = chain_end(facts, anchor)
        gap = None
        if last_seq + 1 < highest:
            gap = (last_seq, min(s for s in received if s > last_seq + 1))
        lost_at = [a for a, _b in facts.outages if anchor.received_ms <= a < window_end]
        outage = lost_at[0] if lost_at and (gap is None or received[gap[1]] > lost_at[0]) else None
        if outage is not None:
            last_seq = max(
                [q for q in range(anchor.sequence + 1, last_seq + 1) if received[q] <= outage],
                default=anchor.sequence,
            )
        last = received[last_seq] if last_seq > anchor.sequence else anchor.received_ms
        known_end = min(max(last, anchor.received_ms), window_end)
        if known_end > anchor.received_ms:
            spans.append(Span(anchor.received_ms, known_end, "known", anchor.sequence))
        if known_end < window_end:
            if outage is not None:
                spans.append(Span(known_end, window_end, "outage"))
            elif gap is not None:
                spans.append(Span(known_end, window_end, "sequence_gap", gap=gap))
            else:
                spans.append(Span(known_end, window_end, "after_last_diff"))
    return spans
