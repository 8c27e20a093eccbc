"""``plot``: the picture a researcher looks at first. The mid (top) and the spread (bottom) of one
book over a range, stepped from quote to quote, the trades on the mid (buys up, sells down), and
every span the archive cannot know shaded, so a hole never passes for a quiet market.

The quotes, trades and coverage drawn are the tables themselves, built by the same code as
``export``. Prices become floats only here, for drawing.
"""

from __future__ import annotations

import bisect
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bitso_archive.datasets.build import build_tables
from bitso_archive.datasets.source_adapter import books_with_data
from bitso_archive.datasets.tables import COVERAGE, QUOTES, TRADES, TableOptions
from bitso_archive.layout import TimeLike, check_books, check_range
from bitso_archive.sources import SourceLike, open_source
from bitso_format import iso_millis, ms_to_datetime


@dataclass(frozen=True)
class PlotSummary:
    """What was drawn."""

    path: Path
    quotes: int
    trades: int
    unknown_spans: int
    unknown_ms: int


def _table(built: Any, name: str) -> list[dict[str, Any]]:
    data = built.tables[name].finish()
    return [] if data is None else pq.read_table(io.BytesIO(data)).to_pylist()


def _ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def plot(source: SourceLike, book: str, start: TimeLike, end: TimeLike, out: Path) -> PlotSummary:
    """Draw ``book`` over ``[start, end)`` to the PNG ``out``."""
    import matplotlib  # noqa: PLC0415 - only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    (book,) = check_books([book]) or []
    start_ms, end_ms = check_range(start, end)
    src = open_source(source)
    if book not in books_with_data(src, start_ms, end_ms):
        raise ValueError(
            f"nothing of {book} was recorded from {iso_millis(start_ms)} to "
            f"{iso_millis(end_ms)}; nothing to draw"
        )
    built = build_tables(src, book, start_ms, end_ms, TableOptions((TRADES, QUOTES, COVERAGE)))
    quotes = [q for q in _table(built, QUOTES) if q["bid_price"] and q["ask_price"]]
    trades = _table(built, TRADES)
    spans = _table(built, COVERAGE)
    starts = [_ms(s["start"]) for s in spans]

    figure, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6), height_ratios=(3, 1), layout="constrained"
    )
    # Quotes step to the next quote, or to the end of their span: never across a hole.
    runs: dict[int, list[dict[str, Any]]] = {}
    for quote in quotes:
        index = bisect.bisect_right(starts, _ms(quote["local_timestamp"])) - 1
        runs.setdefault(index, []).append(quote)
    for index, run in runs.items():
        times = [q["local_timestamp"] for q in run] + [spans[index]["end"]]
        mids = [float(q["bid_price"] + q["ask_price"]) / 2 for q in run]
        spreads = [float(q["ask_price"] - q["bid_price"]) for q in run]
        top.step(times, [*mids, mids[-1]], where="post", color="tab:blue", linewidth=1)
        bottom.step(times, [*spreads, spreads[-1]], where="post", color="tab:gray", linewidth=1)
    largest = max((float(t["amount"]) for t in trades), default=1.0)
    for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
        chosen = [t for t in trades if t["taker_side"] == side]
        top.scatter(
            [t["timestamp"] for t in chosen],
            [float(t["price"]) for t in chosen],
            s=[8 + 40 * float(t["amount"]) / largest for t in chosen],  # area by amount
            marker=marker,
            color=color,
            label=f"{side} trades ({len(chosen)})",
            zorder=3,
        )
    unknown = [s for s in spans if not s["known"]]
    for axis in (top, bottom):
        for span in unknown:
            axis.axvspan(span["start"], span["end"], color="0.85", linewidth=0, zorder=0)
    top.set_ylabel("mid")
    bottom.set_ylabel("spread")
    top.set_title(
        f"{book} from {iso_millis(start_ms)} to {iso_millis(end_ms)} "
        f"(grey: unknown, {len(unknown)} spans)"
    )
    top.set_xlim(ms_to_datetime(start_ms), ms_to_datetime(end_ms))
    if trades:
        top.legend(loc="upper left")
    figure.savefig(out, format="png", dpi=100)
    plt.close(figure)
    unknown_ms = sum(_ms(s["end"]) - _ms(s["start"]) for s in unknown)
    return PlotSummary(out, len(quotes), len(trades), len(unknown), unknown_ms)
