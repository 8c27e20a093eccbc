"""An order-level market for the stream tests, and the archive collectors would make of it.

Deliberately independent of bitso_format and bitso_archive: object names, time stamps, line
formats, Bitso's message fields and the rules of when the book is known are written out here
from the design contract and Bitso's docs, so the reader is checked against them, not against
itself. Prices are whole cents and amounts whole satoshis (ints), so every sum here is exact
without Decimal.

The stream is continuous: an instance holds the socket across calls and cuts it at the end of
each call it serves (M + 58.5 s), storing every message received since its previous cut, one
object per hour of receipt, named by the call's minute (a shutdown flush: by its instant and
instance). Between calls an instance may be frozen: what it receives then is stamped when it
runs again. The scenario (:data:`SCENARIO`, 10:54 to 11:13) has five instances: A (an outage,
a freeze with a burst of late receipts, a dropped diff, a cut across 11:00, frozen until its
SIGTERM flush while B takes over: a rollout); B (its flush overlaps C's first minute, both
unfrozen: the same diffs stored twice); C (killed: no flush, a hole); D (a new instance after
the crash, then a SIGTERM flush); E (a new instance after a gap: instance_start). Anchors come
when a chain starts or breaks and every :data:`ANCHOR_EVERY_MS`; trades are backfilled after a
break. REST takes a book 40 ms after its slot and answers 80 ms after it.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.archive.helpers import EPOCH, Archive, encode, iso, ms, run_record

BOOK = "btc_mxn"
RPM = 12
SLOT_MS = 60_000 // RPM
#: A call starts (and its instance runs again) this long after its minute; it cuts the stream
#: this long after its minute.
CALL_START_MS = 100
CUT_MS = 58_500
REST_TAKES_MS = 40
REST_ANSWERS_MS = 80
ANCHOR_EVERY_MS = 3 * 60_000
#: The reader's documented rules, written out: a chain takes diffs received since this long
#: before its anchor's slot ...
ANCHOR_LOOKBACK_MS = 60_000
#: ... and messages a frozen instance stamps this soon after it runs again may have come in
#: while it was frozen.
FROZEN_BURST_MS = 500
T0 = ms("2026-11-20T10:54:00Z")
T_END = ms("2026-11-20T11:13:00Z")
#: Aggregated REST books hold the best 50 levels a side.
TOP = 50
#: A REST trades page.
TRADES_PAGE = 100

BUY, SELL = 0, 1


def price_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def amount_text(sats: int) -> str:
    return f"{sats // 10**8}.{sats % 10**8:08d}"


def _stamp(ms_: int, seconds: bool) -> str:
    moment = EPOCH + timedelta(milliseconds=ms_)
    if seconds:
        return f"{moment:%Y%m%dT%H%M%S}.{ms_ % 1000:03d}Z"
    return f"{moment:%Y%m%dT%H%M}Z"


def stream_name(channel: str, book: str, hour_ms: int, cut: str) -> str:
    """`<channel>/YYYY/MM/DD/HH/<book>_<cut>.ndjson.gz`: the folder is the hour of receipt."""
    moment = EPOCH + timedelta(milliseconds=hour_ms)
    return f"{channel}/{moment:%Y/%m/%d/%H}/{book}_{cut}.ndjson.gz"


def shutdown_name(at_ms: int, instance: str) -> str:
    moment = EPOCH + timedelta(milliseconds=at_ms)
    return f"_runs/{moment:%Y/%m/%d/%H}/{_stamp(at_ms, True)}-{instance}.shutdown.json"


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
class Instance:
    """One instance's life: the calls it serves and what happens to its socket."""

    id: str
    started_ms: int
    ack_ms: int
    calls: list[int]  # the minutes it serves
    shutdown_ms: int | None = None  # SIGTERM: it flushes what it holds then
    crash_ms: int | None = None  # SIGKILL: what it holds is lost
    latency_ms: int = 5
    frozen: list[tuple[int, int]] = field(default_factory=list)
    outages: list[tuple[int, int]] = field(default_factory=list)
    drops: list[int] = field(default_factory=list)  # the first diff arriving after each is lost


def _m(text: str) -> int:
    return ms(f"2026-11-20T{text}Z")


