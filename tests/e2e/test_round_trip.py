"""Round trip: the real collector writes a few minutes, the reader reads them back.

The collector runs in-process (threaded strategy, real HTTP to the fake Bitso on loopback, the
real local sink or the real google-cloud-storage client through the strict GCS proxy over the
emulator), with its clock shifted so each call lands just before a chosen minute of a fixed
date. The minutes hold server errors, a garbage and a cut-off reply, a snapshot that already
exists (a duplicate), a throttle, a minute nobody collected and, in every minute, the slots after
the call's window. What should be in the archive is worked out here from the fake's own log and
the grid formula, not from the collector, and compared with what `bitso_archive` reads back.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bitso_archive import gaps_report, load, open_source
from bitso_archive.gaps import MinuteSpan
from bitso_archive.snapshots import Corrupt, iter_snapshots, list_snapshot_names
from bitso_collector.call_options import CallOptions
from bitso_collector.clock import ShiftedClock
from bitso_collector.config import Settings, load_settings
from bitso_collector.run_record import RunRecord
from bitso_collector.runner import Collector
from bitso_collector.sinks import Sink, make_sink
from bitso_collector.strategies import make_strategy
from bitso_format import (
    MINUTE_MS,
    GridSlot,
    datetime_to_ms,
    grid_minute,
    iso_millis,
    parse_iso_millis,
    parse_rfc3339,
    run_record_name,
    seconds_to_ms,
    snapshot_name,
)
from bitso_logs import JsonLogger
from bitso_testkit.fake_bitso import FakeBitso, RequestLog
from bitso_testkit.strict_gcs import StrictGcs
from tests.support.schemas import check_run_record

pytestmark = pytest.mark.e2e
BOOKS = ("btc_mxn", "eth_mxn")
RPM = 59
PREFIX = "archive/bitso"
#: Each call arrives this long before its minute begins, as a punctual scheduler's would.
LEAD_S = 0.3
#: A fixed date, so no run depends on the wall clock; the range crosses an hour boundary.
FIRST_MINUTE = parse_rfc3339("2026-11-24T10:58:00Z") // MINUTE_MS
MINUTES = 4
START_MS, END_MS = FIRST_MINUTE * MINUTE_MS, (FIRST_MINUTE + MINUTES) * MINUTE_MS
#: How each failing reply of the fake is named in the run record (and so in the gap report).
FAILURE_REASONS = {"5xx": "http_5xx", "garbage": "malformed", "truncate": "malformed"}
_buckets = itertools.count()


@dataclass(frozen=True)
class MinutePlan:
    """One call: which minute, for how many seconds, what the fake answers, how it is stored."""

    offset: int  # minutes after FIRST_MINUTE
    duration_s: int
    script: tuple[str, ...]  # the fake's answer to each request, in order ("ok" after the end)
    compression: str
    duplicate_at: int | None = None  # slot j whose snapshot exists before the call

    @property
    def minute(self) -> int:
        return FIRST_MINUTE + self.offset

    @property
    def start(self) -> float:
        return self.minute * MINUTE_MS / 1000


PLANS = (
    MinutePlan(0, 6, ("ok", "5xx", "ok", "garbage", "ok", "truncate"), "none", duplicate_at=4),
    MinutePlan(1, 3, (), "gzip"),
    # Minute 2: no call at all.  The throttle comes last, so no later minute has to wait on it.
    MinutePlan(3, 4, ("ok", "throttle"), "gzip"),
)


@dataclass(frozen=True)
class Call:
    """One call as the test saw it: the clock shift, the fake's log of it, and the run record."""

    plan: MinutePlan
    shift: float
    requests: list[RequestLog]
    served: list[dict[str, Any]]
    record: RunRecord


@dataclass(frozen=True)
class Stored:
    """What one stored snapshot says, with prices and amounts as strings."""

    sequence: int
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]


@dataclass
class Expected:
    """What the archive must hold, derived from the fake's log and the grid."""

    stored: dict[tuple[str, int], Stored]
    failures: dict[tuple[str, int], list[tuple[str, str]]]  # (book, minute) -> (slot, reason)


# -- fixtures -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Collected:
    """One sink's archive after every planned call, and what it must hold."""

    source: str
    calls: list[Call]
    expected: Expected
    #: With GCS, the strict proxy's answers to each upload, by object name.
    uploads: dict[str, list[str]] | None


