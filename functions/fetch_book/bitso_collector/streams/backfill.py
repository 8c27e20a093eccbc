"""The trades backfill (pure): choosing from a `GET /v3/trades/` page the trades the socket did
not deliver.

A backfill looks for the trades of a window: those after the last trade held (`after_tid`) when
the book has one, else those made at or after `since_ms`. Pages come newest first; a full page
whose oldest trade is still in the window means older trades may be missing too, so the next
page is asked for with `marker` = that tid.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rest_trades import PAGE_LIMIT, RestTrade, TradesWindow

#: A new chain (the instance's first subscription) owes the trades of the minute before it: the
#: longest hole between an instance's end and the next one's first call. Trades both instances
#: hold are dropped by readers (by id).
NEW_CHAIN_LOOKBACK_MS = 60_000
#: A lost trades subscription owes, when no trade is held yet, the trades since this long before
#: it was lost (one still on its way when the connection went).
LOOKBACK_MS = 2000


@dataclass(frozen=True, slots=True)
class BackfillPage:
    #: The trades to store, newest first as the page had them.
    chosen: tuple[RestTrade, ...]
    #: The marker of the next page to ask for; None when the window is covered.
    next_marker: int | None


def choose(page: list[RestTrade], window: TradesWindow, held: set[int]) -> BackfillPage:
    """The trades of a newest-first page that are in the window and not held yet, and whether
    an older page is still needed."""
    chosen: list[RestTrade] = []
    for trade in page:
        if not window.holds(trade.tid, trade.created_ms):
            return BackfillPage(tuple(chosen), None)
        if trade.tid not in held:
            chosen.append(trade)
    more = len(page) >= PAGE_LIMIT
    return BackfillPage(tuple(chosen), page[-1].tid if more else None)