SCENARIO = [
    Instance(
        "a1b2c3d4",
        _m("10:53:59.900"),
        _m("10:54:00.150"),
        [_m(f"{h}:00") for h in ("10:54", "10:55", "10:56", "10:58", "10:59", "11:00", "11:01")],
        shutdown_ms=_m("11:02:20.000"),
        outages=[(_m("10:55:30.000"), _m("10:55:31.500"))],
        frozen=[
            (_m("10:56:58.600"), _m("10:58:00.100")),
            (_m("11:01:58.600"), _m("11:02:20.000")),
        ],
        drops=[_m("10:59:20.000")],
    ),
    Instance(
        "b5e6f708",
        _m("11:01:59.950"),
        _m("11:02:00.200"),
        [_m(f"11:0{k}:00") for k in (2, 3, 4)],
        shutdown_ms=_m("11:05:40.000"),
        latency_ms=9,
    ),
    Instance(
        "c9d0e1f2",
        _m("11:04:59.950"),
        _m("11:05:00.200"),
        [_m("11:05:00"), _m("11:06:00")],
        crash_ms=_m("11:07:10.000"),
        latency_ms=3,
    ),
    Instance(
        "d3e4f5a6",
        _m("11:07:59.950"),
        _m("11:08:00.200"),
        [_m("11:08:00"), _m("11:09:00")],
        shutdown_ms=_m("11:09:59.000"),
    ),
    Instance(
        "e7f8a9b0",
        _m("11:10:59.950"),
        _m("11:11:00.200"),
        [_m("11:11:00"), _m("11:12:00")],
    ),
]


@dataclass
class Received:
    """One message as an instance stored it."""

    sequence: int
    stamp_ms: int
    event: Event


@dataclass
class Cut:
    """What one cut of one instance stored: the messages received since its previous cut."""

    instance: Instance
    at_ms: int
    minute_ms: int | None  # the call's minute; None for a shutdown flush
    covers: tuple[int, int]
    received: list[Received]
    backfilled: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (received, trade)
    slot_uses: list[tuple[int, str]] = field(default_factory=list)

    @property
    def name_stamp(self) -> str:
        if self.minute_ms is not None:
            return _stamp(self.minute_ms, False)
        return f"{_stamp(self.at_ms, True)}-{self.instance.id}"

    def unwatched(self) -> list[tuple[int, int, str]]:
        spans = [(a, b, "outage") for a, b in self.instance.outages]
        spans += [(a, b, "frozen") for a, b in self.instance.frozen]
        start, end = self.covers
        return sorted(
            (max(a, start), min(b, end), why) for a, b, why in spans if a < end and b > start
        )


@dataclass
class AnchorFact:
    name: str
    sequence: int
    slot_ms: int
    received_ms: int


