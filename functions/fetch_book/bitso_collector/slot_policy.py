"""What each grid slot fetches: the small interface between the core and the streams.

Every slot fetches an ordinary snapshot unless a policy says otherwise. With `STREAMS` the
instance's stream session is the policy: it may turn a book's slot into an anchor (an
`aggregate=false` snapshot that starts a diff chain) or a trades backfill (a `GET /v3/trades/`
page after a break in the trades stream). Without streams, `SNAPSHOTS_ONLY`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bitso_format import SLOT_USES

from .rest_trades import RestTrade, TradesWindow


class SlotUse(StrEnum):
    SNAPSHOT = "snapshot"
    ANCHOR = "anchor"
    TRADES_BACKFILL = "trades_backfill"


assert tuple(SlotUse) == SLOT_USES, "the run record's slot uses are defined in bitso_format"


@dataclass(frozen=True, slots=True)
class PlannedUse:
    """A slot's use, decided when it starts; handed back with its result."""

    book: str
    use: SlotUse
    #: The chain's break count when decided: a result from before a break is stale.
    epoch: int = 0
    window: TradesWindow | None = None
    marker: int | None = None


class SlotPolicy(Protocol):
    def use_for(self, book: str) -> PlannedUse:
        """Decide the use of `book`'s slot that starts now."""

    def anchored(self, planned: PlannedUse, stored: bool) -> None:
        """An anchor's reply is in and stored (`stored`), or its request failed."""

    def backfilled(self, planned: PlannedUse, trades: list[RestTrade] | None, at: float) -> None:
        """A backfill page came in at `at` (None: its request failed)."""


class SnapshotsOnly:
    """Without streams every slot is an ordinary snapshot."""

    def use_for(self, book: str) -> PlannedUse:
        return PlannedUse(book, SlotUse.SNAPSHOT)

    def anchored(self, planned: PlannedUse, stored: bool) -> None:
        """Never asked for an anchor: nothing to hear."""

    def backfilled(self, planned: PlannedUse, trades: list[RestTrade] | None, at: float) -> None:
        """Never asked for a backfill: nothing to hear."""


SNAPSHOTS_ONLY = SnapshotsOnly()
