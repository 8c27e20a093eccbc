"""Fetching one slot, the part every strategy shares: which path it asks for, and how the reply
(or the error raised instead of one) becomes the slot's recorder call.

Strategies differ only in how they wait on the client's `get(path, timeout)`, so a slot fails,
replies or backfills alike whichever strategy fetched it.
"""

from __future__ import annotations

from ..bitso_client import order_book_path
from ..errors import BitsoError, unexpected
from ..grid import Slot
from ..recorder import SlotStart
from ..replies import parse_order_book_reply
from ..rest_trades import parse_trades_reply, trades_path
from .base import FetchJob

#: What a client's `get` returns: the reply's status and body.
Reply = tuple[int, bytes]


def slot_path(slot: Slot, start: SlotStart) -> str:
    """The path (with query) the slot's request GETs: a trades page or the order book."""
    if start.backfill:
        return trades_path(slot.book, start.use.marker)
    return order_book_path(slot.book, start.aggregate)


def settle_slot(job: FetchJob, slot: Slot, start: SlotStart, reply: Reply | Exception) -> None:
    """Reads the reply to `slot_path` and reports it to the recorder: `backfilled` or `replied`,
    else `failed` with the `BitsoError` the client or the parser raised.

    Any other error (a bug) fails its slot as `unexpected`, logged, rather than vanish in a pool
    thread or a task. The reply counts as received once it is parsed.
    """
    try:
        if isinstance(reply, Exception):
            raise reply
        if start.backfill:
            trades = parse_trades_reply(*reply)
            job.recorder.backfilled(slot, start, job.clock.now(), trades)
            return
        payload = parse_order_book_reply(*reply)
    except BitsoError as error:
        job.recorder.failed(slot, error, start)
        return
    except Exception as error:
        job.recorder.failed(slot, unexpected(error), start)
        return
    job.recorder.replied(slot, start, job.clock.now(), payload)