@dataclass
class World:
    """A market, the archive its collectors recorded of it, and the facts the tests check the
    reader with."""

    market: Market
    events: list[Event]
    archive: Archive
    cuts: list[Cut]
    anchors: list[AnchorFact]
    aggregated: list[tuple[str, int, bool]]  # (snapshot, sequence, planted drift)
    trades: dict[int, dict[str, Any]]  # tid -> the trade as the socket would send it
    stored: dict[str, dict[int, int]]  # instance -> sequence -> stamp
    #: Every (sequence, effective receipt) stored by some instance, merged.
    merged: dict[int, int] = field(default_factory=dict)
    kept_from: dict[int, str] = field(default_factory=dict)
    streamed_tids: set[int] = field(default_factory=set)
    backfilled_tids: set[int] = field(default_factory=set)

    # -- the market's truth ---------------------------------------------------------------
    def sequence_at(self, at_ms: int) -> int:
        """The market's sequence at ``at_ms``: its last event made at or before it."""
        times = [e.time_ms for e in self.events]
        index = bisect.bisect_right(times, at_ms)
        return self.events[index - 1].sequence if index else self.market.initial_sequence

    def quiet(self, at_ms: int, before_ms: int = 60) -> bool:
        """No event made in ``(at_ms - before_ms, at_ms]``: every one made by then was
        received by then, by every instance, and none after it was."""
        return all(not at_ms - before_ms < e.time_ms <= at_ms for e in self.events)

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

    # -- when the book can be known, by the contract ----------------------------------------
    def watched_reason(self, at_ms: int) -> str | None:
        """None when some cut watched ``at_ms``; else why not (from the cuts alone)."""
        covering = [c for c in self.cuts if c.covers[0] <= at_ms < c.covers[1]]
        reasons = [why for c in covering for a, b, why in c.unwatched() if a <= at_ms < b]
        if len(reasons) < len(covering):
            return None
        if reasons:
            return "frozen" if "frozen" in reasons else reasons[0]
        before = [c for c in self.cuts if c.covers[1] <= at_ms]
        after = [c for c in self.cuts if c.covers[0] > at_ms]
        if not before:
            return "not_recorded"
        prev = max(before, key=lambda c: (c.covers[1], c.minute_ms is None))
        if prev.minute_ms is None:
            return "instance_start"
        if any(c.instance is prev.instance and c.at_ms > prev.at_ms for c in self.cuts):
            return "not_recorded"
        return "crash" if after else "not_recorded"

    def burst_holes(self) -> list[tuple[int, int]]:
        """[freeze start, effective receipt) of every kept diff a frozen instance stamped
        within FROZEN_BURST_MS of running again: it may have come in any time since."""
        holes: dict[tuple[str, int], int] = {}
        for sequence, effective in self.merged.items():
            instance = next(i for i in SCENARIO if i.id == self.kept_from[sequence])
            stamp = self.stored[instance.id][sequence]
            for start, end in instance.frozen:
                if end <= stamp < end + FROZEN_BURST_MS and effective > start:
                    key = (instance.id, start)
                    holes[key] = max(holes.get(key, start), effective)
        return [(start, end) for (_i, start), end in holes.items()]

    def hole_reason(self, at_ms: int) -> str | None:
        reason = self.watched_reason(at_ms)
        if reason is None and any(a <= at_ms < b for a, b in self.burst_holes()):
            return "frozen"
        return reason

    def chain_end(self, anchor: AnchorFact) -> int | None:
        """Where the anchor's chain ends: the receipt of the last diff before its first
        missing sequence (None: it runs on)."""
        since = anchor.slot_ms - ANCHOR_LOOKBACK_MS
        present = {q: r for q, r in self.merged.items() if r >= since}
        expected, last = anchor.sequence + 1, anchor.received_ms
        highest = max(present, default=0)
        while expected <= highest:
            if expected in present:
                last = max(last, present[expected])
                expected += 1
                continue
            return last
        return None

    def truth_at(self, at_ms: int) -> tuple[str, int | None]:
        """("known", the sequence the book has) or (the reason it is unknown, None)."""
        reason = self.hole_reason(at_ms)
        if reason is not None:
            return reason, None
        received = [a for a in self.anchors if a.received_ms <= at_ms]
        if not received:
            return "before_first_anchor", None
        anchor = max(received, key=lambda a: a.received_ms)
        end = self.chain_end(anchor)
        if end is not None and at_ms >= end:
            return "sequence_gap", None
        since = anchor.slot_ms - ANCHOR_LOOKBACK_MS
        applied = [q for q, r in self.merged.items() if q > anchor.sequence and since <= r <= at_ms]
        return "known", max([anchor.sequence, *applied])

    def spans(self, start_ms: int, end_ms: int) -> list[tuple[int, int, str]]:
        """``[start_ms, end_ms)`` as (from, to, "known" or the reason), adjacent ones of one
        reason merged: the truth only changes at these boundaries."""
        bounds = {start_ms, end_ms}
        for cut in self.cuts:
            bounds.update(cut.covers)
            bounds.update(x for a, b, _w in cut.unwatched() for x in (a, b))
        bounds.update(x for hole in self.burst_holes() for x in hole)
        for anchor in self.anchors:
            bounds.add(anchor.received_ms)
            end = self.chain_end(anchor)
            if end is not None:
                bounds.add(end)
        points = sorted(b for b in bounds if start_ms <= b <= end_ms)
        spans: list[tuple[int, int, str]] = []
        for a, b in itertools.pairwise(points):
            reason = self.truth_at(a)[0]
            if spans and spans[-1][1] == a and spans[-1][2] == reason:
                spans[-1] = (spans[-1][0], b, reason)
            else:
                spans.append((a, b, reason))
        return spans


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


