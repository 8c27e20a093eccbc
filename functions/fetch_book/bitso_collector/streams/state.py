"""Everything one call's streams know, shared by the socket's thread (what arrives) and the
fetching threads (what each slot is used for, what a backfill found). One lock guards the
bookkeeping; lines go into their objects outside it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from bitso_format import backfill_line, seconds_to_ms, stream_line

from .backfill import BackfillPage
from .objects import StreamObject
from .planner import PlannedUse, SlotPlanner
from .protocol import DIFF_ORDERS, Kind, Received
from .summary import ChannelSummary, Disconnect, LostObject, StreamsSummary
from .tally import ChannelTally, uncovered_ms
from .writer import ObjectResult


class StreamState:
    def __init__(self, books: Iterable[str], channels: Iterable[str], minute_start_ms: int) -> None:
        self.books = tuple(books)
        self.channels = tuple(channels)
        self._lock = threading.Lock()
        self._planner = SlotPlanner(self.books, self.channels, minute_start_ms)
        keys = [(book, channel) for book in self.books for channel in self.channels]
        self._tallies = {key: ChannelTally() for key in keys}
        self.objects: dict[tuple[str, str], StreamObject] = {key: StreamObject() for key in keys}
        self._connections = 0
        self._failed_connects = 0
        self._keepalives = 0
        self._ignored = 0
        self._disconnects: list[Disconnect] = []
        self._unacknowledged: dict[tuple[str, str], None] = {}
        #: Set when the call stops recording: a message still arriving is dropped, not stored.
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    # -- the socket thread ------------------------------------------------------------------
    def connected(self) -> None:
        with self._lock:
            self._connections += 1

    def connect_failed(self) -> None:
        with self._lock:
            self._failed_connects += 1

    def acknowledged(self, book: str, channel: str, at: float) -> None:
        with self._lock:
            self._tallies[(book, channel)].went_live(at)
            self._planner.live(book, channel)
            self._unacknowledged.pop((book, channel), None)

    def unanswered(self, book: str, channel: str) -> None:
        with self._lock:
            if self._tallies[(book, channel)].acks == 0:
                self._unacknowledged[(book, channel)] = None

    def lost(self, at: float, reason: str | None) -> None:
        """The connection ended at `at`; `reason` None when the call closed it (not an outage)."""
        with self._lock:
            for (book, channel), tally in self._tallies.items():
                if tally.live_since is not None:
                    tally.went_down(at)
                    self._planner.down(book, channel)
            if reason is not None:
                self._disconnects.append(Disconnect(at, reason))

    def received(self, item: Received, at: float) -> None:
        """One message, received at `at`: data is stored, keep-alives counted, the rest too."""
        if item.kind is Kind.KEEPALIVE:
            with self._lock:
                self._keepalives += 1
            return
        if self._closed.is_set():
            return
        key = (item.book or "", item.channel or "")
        if item.kind is not Kind.DATA or key not in self.objects:
            with self._lock:
                self._ignored += 1
            return
        if not self.objects[key].add(stream_line(seconds_to_ms(at), item.message)):
            return
        book = key[0]
        with self._lock:
            tally = self._tallies[key]
            tally.messages += 1
            if item.channel == DIFF_ORDERS and item.sequence is not None:
                if tally.sequence.observe(item.sequence) is not None:
                    self._planner.gap(book)
            elif item.trade_ids:
                self._planner.held(book, item.trade_ids)

    # -- the fetching threads ---------------------------------------------------------------
    def use_for(self, book: str) -> PlannedUse:
        with self._lock:
            return self._planner.use_for(book)

    def anchored(self, planned: PlannedUse, stored: bool) -> None:
        with self._lock:
            self._planner.anchored(planned, stored)

    def held_tids(self, book: str) -> set[int]:
        with self._lock:
            return self._planner.held_tids(book)

    def backfilled(self, planned: PlannedUse, page: BackfillPage | None, at: float) -> None:
        """A backfill's outcome; the trades it chose are stored as received at `at`."""
        added = 0
        if page is not None:
            stored = self.objects[(planned.book, "trades")]
            for trade in page.chosen:
                added += stored.add(backfill_line(seconds_to_ms(at), trade.entry))
        with self._lock:
            self._tallies[(planned.book, "trades")].backfilled += added
            self._planner.backfilled(planned, page)

    # -- the end of the call ----------------------------------------------------------------
    def to_store(self) -> dict[tuple[str, str], StreamObject]:
        """The objects to store: every (book, channel) that was subscribed or holds lines."""
        with self._lock:
            keys = [k for k, tally in self._tallies.items() if tally.acks or tally.backfilled]
        return {k: self.objects[k] for k in self.objects if k in keys or self.objects[k].lines}

    def summary(
        self, window: tuple[float, float], results: Mapping[tuple[str, str], ObjectResult]
    ) -> StreamsSummary:
        """The record's part: coverage measured over `window` (the first slot to the fetch
        deadline), `results` saying what became of each object stored."""
        start, end = window
        with self._lock:
            books = {
                book: {
                    channel: self._channel(
                        self._tallies[(book, channel)], start, end, results.get((book, channel))
                    )
                    for channel in self.channels
                }
                for book in self.books
            }
            lost = tuple(
                LostObject(book, channel, result.name, result.reason)
                for (book, channel), result in results.items()
                if not result.stored
            )
            return StreamsSummary(
                channels=self.channels,
                connections=self._connections,
                failed_connects=self._failed_connects,
                keepalives=self._keepalives,
                ignored=self._ignored,
                disconnects=tuple(self._disconnects),
                unacknowledged=tuple(self._unacknowledged),
                books=books,
                lost=lost,
            )

    @staticmethod
    def _channel(
        tally: ChannelTally, start: float, end: float, result: ObjectResult | None
    ) -> ChannelSummary:
        return ChannelSummary(
            messages=tally.messages,
            first_sequence=tally.sequence.first,
            last_sequence=tally.sequence.last,
            sequence_gaps=tuple(tally.sequence.gaps),
            reconnects=tally.reconnects,
            uncovered_ms=uncovered_ms(tally.coverage(end), start, end),
            backfilled=tally.backfilled,
            object=result.name if result is not None and result.stored else None,
        )
