"""Subscription bookkeeping for one connection (pure).

Bitso acknowledges a subscribe with the channel (`type`) but not the book, and sends nothing at all
for a book it does not know. Acks are matched to subscribes in order, per channel; to keep that
match exact even when a book is never answered, at most one subscribe per channel is outstanding
at a time: the next book of a channel is subscribed when the previous one is acknowledged, or
when it has waited `ack_timeout` and is given up on (named as unanswered, never waited on again
in this connection). The channels proceed side by side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outstanding:
    book: str
    sent_at: float


class Subscriptions:
    def __init__(
        self,
        books: Iterable[str],
        channels: Iterable[str],
        ack_timeout: float,
        answer_last: Iterable[tuple[str, str]] = (),
    ) -> None:
        """`answer_last`: (book, channel) pairs that went unanswered before (on an earlier
        connection); they are subscribed after every other book of their channel."""
        late = set(answer_last)
        names = list(books)
        self.channels = tuple(channels)
        self.ack_timeout = ack_timeout
        self._queue = {
            channel: deque(
                [b for b in names if (b, channel) not in late]
                + [b for b in names if (b, channel) in late]
            )
            for channel in self.channels
        }
        self._outstanding: dict[str, Outstanding] = {}
        #: (book, channel) -> when its ack arrived.
        self.acknowledged: dict[tuple[str, str], float] = {}
        #: Subscribes given up on after `ack_timeout`, in the order they were.
        self.unanswered: list[tuple[str, str]] = []
        #: Subscribes Bitso answered with something other than "ok".
        self.rejected: list[tuple[str, str]] = []

    def to_send(self, now: float) -> list[tuple[str, str]]:
        """The (book, channel) subscribes to send now: the next book of every channel that has
        none outstanding. They count as outstanding from `now`."""
        out = []
        for channel in self.channels:
            queue = self._queue[channel]
            if channel not in self._outstanding and queue:
                book = queue.popleft()
                self._outstanding[channel] = Outstanding(book, now)
                out.append((book, channel))
        return out

    def ack(self, channel: str, now: float) -> str | None:
        """The book an ack of `channel` answers; None for an ack nothing is waiting for."""
        pending = self._outstanding.pop(channel, None)
        if pending is None:
            return None
        self.acknowledged[(pending.book, channel)] = now
        return pending.book

    def reject(self, channel: str) -> str | None:
        """The book a refused subscribe of `channel` was for; None when nothing waited."""
        pending = self._outstanding.pop(channel, None)
        if pending is None:
            return None
        self.rejected.append((pending.book, channel))
        return pending.book

    def expire(self, now: float) -> list[tuple[str, str]]:
        """Give up on the subscribes that waited `ack_timeout` or more; they are returned."""
        expired = [
            (pending.book, channel)
            for channel, pending in self._outstanding.items()
            if now - pending.sent_at >= self.ack_timeout
        ]
        for book, channel in expired:
            del self._outstanding[channel]
            self.unanswered.append((book, channel))
        return expired

    def next_expiry(self) -> float | None:
        """When the earliest outstanding subscribe times out (None when none is)."""
        if not self._outstanding:
            return None
        return min(p.sent_at for p in self._outstanding.values()) + self.ack_timeout

    @property
    def settled(self) -> bool:
        """Every subscribe has been sent and answered (or given up on)."""
        return not self._outstanding and not any(self._queue.values())
