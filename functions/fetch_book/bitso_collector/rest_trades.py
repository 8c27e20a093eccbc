"""Bitso's `GET /v3/trades/`: the request path and the parsed page (pure).

A page comes newest first (`sort=desc`); each trade keeps the entry exactly as REST gave it, so
it can be stored as it was received, beside its id and time for choosing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitso_format import DECIMAL_PATTERN, parse_rfc3339

from .errors import MalformedReply
from .replies import reply_payload

TRADES_PATH = "/v3/trades/"
#: The largest page Bitso serves, and the one a backfill asks for.
PAGE_LIMIT = 100


def trades_path(book: str, marker: int | None = None) -> str:
    """`/v3/trades/?book=B&sort=desc&limit=100[&marker=M]`, exactly as signed and sent."""
    path = f"{TRADES_PATH}?book={book}&sort=desc&limit={PAGE_LIMIT}"
    return path if marker is None else f"{path}&marker={marker}"


@dataclass(frozen=True, slots=True)
class TradesWindow:
    """Which trades a backfill is after."""

    since_ms: int
    after_tid: int | None = None

    def holds(self, tid: int, created_ms: int) -> bool:
        if self.after_tid is not None:
            return tid > self.after_tid
        return created_ms >= self.since_ms

    def wider(self, other: TradesWindow) -> TradesWindow:
        """The window that holds both (an earlier window holds every later one)."""
        if self.after_tid is None or other.after_tid is None:
            return TradesWindow(min(self.since_ms, other.since_ms))
        return TradesWindow(
            min(self.since_ms, other.since_ms), min(self.after_tid, other.after_tid)
        )


@dataclass(frozen=True, slots=True)
class RestTrade:
    """One trade of a page: its id and time for choosing, and the entry exactly as REST gave
    it for storing."""

    tid: int
    created_ms: int
    entry: dict[str, Any]


def parse_trades_reply(status: int, body: bytes) -> list[RestTrade]:
    """The trades of a successful `GET /v3/trades/` reply; raises a `BitsoError` otherwise."""
    payload = reply_payload(status, body)
    if not isinstance(payload, list):
        raise MalformedReply("the payload is not a list of trades")
    return [_trade(index, entry) for index, entry in enumerate(payload)]


def _trade(index: int, entry: Any) -> RestTrade:
    if not isinstance(entry, dict):
        raise MalformedReply(f"trade [{index}] is not an object")
    tid, created = entry.get("tid"), entry.get("created_at")
    if not isinstance(tid, int) or isinstance(tid, bool):
        raise MalformedReply(f"trade [{index}].tid is not a whole number: {tid!r}")
    for key in ("price", "amount"):
        value = entry.get(key)
        if not (isinstance(value, str) and DECIMAL_PATTERN.fullmatch(value)):
            raise MalformedReply(f"trade [{index}].{key} is not a decimal string: {value!r}")
    try:
        created_ms = parse_rfc3339(created) if isinstance(created, str) else None
    except ValueError:
        created_ms = None
    if created_ms is None:
        raise MalformedReply(f"trade [{index}].created_at is not a time: {created!r}")
    return RestTrade(tid, created_ms, entry)
