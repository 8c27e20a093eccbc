"""Soak: many scheduled minutes of streams and snapshots through the real functions-framework
server, on a time-lapse clock (10x) that the server, the fake Bitso and the fake socket share,
with faults drawn from a seeded generator. The market runs on one `Exchange`, so the socket's
diffs agree with the REST books.

- 30 minutes on the local sink: dropped diffs, cut sockets, outages (cut, then connections
  refused for a while), stalled sockets (silent until the collector gives up on them), REST 5xx
  replies and hung requests, the instance frozen between calls (SIGSTOP, as Cloud Run throttles
  its CPU; then the next call comes late, or nobody calls the next minute) and a restart
  (SIGTERM, then a new instance on the same data directory and clock).
- 9 minutes through the strict GCS proxy and its emulator: a GCS 503 on each kind of object
  (snapshot, a cut's stream object, claim, run record, the shutdown flush), twice, a cut, a
  dropped diff, a freeze and a restart.

The clock runs at the real pace for the last 1.2 s of every minute, where a call stores its last
replies, its cut and its record within fractions of a second: real writes take real time. The
last minutes meet no fault, so every owed backfill is settled. At 10x a hung request holds its
call past its minute (its timeout is counted in real seconds), and the next call comes late.

What was stored is read back from the raw objects and records (not through the reader) and
checked against an exact ledger of what the fakes did:
- every diff the market made, from the first one stored, is stored once per instance with the
  very content the socket sent, or lies in a named hole: a diff the fake withheld, a sequence
  gap a record names (each of whose diffs the fake never sent to a live connection, or sent on
  a link that died right after), or the hole between one instance's shutdown flush and the next
  one's first subscription (whose first cut starts a new chain);
- every trade likewise (streamed or backfilled from REST, once per instance; a new instance's
  backfill of the minute before it may repeat what the previous one streamed, as readers drop
  duplicates by trade id), and every trade of that minute is stored;
- every line of a cut was received after the instance's previous cut and up to its `cut_at`;
- every order book the fake served is stored as a snapshot once, exactly as served;
- at most 60 REST requests started in any 60 s (the fake's log, on the shared clock);
- every call's record is stored and is what the call answered, and the faults left their marks
  (disconnects, frozen spans, failed slots, GCS 503s answered).

`pytest -m soak` runs only these; `-m "not soak"` leaves them out.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from bitso_collector.streams.backfill import NEW_CHAIN_LOOKBACK_MS
from bitso_format import (
    DIFF_ORDERS_CHANNEL,
    FROZEN_REASON,
    OUTAGE_REASON,
    TRADES_CHANNEL,
    floor_hour,
    grid_minute,
    parse_iso_millis,
    parse_run_record_name,
    parse_shutdown_record_name,
    parse_snapshot_name,
    parse_stream_line,
    parse_stream_name,
)
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import Exchange, Market
from bitso_testkit.strict_gcs import StrictGcs, running_strict_gcs
from tests.conftest import FunctionServer, StartFunction

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.soak]

SEED = 1606
BOOKS = ("btc_mxn", "eth_mxn")
TRADES, DIFFS = TRADES_CHANNEL, DIFF_ORDERS_CHANNEL
CHANNELS = (TRADES, DIFFS)
SPEED = 10.0
BUCKET = "soak"
#: Market changes a real second per book (0.6 a second on the time-lapse clock).
RATE = 6.0
#: How long before its minute each call is sent (seconds on the shared clock).
LEAD = 0.6
#: Real seconds the fake socket refuses connections after an outage's cut (3 s on the clock).
OUTAGE_S = 0.3
#: What a GCS 503 hits: the next upload whose name matches.
GCS_TARGETS = {
    "snapshot": r"^[0-9]{4}/",
    "stream": r"^(trades|diff-orders)/.*[0-9]{4}Z\.ndjson\.gz$",
    "claim": r"\.claim$",
    "run_record": r"^_runs/.*[0-9]{4}Z\.json$",
    "shutdown": r"-[0-9a-f]{8}\.(ndjson\.gz|shutdown\.json)$",
}
#: Slack (ms on the shared clock) between when the market made a change and when the
#: collector's clock saw its connection come or go: a few real milliseconds, times ten.
SLACK_MS = 2000
LIMIT_PER_WINDOW = 60
#: The longest a REST request may take to reach the fake after its slot (seconds on the clock):
#: half a slot of lateness, then transit, which takes real time (10x). Less than the 2.03 s
#: between two slots of one book, so each request belongs to one slot.
ARRIVAL_LIMIT = 2.0


@dataclass(frozen=True)
class Fault:
    minute: int
    #: Seconds into the minute (negative: before the call is sent; 60: after it answered).
    at: float
    kind: str
    book: str = BOOKS[0]
    count: int = 1
    target: str = ""
    #: How long a freeze lasts (real seconds).
    seconds: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """How long a soak runs, on which storage, and which faults it meets."""

    minutes: int
    in_call: dict[str, int]
    between: dict[str, int]
    #: Seconds before each minute's start that the clock runs at 1x, not `SPEED`x: a call's
    #: last replies, its cut's objects and its run record are stored within its last second,
    #: and real writes take real time (at 10x that second would be 0.1 s, shorter than a busy
    #: machine's fsync or an emulated GCS upload).
    slow_before: float = 1.2
    #: The last minutes meet no fault, so every owed backfill is settled.
    clean_end: int = 3


def plan_faults(scenario: Scenario, rng: random.Random) -> list[Fault]:
    """Which faults come when: the ones between calls after distinct minutes, the in-call ones
    at random seconds of the other minutes (none in the first minute or the clean end, none in
    a minute a fault before it may leave uncalled). GCS 503s take turns over their targets."""
    faulty = list(range(1, scenario.minutes - scenario.clean_end))
    between = [kind for kind, count in scenario.between.items() for _ in range(count)]
    # A freeze across a minute skips the next one: no two of these on neighbouring minutes.
    after = rng.sample(faulty[:-1:2], len(between))
    faults = [
        Fault(minute, 60.0, kind, seconds=round(rng.uniform(1.2, 1.8), 2))
        for minute, kind in zip(after, between, strict=True)
    ]
    called = [minute for minute in faulty if minute - 1 not in after]
    targets = itertools.cycle(rng.sample(list(GCS_TARGETS), len(GCS_TARGETS)))
    for kind, count in scenario.in_call.items():
        for minute in rng.choices(called, k=count):
            target = next(targets) if kind == "gcs_503" else ""
            at = -LEAD - 0.2 if target == "claim" else round(rng.uniform(3, 56), 1)
            book = rng.choice(BOOKS)
            faults.append(Fault(minute, at, kind, book, rng.randint(1, 3), target))
    return sorted(faults, key=lambda f: (f.minute, f.at))


@dataclass
class Run:
    """What the soak did: the fakes, the servers in order, every reply, every fault."""

    exchange: Exchange
    rest: FakeBitso
    socket: FakeBitsoWs
    gcs: StrictGcs | None
    start_function: StartFunction
    servers: list[FunctionServer] = field(default_factory=list)
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    applied: list[Fault] = field(default_factory=list)
    uncalled: list[int] = field(default_factory=list)
    real_seconds: float = 0.0


def apply(fault: Fault, run: Run) -> None:
    if fault.kind == "drop_diffs":
        run.socket.drop_diffs(fault.count, fault.book)
    elif fault.kind == "cut":
        run.socket.cut()
    elif fault.kind == "outage":  # the link dies and cannot come back for a while
        run.socket.refuse(OUTAGE_S)
        run.socket.cut()
    elif fault.kind == "stall":  # a half-dead link: nothing comes, not even keep-alives, so
        run.socket.stall()  # the collector gives the connection up and opens another
    elif fault.kind == "rest_5xx":
        run.rest.configure(script=["5xx"] * fault.count)
    elif fault.kind == "rest_hang":
        run.rest.configure(script=["hang"])
    elif fault.kind == "gcs_503":
        assert run.gcs is not None
        run.gcs.fail(1, 503, match=GCS_TARGETS[fault.target], bucket=BUCKET)
    else:
        raise AssertionError(f"not an in-call fault: {fault}")
    run.applied.append(fault)


def between_calls(fault: Fault, run: Run, start: float, settings: dict[str, str]) -> bool:
    """Apply a fault after the call of the minute that began at `start`; True when the next
    minute is left uncalled."""
    server = run.servers[-1]
    assert server.process is not None and server.clock is not None
    group = server.process.pid
    run.applied.append(fault)
    if fault.kind == "freeze":  # the next call comes late
        os.killpg(group, signal.SIGSTOP)
        time.sleep(fault.seconds)
        os.killpg(group, signal.SIGCONT)
    elif fault.kind == "freeze_minute":  # nobody calls the next minute
        os.killpg(group, signal.SIGSTOP)
        server.clock.sleep_until(start + 120 - LEAD - 0.5)
        os.killpg(group, signal.SIGCONT)
        return True
    elif fault.kind == "restart":
        os.killpg(group, signal.SIGTERM)
        server.process.wait(timeout=15)
        run.servers.append(run.start_function(settings, after=server))
    else:
        raise AssertionError(f"not a fault between calls: {fault}")
    return False


def soak(start_function: StartFunction, scenario: Scenario, gcs: StrictGcs | None) -> Run:
    began = time.monotonic()
    faults = plan_faults(scenario, random.Random(SEED))
    exchange = Exchange(BOOKS, seed=SEED, start_ms=int(time.time() * 1000))
    with (
        FakeBitso(exchange=exchange) as rest,
        FakeBitsoWs(exchange, rate=0, keepalive_s=0.5) as socket,
        ThreadPoolExecutor(1) as caller,
    ):
        run = Run(exchange, rest, socket, gcs, start_function=start_function)
        settings = {
            "BITSO_BOOKS": ",".join(BOOKS),
            "BITSO_API_URL": rest.url,
            "BITSO_WS_URL": socket.url,
            "STREAMS": ",".join(CHANNELS),
        }
        if gcs is not None:
            settings.update(GCS_BUCKET=BUCKET, STORAGE_EMULATOR_HOST=gcs.url)
        run.servers.append(start_function(settings))
        clock = run.servers[0].clock
        assert clock is not None
        rest.clock = socket.clock = clock.now  # Bitso's clock and ours agree
        first = clock.jump_to_minute(-1.0, SPEED, slow_before=scenario.slow_before)
        socket.set_rate(RATE)
        minute = 0
        while minute < scenario.minutes:
            start = first + 60 * minute
            mine = [f for f in faults if f.minute == minute]
            if clock.now() > start + 45:  # a restart took the minute
                run.uncalled.append(minute)
                minute += 1
                continue
            for fault in (f for f in mine if f.at < 0):
                apply(fault, run)
            clock.sleep_until(start - LEAD)
            server = run.servers[-1]
            reply = caller.submit(server.call, minute_start=start, timeout=60)
            for fault in (f for f in mine if 0 <= f.at < 60):
                clock.sleep_until(start + fault.at)
                apply(fault, run)
            answer = reply.result()
            assert answer.headers["Content-Type"].startswith("application/json"), answer.text
            run.replies.append((minute, answer.json()))
            minute += 1
            for fault in (f for f in mine if f.at >= 60):
                if between_calls(fault, run, start, settings):
                    run.uncalled.append(minute)
                    minute += 1
        socket.set_rate(0)  # what was sent reaches the socket before the last instance stops
        time.sleep(0.5)
        last = run.servers[-1].process
        assert last is not None
        os.killpg(last.pid, signal.SIGTERM)
        last.wait(timeout=15)
    run.real_seconds = time.monotonic() - began
    return run


class Objects(Protocol):
    """Where the soak's objects are: a local directory or a GCS bucket."""

    def names(self) -> list[str]: ...
    def read(self, name: str) -> bytes: ...