@pytest.fixture(scope="module", params=["local", "gcs"])
def collected(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Collected]:
    """The planned minutes, collected once per sink and shared by the tests that read them."""
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(FakeBitso())
        proxy: StrictGcs | None = None
        if request.param == "local":
            storage = {"LOCAL_DATA_DIR": str(tmp_path_factory.mktemp("round-trip") / "data")}
        else:
            proxy = request.getfixturevalue("gcs")
            bucket = f"round-trip-{next(_buckets)}"
            proxy.create_bucket(bucket)
            storage = {"GCS_BUCKET": bucket}
            env = stack.enter_context(pytest.MonkeyPatch.context())
            env.setenv("STORAGE_EMULATOR_HOST", proxy.url)  # for the sink's and reader's client
        calls, pre_existing, source = collect(fake, storage)
        uploads: dict[str, list[str]] | None = None
        if proxy is not None:
            uploads = defaultdict(list)
            for upload in proxy.upload_log(storage["GCS_BUCKET"]):
                uploads[upload.name].append(upload.outcome)
        yield Collected(source, calls, expected_archive(calls, pre_existing), uploads)


def reader_source(settings: Settings) -> str:
    """Where the reader finds what the collector wrote with `settings`."""
    if settings.gcs_bucket:
        return f"gs://{settings.gcs_bucket}/{PREFIX}"
    return str(Path(settings.local_data_dir) / PREFIX)


# -- writing --------------------------------------------------------------------------------------
def settings_for(plan: MinutePlan, fake: FakeBitso, storage: dict[str, str]) -> Settings:
    env = {
        "BITSO_BOOKS": ",".join(BOOKS),
        "BITSO_API_URL": fake.url,
        "REQUESTS_PER_MINUTE": str(RPM),
        "STRATEGY": "threaded",
        "OBJECT_PREFIX": PREFIX,
        "COMPRESSION": plan.compression,
        **storage,
    }
    return load_settings(env, dotenv=None)


def pre_existing_snapshot(slot: GridSlot) -> dict[str, Any]:
    """A valid snapshot unlike anything the fake serves (sequence 7, trailing zeros kept)."""
    stamp = iso_millis(slot.at_ms)
    return {
        "schema_version": 1,
        "book": slot.book,
        "slot": stamp,
        "requested_at": stamp,
        "received_at": stamp,
        "latency_ms": 0.0,
        "sequence": 7,
        "updated_at": "2026-11-24T10:57:59+00:00",
        "aggregate": True,
        "bids": [{"price": "1.10", "amount": "0.00000001"}],
        "asks": [{"price": "1.20", "amount": "2.50"}],
    }


def collect(fake: FakeBitso, storage: dict[str, str]) -> tuple[list[Call], dict[str, Any], str]:
    """Run every planned call; the calls, the pre-existing snapshot, and the reader's source."""
    clock = ShiftedClock(0.0)
    settings = settings_for(PLANS[0], fake, storage)
    sink: Sink = make_sink(settings, clock)
    strategy = make_strategy("threaded", fake.url, None)
    log = JsonLogger(io.StringIO())
    calls: list[Call] = []
    pre_existing: dict[str, Any] = {}
    try:
        for plan in PLANS:
            settings = settings_for(plan, fake, storage)
            if plan.duplicate_at is not None:
                slot = grid_minute(plan.minute, RPM, BOOKS)[plan.duplicate_at]
                pre_existing = pre_existing_snapshot(slot)
                key = snapshot_name(PREFIX, slot.book, slot.at_ms, plan.compression)
                assert sink.create(key, (json.dumps(pre_existing) + "\n").encode())
            fake.configure(script=list(plan.script))
            seen_requests, seen_served = len(fake.requests), len(fake.served)
            # Settings are an instance's, fixed at start: a collector per call lets one archive
            # hold minutes written with and without gzip, as after a redeploy.
            collector = Collector(settings, sink, strategy, clock, log)
            clock.shift = plan.start - LEAD_S - time.time()
            options = CallOptions(schedule_time=plan.start, duration_seconds=plan.duration_s)
            record = collector.run(options)
            assert not fake.behaviour.script, f"minute {plan.offset}: script not used up"
            calls.append(
                Call(
                    plan,
                    clock.shift,
                    fake.requests[seen_requests:],
                    fake.served[seen_served:],
                    record,
                )
            )
    finally:
        strategy.close()
    return calls, pre_existing, reader_source(settings)