def _receive(instance: Instance, events: list[Event], rng: random.Random) -> list[Received]:
    """What the instance's socket delivered and the stamps it put on them."""
    end = instance.shutdown_ms or instance.crash_ms or T_END + 10_000
    drops = sorted(instance.drops)
    got: list[Received] = []
    last = 0
    for event in events:
        arrival = event.time_ms + instance.latency_ms + rng.choice((0, 1, 2, 4))
        if not instance.ack_ms <= arrival < end:
            continue
        if any(a <= arrival < b for a, b in instance.outages):
            continue
        if drops and arrival >= drops[0]:
            drops.pop(0)
            continue  # Bitso never sent it on this connection: a dropped diff
        stamp = next((b for a, b in instance.frozen if a <= arrival < b), arrival)
        last = max(last, stamp)
        got.append(Received(event.sequence, last, event))
    return got


def _cuts(instance: Instance, received: list[Received]) -> list[Cut]:
    times = [(m + CUT_MS, m) for m in instance.calls]
    if instance.shutdown_ms is not None:
        times.append((instance.shutdown_ms, None))
    cuts: list[Cut] = []
    previous = instance.ack_ms
    for at_ms, minute_ms in sorted(times):
        lowest = previous - 1 if not cuts else previous  # the first cut: from the ack
        held = [r for r in received if lowest < r.stamp_ms <= at_ms]
        cuts.append(Cut(instance, at_ms, minute_ms, (previous, at_ms), held))
        previous = at_ms
    return cuts


def _trade_lines(cut: Cut) -> list[dict[str, Any]]:
    lines: list[tuple[int, int, dict[str, Any]]] = []
    for order, got in enumerate(cut.received):
        if got.event.trade is not None:
            message = {
                "type": "trades",
                "book": BOOK,
                "payload": [got.event.trade],
                "sent": got.event.time_ms,
            }
            lines.append(
                (got.stamp_ms, order, {"received_at": iso(got.stamp_ms), "message": message})
            )
    for order, (received, trade) in enumerate(cut.backfilled, start=len(cut.received)):
        line = {"received_at": iso(received), "source": "rest", "trade": trade}
        lines.append((received, order, line))
    return [line for _at, _order, line in sorted(lines, key=lambda x: (x[0], x[1]))]


def _diff_lines(cut: Cut) -> list[dict[str, Any]]:
    return [
        {
            "received_at": iso(got.stamp_ms),
            "message": {
                "type": "diff-orders",
                "book": BOOK,
                "sequence": got.sequence,
                "payload": got.event.payload,
                "sent": got.event.time_ms,
            },
        }
        for got in cut.received
    ]


def _store(archive: Archive, cut: Cut, channel: str, lines: list[dict[str, Any]]) -> list[str]:
    """One object per hour of receipt, named by the cut."""
    by_hour: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        at = ms(line["received_at"])
        by_hour.setdefault(at - at % 3_600_000, []).append(line)
    return [
        archive.add_raw(stream_name(channel, BOOK, hour, cut.name_stamp), _gzip_lines(held))
        for hour, held in sorted(by_hour.items())
    ]


def _channel_part(
    cut: Cut, previous: Cut | None, channel: str, objects: list[str]
) -> dict[str, Any]:
    start, end = cut.covers
    outages = [(a, b) for a, b in cut.instance.outages if start < b <= end]
    diffs = channel == "diff-orders"
    sequences = [r.sequence for r in cut.received]
    before = [r.sequence for r in previous.received] if previous else []
    chain = before[-1:] + sequences
    gaps = [(a, b) for a, b in itertools.pairwise(chain) if b != a + 1]
    stamps = (
        [r.stamp_ms for r in cut.received]
        if diffs
        else sorted(
            [r.stamp_ms for r in cut.received if r.event.trade] + [at for at, _t in cut.backfilled]
        )
    )
    follows = not sequences or not before or sequences[0] == before[-1] + 1
    return {
        "messages": len(sequences) if diffs else sum(1 for r in cut.received if r.event.trade),
        "first_sequence": sequences[0] if diffs and sequences else None,
        "last_sequence": sequences[-1] if diffs and sequences else None,
        "sequence_gaps": [{"after": a, "next": b} for a, b in gaps] if diffs else [],
        "reconnects": len(outages),
        "uncovered_ms": sum(
            min(b, end) - max(a, start) for a, b in cut.instance.outages if a < end and b > start
        ),
        "backfilled": 0 if diffs else len(cut.backfilled),
        "objects": objects,
        "covers": {"from": iso(start), "to": iso(end)},
        "first_received": iso(stamps[0]) if stamps else None,
        "last_received": iso(stamps[-1]) if stamps else None,
        "continuous": previous is not None and not outages and (follows or not diffs),
        "unwatched": [
            {"from": iso(a), "to": iso(b), "reason": why} for a, b, why in cut.unwatched()
        ],
    }


