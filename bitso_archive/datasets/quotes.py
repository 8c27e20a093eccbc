"""``quotes``: the best bid and ask, one row whenever either changes (price or amount), and one
at the start of every segment that can be followed (the quote in force from then on). A quote
is in force from its ``local_timestamp`` until the next row or the end of its known span
(``coverage``), whichever comes first."""

from __future__ import annotations

import pyarrow as pa

from bitso_archive.datasets.base import BookTable, column, decimal, timestamp
from bitso_archive.datasets.levelbook import LevelBook
from bitso_archive.datasets.source_adapter import ASK, BID, BookStep, LevelChange, Segment

Side = tuple[object, object] | None


def _key(level: LevelChange | None) -> Side:
    return None if level is None else (level.price, level.amount)


class QuotesTable(BookTable):
    schema = pa.schema(
        [
            timestamp("timestamp", nullable=True),
            timestamp("local_timestamp"),
            column("sequence", pa.int64()),
            decimal("bid_price", nullable=True),
            decimal("bid_amount", nullable=True),
            column("bid_orders", pa.int32(), nullable=True),
            decimal("ask_price", nullable=True),
            decimal("ask_amount", nullable=True),
            column("ask_orders", pa.int32(), nullable=True),
            column("source", pa.string()),
        ]
    )

    def __init__(self) -> None:
        super().__init__()
        self._held: tuple[Side, Side] | None = None
        self._source = ""

    def segment(self, segment: Segment, book: LevelBook) -> None:
        self._held = None
        self._source = segment.source
        if segment.opening is not None:
            self._quote(book)

    def step(self, step: BookStep, book: LevelBook) -> None:
        self._quote(book)

    def _quote(self, book: LevelBook) -> None:
        bid, ask = book.best(BID), book.best(ASK)
        key = (_key(bid), _key(ask))
        if key == self._held:
            return
        self._held = key
        self.out.add(
            (
                book.exchange_ms,
                book.local_ms,
                book.sequence,
                bid.price if bid else None,
                bid.amount if bid else None,
                bid.orders if bid else None,
                ask.price if ask else None,
                ask.amount if ask else None,
                ask.orders if ask else None,
                self._source,
            )
        )
