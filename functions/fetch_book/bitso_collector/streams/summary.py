"""The run record's `streams` part (typed, built once, pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitso_format import iso_millis, seconds_to_ms

from .tally import SequenceGap


@dataclass(frozen=True, slots=True)
class ChannelSummary:
    """One book's channel in one call."""

    messages: int
    first_sequence: int | None
    last_sequence: int | None
    sequence_gaps: tuple[SequenceGap, ...]
    reconnects: int
    uncovered_ms: int
    backfilled: int
    #: The stream object's name; None when none was stored.
    object: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "sequence_gaps": [{"after": g.after, "next": g.next} for g in self.sequence_gaps],
            "reconnects": self.reconnects,
            "uncovered_ms": self.uncovered_ms,
            "backfilled": self.backfilled,
            "object": self.object,
        }


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A live connection that ended before the call stopped fetching."""

    at: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"at": iso_millis(seconds_to_ms(self.at)), "reason": self.reason}


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
    #: Connections opened (the first included), and attempts that did not open.
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

    @property
    def messages(self) -> int:
        return sum(c.messages for channels in self.books.values() for c in channels.values())

    @property
    def gaps(self) -> int:
        return sum(
            len(c.sequence_gaps) for channels in self.books.values() for c in channels.values()
        )

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    @property
    def backfilled(self) -> int:
        return sum(c.backfilled for channels in self.books.values() for c in channels.values())

    def to_json(self) -> dict[str, Any]:
        return {
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
