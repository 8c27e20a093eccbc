"""Read exported tables back with DuckDB alone (never through bitso_archive): the questions the
dataset tests ask of them, written out here from docs/datasets.md.

Times go in and come out as epoch milliseconds; prices and amounts come out as exact Decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

TABLES = ("trades", "book_changes", "book_snapshots", "quotes", "coverage")
Level = tuple[Decimal, Decimal, int | None]  # price, amount, orders
Levels = list[Level]


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    """A connection with one view per table found under ``root/<table>/``."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for table in TABLES:
        if list((root / table).rglob("*.parquet")):
            files = f"{root / table}/*/*/*/*/*/*.parquet"
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{files}', "
                "hive_partitioning = true)"
            )
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts (through Arrow: no timezone library needed)."""
    table = con.sql(sql, params=params).to_arrow_table()
    return table.to_pylist()  # type: ignore[no-any-return]


def ms(column: str) -> str:
    return f"epoch_ms({column})"


@dataclass(frozen=True)
class CoverageSpan:
    start_ms: int
    end_ms: int
    known: bool
    reason: str


def coverage(con: duckdb.DuckDBPyConnection, book: str) -> list[CoverageSpan]:
    found = rows(
        con,
        f"SELECT {ms('start')} AS s, {ms(chr(34) + 'end' + chr(34))} AS e, known, reason "
        "FROM coverage WHERE book = $book ORDER BY start",
        book=book,
    )
    return [CoverageSpan(r["s"], r["e"], r["known"], r["reason"]) for r in found]


def span_at(spans: list[CoverageSpan], at_ms: int) -> CoverageSpan | None:
    return next((s for s in spans if s.start_ms <= at_ms < s.end_ms), None)


def book_at(
    con: duckdb.DuckDBPyConnection, book: str, at_ms: int
) -> tuple[int, list[Level], list[Level]] | None:
    """The book at ``at_ms`` from book_changes: the rows of the known span holding it, from its
    opening block up to ``at_ms``, the latest per level, the empty ones dropped. None when no
    known span holds it."""
    found = rows(
        con,
        """
        WITH span AS (
            SELECT start FROM coverage
            WHERE book = $book AND known
              AND epoch_ms(start) <= $at AND $at < epoch_ms("end")
        ), latest AS (
            SELECT side, price, amount, orders, sequence,
                   row_number() OVER (
                       PARTITION BY side, price ORDER BY local_timestamp DESC, sequence DESC
                   ) AS newest
            FROM book_changes, span
            WHERE book = $book AND local_timestamp >= span.start
              AND epoch_ms(local_timestamp) <= $at
        )
        SELECT side, price, amount, orders, (SELECT max(sequence) FROM latest) AS sequence
        FROM latest WHERE newest = 1 AND amount > 0
        ORDER BY side, CASE WHEN side = 'bid' THEN -price ELSE price END
        """,
        book=book,
        at=at_ms,
    )
    if not found:
        known = rows(
            con,
            "SELECT count(*) AS n FROM coverage WHERE book = $book AND known "
            'AND epoch_ms(start) <= $at AND $at < epoch_ms("end")',
            book=book,
            at=at_ms,
        )
        return None if not known[0]["n"] else (0, [], [])
    sequence = found[0]["sequence"]
    bids = [(r["price"], r["amount"], r["orders"]) for r in found if r["side"] == "bid"]
    asks = [(r["price"], r["amount"], r["orders"]) for r in found if r["side"] == "ask"]
    return sequence, bids, asks


def quote_at(con: duckdb.DuckDBPyConnection, book: str, at_ms: int) -> dict[str, Any] | None:
    """The quote in force at ``at_ms``: the latest at or before it inside its known span."""
    found = rows(
        con,
        """
        SELECT q.* FROM quotes q, coverage c
        WHERE q.book = $book AND c.book = $book AND c.known
          AND epoch_ms(c.start) <= $at AND $at < epoch_ms(c."end")
          AND q.local_timestamp >= c.start AND epoch_ms(q.local_timestamp) <= $at
        ORDER BY q.local_timestamp DESC, q.sequence DESC LIMIT 1
        """,
        book=book,
        at=at_ms,
    )
    return found[0] if found else None