@dataclass
class LocalObjects:
    root: Path

    def names(self) -> list[str]:
        return sorted(
            str(path.relative_to(self.root)) for path in self.root.rglob("*") if path.is_file()
        )

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


@dataclass
class GcsObjects:
    gcs: StrictGcs

    def names(self) -> list[str]:
        return [item["name"] for item in self.gcs.list_objects(BUCKET)]

    def read(self, name: str) -> bytes:
        return self.gcs.read_object(BUCKET, name)


# -- what was stored -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Cut:
    """One cut of an instance: a call's run record's `streams`, or a shutdown record's."""

    instance: str
    at_ms: int
    shutdown: bool
    streams: dict[str, Any]

    def channel(self, book: str, channel: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.streams["books"][book][channel]
        return entry


@dataclass(frozen=True)
class Line:
    instance: str
    received_ms: int
    message: dict[str, Any] | None
    trade: dict[str, Any] | None


@dataclass
class Archive:
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    cuts: list[Cut] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    #: (book, channel) -> every stored line, per instance in the order of receipt.
    lines: dict[tuple[str, str], list[Line]] = field(default_factory=lambda: defaultdict(list))

    def instances(self) -> list[str]:
        """In the order they started."""
        return list(dict.fromkeys(cut.instance for cut in self.cuts))

    def cuts_of(self, instance: str) -> list[Cut]:
        return [cut for cut in self.cuts if cut.instance == instance]


def read_archive(objects: Objects) -> Archive:
    archive = Archive()
    streams: dict[str, bytes] = {}
    for name in objects.names():
        data = objects.read(name)
        if parse_snapshot_name(name) is not None:
            archive.snapshots.append(
                json.loads(gzip.decompress(data) if name.endswith(".gz") else data)
            )
        elif parse_stream_name(name) is not None:
            streams[name] = data
        elif parse_shutdown_record_name(name) is not None:
            body = json.loads(data)
            at = parse_iso_millis(body["at"])
            archive.cuts.append(Cut(body["instance"], at, True, body["streams"]))
        elif (minute_ms := parse_run_record_name(name)) is not None:
            record = json.loads(data)
            archive.records[minute_ms] = record
            if "streams" in record:
                streams_part = record["streams"]
                at = parse_iso_millis(streams_part["cut_at"])
                archive.cuts.append(Cut(streams_part["instance"], at, False, streams_part))
        else:
            assert name.endswith(".claim"), f"an object nobody should have stored: {name}"
    archive.cuts.sort(key=lambda cut: cut.at_ms)
    listed: set[str] = set()
    previous: dict[str, int] = {}  # instance -> its previous cut
    for cut in archive.cuts:
        since = previous.get(cut.instance, 0)
        previous[cut.instance] = cut.at_ms
        for book, channels in cut.streams["books"].items():
            for channel, entry in channels.items():
                count = 0
                for name in entry["objects"]:
                    assert name not in listed, f"{name} is listed by two cuts"
                    listed.add(name)
                    parsed = parse_stream_name(name)
                    assert parsed is not None and (parsed.book, parsed.channel) == (book, channel)
                    for raw in gzip.decompress(streams.pop(name)).splitlines():
                        line = parse_stream_line(json.loads(raw))
                        received = line.received_ms
                        assert floor_hour(received) == parsed.hour_ms  # under its hour
                        # A cut holds what was received since the instance's previous cut.
                        assert since <= received <= cut.at_ms, (name, line, since, cut.at_ms)
                        archive.lines[(book, channel)].append(
                            Line(cut.instance, received, line.message, line.trade)
                        )
                        count += 1
                assert count == entry["messages"] + entry["backfilled"], (book, channel, cut)
    assert not streams, f"stream objects no record lists: {sorted(streams)}"
    return archive


# -- the holes the records name ------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    start_ms: int
    end_ms: int

    def holds(self, at_ms: int, slack_ms: int = SLACK_MS) -> bool:
        return self.start_ms - slack_ms <= at_ms <= self.end_ms + slack_ms


def span(entry: dict[str, Any]) -> Span:
    return Span(parse_iso_millis(entry["from"]), parse_iso_millis(entry["to"]))


def watched(archive: Archive, instance: str, book: str, channel: str) -> Span:
    """From the instance's first subscription to its last cut."""
    covered = [
        span(cut.channel(book, channel)["covers"])
        for cut in archive.cuts_of(instance)
        if cut.channel(book, channel)["covers"] is not None
    ]
    return Span(covered[0].start_ms, covered[-1].end_ms)


def between_instances(archive: Archive, book: str, channel: str) -> list[Span]:
    """The holes from each instance's last cut to the next one's first subscription."""
    spans = [watched(archive, instance, book, channel) for instance in archive.instances()]
    holes = []
    for before, after in itertools.pairwise(spans):
        assert before.end_ms < after.start_ms, "two instances at once"
        holes.append(Span(before.end_ms, after.start_ms))
    return holes


def unwatched(archive: Archive, instance: str, book: str, channel: str) -> list[Span]:
    """Outages the instance's records name (the subscription was down)."""
    return [
        span(entry)
        for cut in archive.cuts_of(instance)
        for entry in cut.channel(book, channel)["unwatched"]
        if entry["reason"] == OUTAGE_REASON
    ]


def named_gaps(archive: Archive, instance: str, book: str) -> list[tuple[int, int]]:
    return [
        (gap["after"], gap["next"])
        for cut in archive.cuts_of(instance)
        for gap in cut.channel(book, DIFFS)["sequence_gaps"]
    ]


# -- the ledger ----------------------------------------------------------------------------------
def check_diffs(archive: Archive, run: Run, book: str) -> Counter[str]:
    """Every diff the market made is stored once, as sent, or lies in a named hole; how many
    lay in each kind of hole."""
    market: Market = run.exchange.markets[book]
    changes = {change.sequence: change for change in market.changes}
    dropped = {sequence for name, sequence in run.socket.stats.dropped if name == book}
    holders: dict[int, list[str]] = defaultdict(list)
    per_instance: dict[str, list[int]] = defaultdict(list)
    for line in archive.lines[(book, DIFFS)]:
        assert line.message is not None and line.trade is None
        sequence = line.message["sequence"]
        assert line.message == changes[sequence].diff_message(), "stored not as sent"
        holders[sequence].append(line.instance)
        per_instance[line.instance].append(sequence)
    for instance, sequences in per_instance.items():
        assert len(sequences) == len(set(sequences)), f"{instance} stored a diff twice"
        assert sequences == sorted(sequences), f"{instance} stored diffs out of order"
    holes = between_instances(archive, book, DIFFS)
    gaps = {i: named_gaps(archive, i, book) for i in archive.instances()}
    sent = {m["sequence"] for m in run.socket.sent_to() if (m["type"], m["book"]) == (DIFFS, book)}
    # Each diff in a named gap is one a fault took: never sent (withheld, a silence, no live
    # subscription), or sent on a link that died right after.
    for instance, spans in gaps.items():
        ends = [
            parse_iso_millis(d["at"])
            for c in archive.cuts_of(instance)
            for d in c.streams["disconnects"]
        ]
        outages = unwatched(archive, instance, book, DIFFS)
        for after, following in spans:
            for sequence in range(after + 1, following):
                at = changes[sequence].at_ms
                assert (
                    sequence not in sent
                    or any(at <= end <= at + SLACK_MS for end in ends)
                    or any(outage.holds(at) for outage in outages)
                ), (
                    f"{book} diff {sequence} (made at {at}) is in a gap {instance} names, "
                    "but the fake sent it to a live connection"
                )
    reasons: Counter[str] = Counter()
    for sequence in range(min(holders), market.sequence + 1):
        kept = holders.get(sequence, [])
        if kept:
            assert len(kept) == 1, f"{book} diff {sequence} stored by {kept}"
            reasons["stored"] += 1
            continue
        at = changes[sequence].at_ms
        if sequence in dropped:
            reasons["dropped"] += 1
        elif any(a < sequence < b for spans in gaps.values() for a, b in spans):
            reasons["sequence_gap"] += 1
        elif any(hole.holds(at) for hole in holes):
            reasons["between_instances"] += 1
        else:
            raise AssertionError(f"{book} diff {sequence} (made at {at}) lost without a name")
    return reasons


def check_trades(archive: Archive, run: Run, book: str) -> Counter[str]:
    market: Market = run.exchange.markets[book]
    made = {c.trade.tid: c for c in market.changes if c.trade is not None}
    copies: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for line in archive.lines[(book, TRADES)]:
        if line.message is not None:
            [entry] = line.message["payload"]
            change = made[entry["i"]]
            assert line.message == change.trades_message(), "stored not as sent"
            copies[entry["i"]].append((line.instance, "stream"))
        else:
            assert line.trade is not None
            trade = made[line.trade["tid"]].trade
            assert trade is not None and line.trade == market.trade_entry(trade)
            copies[trade.tid].append((line.instance, "rest"))
    holes = between_instances(archive, book, TRADES)
    order = archive.instances()
    # A new instance backfills the trades of the minute before its first subscription.
    lookback = {
        instance: Span(start - NEW_CHAIN_LOOKBACK_MS, start)
        for instance in order
        for start in [watched(archive, instance, book, TRADES).start_ms]
    }
    reasons: Counter[str] = Counter()
    for trade in market.trade_log:
        if trade.tid < min(copies):
            continue
        kept = copies.get(trade.tid, [])
        instances = [instance for instance, _ in kept]
        assert len(instances) == len(set(instances)), f"{book} trade {trade.tid}: {kept}"
        if len(kept) > 1:
            # What the previous instance streamed in that minute may be stored again.
            later = max(kept, key=lambda copy: order.index(copy[0]))
            assert later[1] == "rest", f"{book} trade {trade.tid} stored twice: {kept}"
            assert lookback[later[0]].holds(trade.created_ms), (book, trade.tid, kept)
            reasons["repeated_by_new_instance"] += 1
        if kept:
            reasons["backfilled" if all(s == "rest" for _, s in kept) else "stored"] += 1
        elif any(hole.holds(trade.created_ms) for hole in holes) and not any(
            window.holds(trade.created_ms, 0) for window in lookback.values()
        ):
            reasons["between_instances"] += 1
        else:
            raise AssertionError(
                f"{book} trade {trade.tid} (made at {trade.created_ms}) lost without a name"
            )
    return reasons


def check_snapshots(archive: Archive, run: Run) -> int:
    served = {(s["book"], int(s["sequence"]), s["aggregate"]): s for s in run.rest.served}
    made = Counter((s["book"], int(s["sequence"]), s["aggregate"]) for s in run.rest.served)
    stored = Counter((d["book"], d["sequence"], d["aggregate"]) for d in archive.snapshots)
    assert stored == made, (made - stored, stored - made)
    for document in archive.snapshots:
        source = served[(document["book"], document["sequence"], document["aggregate"])]
        for side in ("bids", "asks"):
            keys = ("price", "amount") if document["aggregate"] else ("price", "amount", "oid")
            assert document[side] == [{k: level[k] for k in keys} for level in source[side]]
    return sum(stored.values())


def busiest_window(starts: list[float]) -> int:
    """The most request starts in any 60 s."""
    starts = sorted(starts)
    return max(
        bisect.bisect_right(starts, at) - bisect.bisect_right(starts, at - 60) for at in starts
    )


def slots_used(run: Run) -> list[float]:
    """The grid slot each REST request the fake logged was started for: the latest slot of its
    book at or before the request reached the fake, on the grid of its call's pace; never two
    requests for one slot, so the collector's own budget (59 a minute) held."""
    paces = {
        parse_iso_millis(record["minute"].replace("Z", ".000Z")) // 60_000: record[
            "requests_per_minute"
        ]
        for _, record in run.replies
    }
    grid: dict[str, list[float]] = defaultdict(list)
    for minute, pace in sorted(paces.items()):
        for slot in grid_minute(minute, pace, BOOKS):
            grid[slot.book].append(slot.at)
    used: set[tuple[str, float]] = set()
    for entry in run.rest.requests:
        assert entry.book is not None
        slots = grid[entry.book]
        slot = slots[bisect.bisect_right(slots, entry.at) - 1]
        assert 0 <= entry.at - slot <= ARRIVAL_LIMIT, (entry, slot)
        assert (entry.book, slot) not in used, f"two requests for the slot {entry.book} {slot}"
        used.add((entry.book, slot))
    return sorted(at for _, at in used)