def _streams_part(cut: Cut, previous: Cut | None, objects: dict[str, list[str]]) -> dict[str, Any]:
    start, end = cut.covers
    instance = cut.instance
    return {
        "instance": instance.id,
        "instance_started_at": iso(instance.started_ms),
        "cut_at": iso(cut.at_ms),
        "frozen": [
            {"from": iso(a), "to": iso(b)} for a, b, why in cut.unwatched() if why == "frozen"
        ],
        "channels": ["trades", "diff-orders"],
        "connections": (0 if previous else 1)
        + sum(1 for _a, b in instance.outages if start < b <= end),
        "failed_connects": 0,
        "keepalives": 12,
        "ignored": 0,
        "disconnects": [
            {"at": iso(a), "reason": "closed"} for a, _b in instance.outages if start <= a < end
        ],
        "unacknowledged": [],
        "books": {
            BOOK: {
                channel: _channel_part(cut, previous, channel, objects[channel])
                for channel in ("trades", "diff-orders")
            }
        },
        "lost": [],
    }


def _slot_uses(instance: Instance, received: list[Received]) -> dict[int, str]:
    """What each slot of the instance's calls fetched: an anchor when its chain starts or
    breaks (the first subscription, a sequence gap it saw, a reconnect) and every
    ANCHOR_EVERY_MS; a trades backfill after a break; else an aggregated snapshot."""
    needs = [instance.ack_ms] + [b for _a, b in instance.outages]
    needs += [
        now.stamp_ms
        for was, now in itertools.pairwise(received)
        if now.sequence != was.sequence + 1
    ]
    breaks = [instance.ack_ms] + [b for _a, b in instance.outages]
    uses: dict[int, str] = {}
    last_anchor: int | None = None
    backfill_due = False
    for minute in instance.calls:
        for j in range(RPM):
            slot = minute + j * SLOT_MS
            due = any(n < slot and (last_anchor is None or n > last_anchor) for n in needs)
            if due or (last_anchor is not None and slot >= last_anchor + ANCHOR_EVERY_MS):
                uses[slot] = "anchor"
                backfill_due = backfill_due or any(
                    n < slot and (last_anchor is None or n > last_anchor) for n in breaks
                )
                last_anchor = slot
            elif backfill_due:
                uses[slot] = "trades_backfill"
                backfill_due = False
            else:
                uses[slot] = "snapshot"
    return uses


