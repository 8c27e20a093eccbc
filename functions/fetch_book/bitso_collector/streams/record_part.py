"""The run record's `streams` part (typed, built once per cut, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitso_format import iso_millis, seconds_to_ms

from .tally import ChannelCut


def _iso(at: float | None) -> str | None:
    return None if at is None else iso_millis(seconds_to_ms(at))


def _span(start: float, end: float) -> dict[str, Any]:
    return {"from": _iso(start), "to": _iso(end)}


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """One book's channel in one cut, and the objects that stored it."""

    cut: ChannelCut
    objects: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        cut = self.cut
        return {
            "messages": cut.messages,
            "first_sequence": cut.first_sequence,
            "last_sequence": cut.last_sequence,
            "sequence_gaps": [{"after": g.after, "next": g.next} for g in cut.sequence_gaps],
            "reconnects": cut.reconnects,
            "uncovered_ms": cut.uncovered_ms,
            "backfilled": cut.backfilled,
            "repeated": cut.repeated,
            "objects": list(self.objects),
            "covers": None if cut.covers is None else _span(*cut.covers),
            "first_received": _iso(cut.first_received),
            "last_received": _iso(cut.last_received),
            "continuous": cut.continuous,
            "unwatched": [{**_span(u.start, u.end), "reason": u.reason} for u in cut.unwatched],
        }


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A live connection that ended (not closed by the instance itself)."""

    at: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"at": _iso(self.at), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class LostObject:
    """A stream object that could not be stored (the call answers 500, as for a snapshot)."""

    book: str
    channel: str
    object: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "book": self.book,
            "channel": self.channel,
            "object": self.object,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class StreamsSummary:
    channels: tuple[str, ...]
    instance: str
    instance_started_at: float
    cut_at: float
    #: Spans since the previous cut when the process did not run.
    frozen: tuple[tuple[float, float], ...]
    #: Connections opened since the previous cut, and attempts that did not open.
    connections: int
    failed_connects: int
    keepalives: int
    #: Messages that were neither data, acks nor keep-alives (counted, not stored).
    ignored: int
    disconnects: tuple[Disconnect, ...]
    #: Subscriptions Bitso never acknowledged (e.g. a book it does not know), or refused.
    unacknowledged: tuple[tuple[str, str], ...]
    books: dict[str, dict[str, ChannelSummary]]
    lost: tuple[LostObject, ...] = ()

    def _channels(self) -> list[ChannelCut]:
        return [c.cut for channels in self.books.values() for c in channels.values()]

    @property
    def messages(self) -> int:
        return sum(c.messages for c in self._channels())

    @property
    def gaps(self) -> int:
        return sum(len(c.sequence_gaps) for c in self._channels())

    @property
    def reconnects(self) -> int:
        return max((c.reconnects for c in self._channels()), default=0)

    @property
    def backfilled(self) -> int:
        return sum(c.backfilled for c in self._channels())

    @property
    def continuous(self) -> bool:
        """Every subscription ran on from the previous cut without a break."""
        return all(c.continuous and not c.unwatched for c in self._channels())

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "instance_started_at": _iso(self.instance_started_at),
            "cut_at": _iso(self.cut_at),
            "frozen": [_span(a, b) for a, b in self.frozen],
            "channels": list(self.channels),
            "connections": self.connections,
            "failed_connects": self.failed_connects,
            "keepalives": self.keepalives,
            "ignored": self.ignored,
            "disconnects": [d.to_json() for d in self.disconnects],
            "unacknowledged": [{"book": b, "channel": c} for b, c in self.unacknowledged],
            "books": {
                book: {channel: c.to_json() for channel, c in channels.items()}
                for book, channels in self.books.items()
            },
            "lost": [lost.to_json() for lost in self.lost],
        }