@pytest.fixture(scope="module")
def gcs() -> Iterator[StrictGcs]:
    with running_strict_gcs() as proxy:
        proxy.create_bucket(BUCKET)
        yield proxy


def check(run: Run, objects: Objects, scenario: Scenario) -> str:
    """The ledger and the marks the faults left; a line that says what happened."""
    archive = read_archive(objects)
    applied = Counter(fault.kind for fault in run.applied)
    assert applied == Counter({**scenario.in_call, **scenario.between}), applied
    instances = archive.instances()
    assert len(instances) == len(run.servers) == 1 + scenario.between.get("restart", 0)
    shutdowns = [cut for cut in archive.cuts if cut.shutdown]
    assert [cut.instance for cut in shutdowns] == instances  # each flushed at its SIGTERM
    # The hole between two instances is named: the new one's first cut starts a new chain
    # after the old one's shutdown flush (readers call it instance_start).
    for before, after in itertools.pairwise(instances):
        last, first = archive.cuts_of(before)[-1], archive.cuts_of(after)[0]
        for book in BOOKS:
            for channel in CHANNELS:
                entry = first.channel(book, channel)
                assert not entry["continuous"] and span(entry["covers"]).start_ms > last.at_ms

    # Every call that ran stored its record, and it is what the call answered.
    for minute, reply in run.replies:
        assert reply["status"] in ("ok", "degraded", "throttled", "backing_off"), (
            minute,
            reply.get("error"),
            reply,
        )
        stored = archive.records[parse_iso_millis(reply["minute"].replace("Z", ".000Z"))]
        assert stored == reply

    diffs = {book: check_diffs(archive, run, book) for book in BOOKS}
    trades = {book: check_trades(archive, run, book) for book in BOOKS}
    snapshots = check_snapshots(archive, run)
    # The REST budget: every request on a slot of its own, so at most 60 in any 60 s at the
    # slots' times. At the fake a request arrives up to ARRIVAL_LIMIT late (real transit, 10x):
    # if that ever crowds 61 arrivals into its 60 s, it throttles, which the collector must
    # then live through (the pace halves, the next minute starts after the silence).
    assert busiest_window(slots_used(run)) <= LIMIT_PER_WINDOW
    arrivals = busiest_window([entry.at for entry in run.rest.requests])
    throttled = [entry for entry in run.rest.requests if entry.status == 420]
    assert not throttled or arrivals > LIMIT_PER_WINDOW

    # The faults left the marks they should.
    cuts = archive.cuts
    lost_links = applied["cut"] + applied["outage"] + applied["stall"]
    assert sum(len(cut.streams["disconnects"]) for cut in cuts) >= lost_links
    assert sum(len(cut.streams["frozen"]) for cut in cuts) >= (
        applied["freeze"] + applied["freeze_minute"]
    )
    assert all(
        entry["reason"] in (OUTAGE_REASON, FROZEN_REASON)
        for cut in cuts
        for channels in cut.streams["books"].values()
        for channel in channels.values()
        for entry in channel["unwatched"]
    )
    assert sum(d["dropped"] for d in diffs.values()) == len(run.socket.stats.dropped)
    if applied["restart"]:
        assert sum(d["between_instances"] for d in diffs.values()) > 0
    failed = Counter(entry.fault for entry in run.rest.requests if entry.fault != "ok")
    assert failed["hang"] == applied["rest_hang"] and failed["5xx"] >= applied["rest_5xx"]
    if run.gcs is not None:
        outcomes = Counter(upload.outcome for upload in run.gcs.upload_log(BUCKET))
        assert outcomes["503"] == applied["gcs_503"]
    return (
        f"{scenario.minutes} minutes ({len(run.replies)} calls, uncalled {run.uncalled}) in "
        f"{run.real_seconds:.0f} s real; faults {dict(applied)}; diffs {dict(diffs)}; "
        f"trades {dict(trades)}; snapshots {snapshots}; most REST starts in 60 s at the fake "
        f"{arrivals}, {len(throttled)} throttled"
    )


