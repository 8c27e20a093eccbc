"""The collector's WebSocket client against the fake Bitso socket: everything sent is kept once
and in order, and every fault (a dropped diff, a cut, a silence, a burst, a book Bitso does not
know, refused connections) ends in the run record, never in a hang."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bitso_collector.clock import SystemClock
from bitso_collector.slot_policy import SlotUse
from bitso_collector.streams.backfill import NEW_CHAIN_LOOKBACK_MS
from bitso_collector.streams.client import SocketOptions, StreamSocket
from bitso_collector.streams.record_part import StreamsSummary
from bitso_collector.streams.session import summarise
from bitso_collector.streams.state import Cut, StreamState
from bitso_format import parse_iso_millis
from bitso_testkit.fake_ws import FakeBitsoWs
from bitso_testkit.market import Exchange

BOOKS = ("btc_mxn", "eth_mxn")
CHANNELS = ("trades", "diff-orders")
#: Shorter than the contract's 10 s so a test of silence takes a second, not ten.
SILENCE_S = 0.8
#: The fake's market stops this long before a run ends.
QUIET_S = 0.15


@pytest.fixture
def fake() -> Iterator[FakeBitsoWs]:
    exchange = Exchange(BOOKS, seed=4, start_ms=int(time.time() * 1000))
    with FakeBitsoWs(exchange, rate=60, keepalive_s=0.2) as socket:
        yield socket


class Run:
    """One socket session of `seconds` against the fake, with faults at given times."""

    def __init__(
        self, fake: FakeBitsoWs | str, books: tuple[str, ...] = BOOKS, **options: Any
    ) -> None:
        self.fake = fake if isinstance(fake, FakeBitsoWs) else None
        url = fake.url if isinstance(fake, FakeBitsoWs) else fake
        clock = SystemClock()
        self.start = clock.now()
        self.state = StreamState(books, CHANNELS, 15 * 60_000, clock)
        self.cut: Cut | None = None
        defaults: dict[str, Any] = {"silence_s": SILENCE_S, "ack_timeout_s": 0.5}
        self.socket = StreamSocket(
            SocketOptions(url, books, CHANNELS, **{**defaults, **options}), self.state, clock
        )

    def go(self, seconds: float, faults: tuple[tuple[float, Any], ...] = ()) -> StreamsSummary:
        """Run until `seconds` after the start (the deadline), applying each fault at its time."""
        self.socket.start(self.start + seconds)
        for at, fault in (*faults, (seconds - QUIET_S, self.quiet)):
            time.sleep(max(0.0, self.start + at - time.time()))
            fault()
        time.sleep(max(0.0, self.start + seconds - time.time()))
        self.socket.stop(timeout=5)
        self.ended = time.time()
        assert self.socket._thread is not None and not self.socket._thread.is_alive()
        self.cut = self.state.cut(time.time())
        return summarise(self.cut, {}, self.state, "0a1b2c3d", self.start)

    def quiet(self) -> None:
        """The market stops just before the deadline, so nothing is in flight at the end."""
        if self.fake is not None:
            self.fake.set_rate(0)

    def lines(self, book: str, channel: str) -> list[dict[str, Any]]:
        assert self.cut is not None
        lines = []
        for key in sorted(k for k in self.cut.objects if k[:2] == (book, channel)):
            data = self.cut.objects[key].finish()
            lines += [json.loads(line) for line in gzip.decompress(data).splitlines()]
        return lines


def sent(fake: FakeBitsoWs, book: str, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.sent_to() if m["book"] == book and m["type"] == channel]


def test_every_message_is_stored_once_in_order_with_its_receipt_time(fake: FakeBitsoWs) -> None:
    run = Run(fake)
    uses = []
    summary = run.go(1.5, ((1.0, lambda: uses.extend(run.state.use_for(b).use for b in BOOKS)),))
    for book in BOOKS:
        for channel in CHANNELS:
            lines = run.lines(book, channel)
            assert [line["message"] for line in lines] == sent(fake, book, channel)
            stamps = [parse_iso_millis(line["received_at"]) for line in lines]
            assert stamps == sorted(stamps)
            assert all(run.start * 1000 - 1 <= s <= run.ended * 1000 for s in stamps)
            assert summary.books[book][channel].cut.messages == len(lines)
    diffs = summary.books["btc_mxn"]["diff-orders"].cut
    assert diffs.messages > 20 and diffs.sequence_gaps == ()
    assert diffs.first_sequence == sent(fake, "btc_mxn", "diff-orders")[0]["sequence"]
    assert (summary.connections, summary.reconnects, summary.unacknowledged) == (1, 0, ())
    assert summary.keepalives >= 4 and summary.ignored == 0
    assert all(c.cut.uncovered_ms < 300 for b in summary.books.values() for c in b.values())
    assert uses == [SlotUse.ANCHOR, SlotUse.ANCHOR]  # once acknowledged, a book's slot anchors


def test_a_dropped_diff_is_a_gap_and_unanchors_the_book(fake: FakeBitsoWs) -> None:
    run = Run(fake)
    anchors = []

    def anchor_then_drop() -> None:
        planned = run.state.use_for("eth_mxn")
        run.state.anchored(planned, stored=True)
        anchors.append(planned.use)
        fake.drop_diffs(1, "eth_mxn")

    later = []
    summary = run.go(
        1.5, ((0.6, anchor_then_drop), (1.2, lambda: later.append(run.state.use_for("eth_mxn"))))
    )
    [(dropped_book, dropped)] = fake.stats.dropped
    assert dropped_book == "eth_mxn"
    gaps = summary.books["eth_mxn"]["diff-orders"].cut.sequence_gaps
    assert anchors == [SlotUse.ANCHOR]
    assert [(g.after, g.next) for g in gaps] == [(dropped - 1, dropped + 1)]
    assert summary.books["btc_mxn"]["diff-orders"].cut.sequence_gaps == ()
    assert [p.use for p in later] == [SlotUse.ANCHOR]  # re-anchored on the book's next slot
    stored = [line["message"]["sequence"] for line in run.lines("eth_mxn", "diff-orders")]
    assert dropped not in stored and stored == sorted(stored)


def test_a_cut_connection_is_reopened_at_once_and_resubscribed(fake: FakeBitsoWs) -> None:
    run = Run(fake)
    before: list[Any] = []
    after: list[Any] = []

    def settle_book() -> None:
        anchor = run.state.use_for("btc_mxn")
        run.state.anchored(anchor, stored=True)
        backfill = run.state.use_for("btc_mxn")
        run.state.backfilled(backfill, None, time.time())  # still owed: the new chain's window
        before.extend([anchor.use, backfill.use])

    def uses() -> None:
        after.extend([run.state.use_for("btc_mxn"), run.state.use_for("btc_mxn")])

    summary = run.go(2.0, ((0.5, settle_book), (0.8, fake.cut), (1.4, uses)))
    assert summary.connections == 2 and fake.stats.connections == 2
    assert [d.reason for d in summary.disconnects] in (["closed"], ["error"])
    assert summary.disconnects[0].at - run.start == pytest.approx(0.8, abs=0.2)
    for book in BOOKS:
        for channel in CHANNELS:
            entry = summary.books[book][channel].cut
            assert entry.reconnects == 1
            assert 0 < entry.uncovered_ms < 500  # reopened at once: only the handshake missed
            assert [line["message"] for line in run.lines(book, channel)] == sent(
                fake, book, channel
            )
    assert before == [SlotUse.ANCHOR, SlotUse.TRADES_BACKFILL]
    # the reconnect leaves the book unanchored, and owing the trades of the outage
    assert [p.use for p in after] == [SlotUse.ANCHOR, SlotUse.TRADES_BACKFILL]
    window = after[1].window
    assert window is not None and window.after_tid is None  # the wider window, still owed
    assert window.since_ms <= run.start * 1000 - NEW_CHAIN_LOOKBACK_MS + 1000


@pytest.mark.slow
def test_a_silent_connection_is_taken_for_dead_and_reopened(fake: FakeBitsoWs) -> None:
    run = Run(fake)
    summary = run.go(3.0, ((0.5, lambda: fake.silence(1.0)),))
    [lost] = summary.disconnects
    assert lost.reason == "silent"
    assert lost.at - run.start == pytest.approx(0.5 + SILENCE_S, abs=0.3)
    assert summary.connections == 2
    assert summary.books["btc_mxn"]["trades"].cut.reconnects == 1


def test_a_burst_is_stored_whole_and_in_order(fake: FakeBitsoWs) -> None:
    fake.set_rate(0)
    run = Run(fake)
    summary = run.go(2.0, ((0.5, lambda: fake.burst(3000)),))
    assert fake.stats.changes == 3000
    total = 0
    for book in BOOKS:
        sequences = [line["message"]["sequence"] for line in run.lines(book, "diff-orders")]
        assert sequences == list(range(sequences[0], sequences[0] + 1500))
        total += len(sequences) + len(run.lines(book, "trades"))
    assert total == summary.messages == len(fake.sent_to()) > 3000


def test_a_book_bitso_does_not_know_is_named_and_delays_no_other(fake: FakeBitsoWs) -> None:
    run = Run(fake, books=("nope_mxn", "btc_mxn"))
    started = time.time()
    summary = run.go(1.5)
    assert time.time() - started < 3  # never a hang
    assert set(summary.unacknowledged) == {("nope_mxn", "trades"), ("nope_mxn", "diff-orders")}
    assert summary.books["nope_mxn"]["trades"].cut.messages == 0
    assert summary.books["nope_mxn"]["trades"].cut.covers is None  # never acknowledged
    known = summary.books["btc_mxn"]["diff-orders"].cut
    assert known.messages > 0
    assert known.covers is not None and known.covers[0] - run.start < 0.5 + 0.3  # one ack timeout
    assert run.state.use_for("nope_mxn").use is SlotUse.SNAPSHOT  # no anchor without an ack


@pytest.mark.slow
def test_refused_connections_back_off_up_to_the_cap_and_stop_at_the_deadline(
    fake: FakeBitsoWs,
) -> None:
    fake.refuse(2.5)
    run = Run(fake, max_backoff_s=0.5, first_backoff_s=0.1)
    summary = run.go(3.5)
    # tries at 0, 0.1, 0.3, 0.7, 1.2, 1.7, 2.2 are refused; the one at 2.7 opens
    assert summary.failed_connects == fake.stats.refused
    assert 5 <= summary.failed_connects <= 8
    assert summary.connections == 1
    covers = summary.books["btc_mxn"]["trades"].cut.covers
    assert covers is not None and 2.5 <= covers[0] - run.start <= 3.2  # watched from the ack
    assert time.time() - run.ended < 1


def test_nothing_listening_ends_at_the_deadline_without_a_hang() -> None:
    from bitso_testkit.processes import free_port

    run = Run(f"ws://127.0.0.1:{free_port()}/")
    summary = run.go(1.2)
    assert run.ended - run.start < 2.5
    assert summary.connections == 0 and summary.failed_connects >= 3
    assert summary.books["btc_mxn"]["diff-orders"].cut.covers is None
