"""Everything the instance's stream knows, shared by the socket's thread (what arrives) and the
fetching threads (what each slot is used for, what a backfill found). It lives as long as the
instance; `cut` hands over the lines and facts since the previous cut. One lock guards it all.

It is the calls' slot policy (`bitso_collector.slot_policy.SlotPolicy`) while streams are on.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from bitso_format import backfill_line, floor_hour, seconds_to_ms, stream_line

from ..clock import Clock
from ..rest_trades import RestTrade, TradesWindow
from ..slot_policy import PlannedUse
from .backfill import choose
from .objects import StreamObject
from .planner import SlotPlanner
from .protocol import DIFF_ORDERS, Kind, Received
from .record_part import Disconnect
from .tally import ChannelCut, ChannelTally

#: (book, channel, hour of receipt): one stream object of a cut.
ObjectKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Cut:
    """What one cut holds: the objects to store and the facts for the record."""

    at: float
    objects: dict[ObjectKey, StreamObject]
    channels: dict[tuple[str, str], ChannelCut]
    frozen: tuple[tuple[float, float], ...]
    connections: int
    failed_connects: int
    keepalives: int
    ignored: int
    disconnects: tuple[Disconnect, ...]
    unacknowledged: tuple[tuple[str, str], ...]


def encode_line(line: dict[str, object]) -> bytes:
    return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class StreamState:
    def __init__(
        self, books: Iterable[str], channels: Iterable[str], anchor_every_ms: int, clock: Clock
    ) -> None:
        self.books = tuple(books)
        self.channels = tuple(channels)
        self._clock = clock
        self._lock = threading.Lock()
        self._planner = SlotPlanner(self.books, self.channels, anchor_every_ms)
        keys = [(book, channel) for book in self.books for channel in self.channels]
        self._tallies = {key: ChannelTally() for key in keys}
        self._objects: dict[ObjectKey, StreamObject] = {}
        self._frozen: list[tuple[float, float]] = []
        #: The previous cut, and the latest receipt time in the lines since: a time is read
        #: before the lock is taken, so a line and a cut can race (`_stamp`, `cut`).
        self._cut_at = -math.inf
        self._latest = -math.inf
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._connections = 0
        self._failed_connects = 0
        self._keepalives = 0
        self._ignored = 0
        self._disconnects: list[Disconnect] = []
        self._unacknowledged: dict[tuple[str, str], None] = {}

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
            self._planner.live(book, channel, seconds_to_ms(at))
            self._unacknowledged.pop((book, channel), None)

    def unanswered(self, book: str, channel: str) -> None:
        with self._lock:
            if not self._tallies[(book, channel)].live:
                self._unacknowledged[(book, channel)] = None

    def lost(self, at: float, reason: str | None) -> None:
        """The connection ended at `at`; `reason` None when the instance closed it."""
        with self._lock:
            for (book, channel), tally in self._tallies.items():
                if tally.live:
                    tally.went_down(at, closed=reason is None)
                    self._planner.down(book, channel, seconds_to_ms(at))
            if reason is not None:
                self._disconnects.append(Disconnect(at, reason))

    def frozen(self, start: float, end: float) -> None:
        """The process did not run from `start`; what arrived meanwhile came in by `end`."""
        with self._lock:
            self._frozen.append((start, end))

    def received(self, item: Received, at: float) -> None:
        """One message, received at `at`: data is stored, keep-alives counted, the rest too."""
        key = (item.book or "", item.channel or "")
        if item.kind is not Kind.DATA or key not in self._tallies:
            with self._lock:
                if item.kind is Kind.KEEPALIVE:
                    self._keepalives += 1
                else:
                    self._ignored += 1
            return
        with self._lock:
            if item.trade_ids and not self._planner.streamed(key[0], item.trade_ids):
                self._tallies[key].repeated += 1
                return
            at = self._stamp(at)
            data = encode_line(stream_line(seconds_to_ms(at), item.message))
            self._object(key, at).add_encoded(data)
            gap = self._tallies[key].received(at, item.sequence)
            if item.channel == DIFF_ORDERS and gap is not None:
                self._planner.gap(key[0])

    def _stamp(self, at: float) -> float:
        """The receipt time a line is stored with (lock held): a time read before a cut that
        took the lock first is that cut's, so the line, stored in the next cut, never reads as
        received before the cut that did not hold it."""
        at = max(at, self._cut_at)
        self._latest = max(self._latest, at)
        return at

    def _object(self, key: tuple[str, str], at: float) -> StreamObject:
        object_key = (*key, floor_hour(seconds_to_ms(at)))
        stream = self._objects.get(object_key)
        if stream is None:
            stream = self._objects[object_key] = StreamObject()
        return stream

    # -- the fetching threads (the slot policy) ---------------------------------------------
    def use_for(self, book: str) -> PlannedUse:
        now_ms = seconds_to_ms(self._clock.now())
        with self._lock:
            return self._planner.use_for(book, now_ms)

    def anchored(self, planned: PlannedUse, stored: bool) -> None:
        now_ms = seconds_to_ms(self._clock.now())
        with self._lock:
            self._planner.anchored(planned, stored, now_ms)

    def backfilled(self, planned: PlannedUse, trades: list[RestTrade] | None, at: float) -> None:
        """A backfill's outcome; the trades it chose are stored as received at `at`."""
        with self._lock:
            if trades is None:
                self._planner.backfilled(planned, None)
                return
            window = planned.window or TradesWindow(0)
            page = choose(trades, window, self._planner.held_tids(planned.book))
            key = (planned.book, "trades")
            at = self._stamp(at)
            for trade in page.chosen:
                self._object(key, at).add_encoded(
                    encode_line(backfill_line(seconds_to_ms(at), trade.entry))
                )
            if key in self._tallies:
                self._tallies[key].backfilled += len(page.chosen)
            self._planner.backfilled(planned, page)

    # -- the cut ----------------------------------------------------------------------------
    def cut(self, at: float) -> Cut:
        """Everything since the previous cut, handed over; the next cut starts empty. A line
        stamped after `at` was read (before this took the lock) moves the cut to its time, so
        a cut holds exactly the lines received after the previous cut and up to its own."""
        with self._lock:
            at = max(at, self._latest)
            self._cut_at, self._latest = at, -math.inf
            frozen = [(a, min(b, at)) for a, b in self._frozen if a < at]
            self._frozen = [(max(a, at), b) for a, b in self._frozen if b > at]
            channels = {key: tally.cut(at, frozen) for key, tally in self._tallies.items()}
            cut = Cut(
                at,
                self._objects,
                channels,
                tuple(frozen),
                self._connections,
                self._failed_connects,
                self._keepalives,
                self._ignored,
                tuple(self._disconnects),
                tuple(self._unacknowledged),
            )
            self._objects = {}
            self._reset_counts()
            self._planner.forget_held()
            return cut