LONG = Scenario(
    minutes=30,
    in_call={
        "drop_diffs": 6,
        "cut": 3,
        "outage": 2,
        "stall": 2,
        "rest_5xx": 5,
        "rest_hang": 2,
    },
    between={"freeze": 3, "freeze_minute": 2, "restart": 1},
)


#: Through the strict GCS proxy and its emulator (uploads of tens of real milliseconds, one at
#: a time): fewer minutes, so the emulator keeps up with ten snapshots a real second.
THROUGH_GCS = Scenario(
    minutes=9,
    in_call={"gcs_503": 10, "cut": 1, "drop_diffs": 1},
    between={"freeze": 1, "restart": 1},
)


@pytest.mark.timeout(600)
def test_30_faulty_minutes_keep_an_exact_ledger(start_function: StartFunction) -> None:
    run = soak(start_function, LONG, None)
    print("\nsoak:", check(run, LocalObjects(run.servers[0].data_dir), LONG))


@pytest.mark.timeout(300)
def test_gcs_503s_on_every_kind_of_object_lose_nothing(
    start_function: StartFunction, gcs: StrictGcs
) -> None:
    run = soak(start_function, THROUGH_GCS, gcs)
    print("\nsoak through GCS:", check(run, GcsObjects(gcs), THROUGH_GCS))
