"""Bitso's WebSocket protocol, as far as the collector speaks it (pure: no I/O).

We send `{"action": "subscribe", "book": B, "type": T}`; Bitso answers
`{"action": "subscribe", "response": "ok", "time": ms, "type": T}` (no book), sends
`{"type": "ka"}` to keep the connection alive, and data as `{"type": T, "book": B, "payload":
[...], "sent": ms}` (diff-orders also carry `"sequence": N`, rising by one per message; each
trade in a trades payload has its id in `"i"`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

TRADES = "trades"
DIFF_ORDERS = "diff-orders"
KEEPALIVE_TYPE = "ka"


class Kind(StrEnum):
    ACK = "ack"
    #: A subscribe answered with a `response` other than "ok".
    REJECTED = "rejected"
    KEEPALIVE = "keepalive"
    DATA = "data"
    #: Anything else (not JSON, an unknown shape, a channel we did not ask for).
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Received:
    """What one received message is; `message` is the decoded JSON exactly as sent."""

    kind: Kind
    message: Any
    channel: str | None = None
    book: str | None = None
    #: The diff's `sequence` (diff-orders only; None when it is not a whole number).
    sequence: int | None = None
    #: The trade ids in a trades message.
    trade_ids: tuple[int, ...] = ()


def subscribe_text(book: str, channel: str) -> str:
    return json.dumps({"action": "subscribe", "book": book, "type": channel})


def classify(text: str, channels: tuple[str, ...]) -> Received:
    """Decode one text frame and say what it is; never raises."""
    try:
        message = json.loads(text)
    except ValueError:
        return Received(Kind.OTHER, text)
    if not isinstance(message, dict):
        return Received(Kind.OTHER, message)
    kind = message.get("type")
    if message.get("action") == "subscribe":
        if kind not in channels:
            return Received(Kind.OTHER, message)
        answer = Kind.ACK if message.get("response") == "ok" else Kind.REJECTED
        return Received(answer, message, channel=kind)
    if kind == KEEPALIVE_TYPE:
        return Received(Kind.KEEPALIVE, message)
    book = message.get("book")
    if kind not in channels or not isinstance(book, str):
        return Received(Kind.OTHER, message)
    if kind == DIFF_ORDERS:
        sequence = message.get("sequence")
        whole = isinstance(sequence, int) and not isinstance(sequence, bool)
        return Received(Kind.DATA, message, kind, book, sequence if whole else None)
    return Received(Kind.DATA, message, kind, book, trade_ids=_trade_ids(message.get("payload")))


def _trade_ids(payload: Any) -> tuple[int, ...]:
    if not isinstance(payload, list):
        return ()
    return tuple(
        entry["i"]
        for entry in payload
        if isinstance(entry, dict) and isinstance(entry.get("i"), int)
    )