def build_world(seed: int = 7, prefix: str = "", events_per_second: float = 6.0) -> World:
    """Simulate the market from 10:54 to 11:13 and record it as SCENARIO's instances would."""
    market = Market(seed)
    rng = random.Random(seed + 1)
    times: list[int] = []
    at = T0 - 2_000
    while at < T_END + 2_000:
        at += int(rng.expovariate(events_per_second / 1000)) + 1
        times.append(at)
    slots = [m + j * SLOT_MS for m in range(T0, T_END, 60_000) for j in range(RPM)]
    takes: dict[int, tuple[int, dict[str, list[int]]]] = {}
    events: list[Event] = []
    pending = iter(sorted(s + REST_TAKES_MS for s in slots))
    take = next(pending, None)
    for when in times:
        while take is not None and take < when:
            takes[take] = (market.sequence, {o: list(v) for o, v in market.orders.items()})
            take = next(pending, None)
        events.append(market.step(when))

    archive = Archive(prefix)
    world = World(market, events, archive, [], [], [], {}, {})
    for event in events:
        if event.trade is not None:
            world.trades[event.trade["i"]] = event.trade
    by_instance: dict[str, list[Cut]] = {}
    uses_of: dict[str, dict[int, str]] = {}
    for number, instance in enumerate(SCENARIO):
        received = _receive(instance, events, random.Random(seed * 100 + number))
        by_instance[instance.id] = _cuts(instance, received)
        world.stored[instance.id] = {
            r.sequence: r.stamp_ms for c in by_instance[instance.id] for r in c.received
        }
        uses_of[instance.id] = _slot_uses(instance, received)
        world.cuts += by_instance[instance.id]
    for instance_id, stored in world.stored.items():
        for sequence, stamp in stored.items():
            if sequence not in world.merged or stamp < world.merged[sequence]:
                world.merged[sequence] = stamp
                world.kept_from[sequence] = instance_id
    lowest = None  # receipts merged: the earliest of a sequence or any later one
    for sequence in sorted(world.merged, reverse=True):
        lowest = world.merged[sequence] if lowest is None else min(lowest, world.merged[sequence])
        world.merged[sequence] = lowest

    planted = T0 + 9 * 60_000 + 5 * SLOT_MS  # 11:03:25, served by B: one amount off by 1 sat
    for instance in SCENARIO:
        cuts = by_instance[instance.id]
        for slot, use in sorted(uses_of[instance.id].items()):
            cut = next(c for c in cuts if c.minute_ms == slot - slot % 60_000)
            cut.slot_uses.append((slot, use))
            sequence, orders = takes[slot + REST_TAKES_MS]
            if use == "trades_backfill":
                made = [t for t in world.trades.values() if t["x"] < slot + REST_TAKES_MS]
                for t in sorted(made, key=lambda t: t["i"])[-TRADES_PAGE:]:
                    rest = {
                        "book": BOOK,
                        "created_at": rest_time(t["x"]),
                        "amount": t["a"],
                        "maker_side": "buy" if t["t"] == 1 else "sell",
                        "price": t["r"],
                        "tid": t["i"],
                    }
                    cut.backfilled.append((slot + REST_ANSWERS_MS, rest))
                    world.backfilled_tids.add(t["i"])
                continue
            if use == "anchor":
                by_price = sorted(orders.items(), key=lambda item: item[1][1])
                bids = [_resting(oid, o) for oid, o in reversed(by_price) if o[0] == BUY]
                asks = [_resting(oid, o) for oid, o in by_price if o[0] == SELL]
                name = archive.add_snapshot(_snapshot(BOOK, slot, sequence, bids, asks, False))
                world.anchors.append(AnchorFact(name, sequence, slot, slot + REST_ANSWERS_MS))
                continue
            top_bids, top_asks = aggregate(orders.values(), TOP)
            bids = [{"price": p, "amount": a} for p, a, _n in top_bids]
            asks = [{"price": p, "amount": a} for p, a, _n in top_asks]
            if slot == planted:
                bids[0]["amount"] = amount_text(int(bids[0]["amount"].replace(".", "")) + 1)
            name = archive.add_snapshot(_snapshot(BOOK, slot, sequence, bids, asks, True))
            world.aggregated.append((name, sequence, slot == planted))
        previous: Cut | None = None
        for cut in cuts:
            objects = {
                "diff-orders": _store(archive, cut, "diff-orders", _diff_lines(cut)),
                "trades": _store(archive, cut, "trades", _trade_lines(cut)),
            }
            world.streamed_tids |= {r.event.trade["i"] for r in cut.received if r.event.trade}
            streams = _streams_part(cut, previous, objects)
            if cut.minute_ms is not None:
                record = run_record(cut.minute_ms, [BOOK], RPM)
                record["streams"] = streams
                record["slot_uses"] = [
                    {"book": BOOK, "slot": iso(slot), "use": use}
                    for slot, use in cut.slot_uses
                    if use != "snapshot"
                ]
                archive.add_run(record)
            else:
                doc = {
                    "schema_version": 1,
                    "kind": "shutdown",
                    "instance": instance.id,
                    "at": iso(cut.at_ms),
                    "streams": streams,
                }
                archive.add_raw(shutdown_name(cut.at_ms, instance.id), encode(doc))
            previous = cut
    world.anchors.sort(key=lambda a: a.received_ms)
    world.cuts.sort(key=lambda c: c.at_ms)
    return world