# -- what should be there -------------------------------------------------------------------------
def served_as_stored(served: dict[str, Any]) -> Stored:
    def side(levels: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
        return tuple((level["price"], level["amount"]) for level in levels)

    return Stored(int(served["sequence"]), side(served["bids"]), side(served["asks"]))


def requested_slot(grid: list[GridSlot], entry: RequestLog, shift: float) -> GridSlot:
    """The grid slot a request the fake received belongs to: the last one started by then."""
    arrived_ms = seconds_to_ms(entry.at + shift)
    slot = [slot for slot in grid if slot.at_ms <= arrived_ms][-1]
    assert slot.book == entry.book, f"{entry} arrived in {slot}, which is {slot.book}'s"
    assert arrived_ms - slot.at_ms < 60_000 / RPM / 2, f"{entry} arrived late for {slot}"
    return slot


def expected_archive(calls: list[Call], pre_existing: dict[str, Any]) -> Expected:
    stored: dict[tuple[str, int], Stored] = {}
    failures: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
    for call in calls:
        plan = call.plan
        grid = grid_minute(plan.minute, RPM, BOOKS)
        first = grid[0].number
        # Served payloads of each book, in the order the fake produced them.
        payloads = {book: iter([s for s in call.served if s["book"] == book]) for book in BOOKS}
        answered: dict[int, str] = {}
        for entry in sorted(call.requests, key=lambda e: e.at):
            slot = requested_slot(grid, entry, call.shift)
            assert slot.number not in answered, f"slot {slot} requested twice"
            answered[slot.number] = entry.fault
            note = failures[slot.book, plan.minute * MINUTE_MS]
            if entry.status == 200 and entry.fault in ("ok", "truncate"):
                payload = served_as_stored(next(payloads[slot.book]))
                if entry.fault == "ok":
                    stored[slot.book, slot.at_ms] = payload
                else:
                    note.append((iso_millis(slot.at_ms), FAILURE_REASONS[entry.fault]))
            elif entry.status == 420:
                note.append((iso_millis(slot.at_ms), "throttled"))
            else:
                note.append((iso_millis(slot.at_ms), FAILURE_REASONS[entry.fault]))
        throttled_at = min((n for n, f in answered.items() if f == "throttle"), default=None)
        window = [s for s in grid if s.at_ms < (plan.start + plan.duration_s) * 1000]
        for slot in window:
            if slot.number in answered:
                continue
            # The call planned this slot and did not request it: only after a throttle.
            assert throttled_at is not None and slot.number > throttled_at, slot
            failures[slot.book, plan.minute * MINUTE_MS].append(
                (iso_millis(slot.at_ms), "after_throttle")
            )
        # The scenario ran as planned: each slot of the window got the answer the script gave.
        script = list(plan.script) + ["ok"] * len(window)
        assert [(n - first, f) for n, f in sorted(answered.items())] == [
            (j, script[j]) for j in range(len(answered))
        ]
        if plan.duplicate_at is not None:
            slot = grid[plan.duplicate_at]
            assert (slot.book, slot.at_ms) in stored  # requested and answered, then a duplicate
            stored[slot.book, slot.at_ms] = served_as_stored(pre_existing)
    return Expected(stored, {key: notes for key, notes in failures.items() if notes})


# -- reading back ---------------------------------------------------------------------------------
def read_exact(source: str, start_ms: int, end_ms: int) -> dict[tuple[str, int], Stored]:
    """Every snapshot the reader parses, with its strings as stored."""
    src = open_source(source)
    found: dict[tuple[str, int], Stored] = {}
    for item in iter_snapshots(src, list_snapshot_names(src, start_ms, end_ms)):
        assert not isinstance(item, Corrupt), item
        found[item.book, item.slot_ms] = Stored(
            item.sequence,
            tuple(zip(item.bids.prices, item.bids.amounts, strict=True)),
            tuple(zip(item.asks.prices, item.asks.amounts, strict=True)),
        )
    return found


def as_decimals(stored: dict[tuple[str, int], Stored]) -> dict[tuple[str, int], Any]:
    def side(levels: tuple[tuple[str, str], ...]) -> list[tuple[Decimal, Decimal]]:
        return [(Decimal(price), Decimal(amount)) for price, amount in levels]

    return {key: (s.sequence, side(s.bids), side(s.asks)) for key, s in stored.items()}


def loaded_levels(source: str, start_ms: int, end_ms: int) -> tuple[Any, dict[Any, Any]]:
    """`load`'s result, and its level table regrouped per snapshot (exact Decimals)."""
    result = load(source, start_ms, end_ms, top=False)
    grouped: dict[tuple[str, int], Any] = {}
    for row in result.levels.sort("book", "slot", "side", "level").iter_rows(named=True):
        key = (row["book"], datetime_to_ms(row["slot"]))
        sequence, bids, asks = grouped.setdefault(key, (row["sequence"], [], []))
        assert row["sequence"] == sequence
        (bids if row["side"] == "bid" else asks).append((row["price"], row["amount"]))
    return result, grouped


def test_snapshots_read_back_exactly_as_served(collected: Collected) -> None:
    read = read_exact(collected.source, START_MS, END_MS)

    assert read == collected.expected.stored
    (plan,) = [plan for plan in PLANS if plan.duplicate_at is not None]
    assert plan.duplicate_at is not None
    slot = grid_minute(plan.minute, RPM, BOOKS)[plan.duplicate_at]
    assert read[slot.book, slot.at_ms] == Stored(7, (("1.10", "0.00000001"),), (("1.20", "2.50"),))
    if collected.uploads is not None:  # the collector's create really met the existing object
        key = snapshot_name(PREFIX, slot.book, slot.at_ms, plan.compression)
        assert collected.uploads[key] == ["200", "412"]


def test_load_gives_the_served_levels_as_exact_decimals(collected: Collected) -> None:
    result, levels = loaded_levels(collected.source, START_MS, END_MS)

    stored = collected.expected.stored
    assert (result.snapshots, result.corrupt, result.books) == (len(stored), [], [*BOOKS])
    assert levels == as_decimals(stored)


def test_gap_report_names_exactly_the_slots_not_stored(collected: Collected) -> None:
    report = gaps_report(collected.source, START_MS, END_MS, BOOKS, rpm=RPM)

    expected = collected.expected
    windows = {call.plan.minute * MINUTE_MS: call.plan for call in collected.calls}
    minutes = [(FIRST_MINUTE + offset) * MINUTE_MS for offset in range(MINUTES) if offset != 2]
    assert (report.run_records, report.corrupt, report.corrupt_run_records) == (3, [], [])
    # Minute 2 had no call: not collected, counted apart rather than as missing slots.
    no_call = (FIRST_MINUTE + 2) * MINUTE_MS
    assert report.not_collected == [MinuteSpan(no_call, no_call + MINUTE_MS)]
    for book in BOOKS:
        by_minute = {m.minute_ms: m for m in report.books[book].minutes}
        assert list(by_minute) == minutes
        for minute_ms, minute in by_minute.items():
            grid = grid_minute(minute_ms // MINUTE_MS, RPM, BOOKS)
            book_slots = [slot.at_ms for slot in grid if slot.book == book]
            have = [at for at in book_slots if (book, at) in expected.stored]
            assert minute.missing == [at for at in book_slots if at not in have], minute
            assert (minute.expected, minute.present) == (len(book_slots), len(have))
            assert (minute.unexpected, minute.lost, minute.corrupt) == ([], [], [])
            failed = sorted(expected.failures.get((book, minute_ms), []))
            assert sorted((f["slot"], f["reason"]) for f in minute.failures) == failed
            # Every missing slot is accounted for: it failed, or no call asked for it.
            plan = windows.get(minute_ms)
            window_end = minute_ms + plan.duration_s * 1000 if plan else minute_ms
            unasked = {at for at in book_slots if at >= window_end}
            assert set(minute.missing) == {parse_iso_millis(at) for at, _ in failed} | unasked
        assert [(m.throttled, m.run_status, m.grid_from) for m in by_minute.values()] == [
            (False, "degraded", "run_record"),
            (False, "ok", "run_record"),
            (True, "throttled", "run_record"),
        ]


def test_run_records_read_back_as_the_calls_answered(collected: Collected) -> None:
    src = open_source(collected.source)
    summaries = {}
    for call in collected.calls:
        answered = call.record.to_json()
        check_run_record(answered)
        name = run_record_name("", call.plan.minute * MINUTE_MS)
        assert json.loads(src.read(name)) == answered
        summary = call.record.summary
        assert summary is not None
        summaries[call.plan.offset] = (str(call.record.status), summary.written, summary.duplicates)

    assert summaries == {0: ("degraded", 2, 1), 1: ("ok", 3, 0), 3: ("throttled", 1, 0)}
    assert sum(w + d for _, w, d in summaries.values()) == len(collected.expected.stored)
