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


Book = tuple[int, Levels, Levels]  # sequence, bids, asks


def book_at(con: duckdb.DuckDBPyConnection, book: str, at_ms: int) -> Book | None:
    """The book at ``at_ms`` from book_changes (:func:`books_at`); None when no known span
    holds it."""
    return books_at(con, book, [at_ms]).get(at_ms)


def books_at(con: duckdb.DuckDBPyConnection, book: str, instants: list[int]) -> dict[int, Book]:
    """The book at each instant inside a known span, from book_changes: the rows of that span,
    from its opening block up to the instant, the latest per level, the empty ones dropped; its
    sequence the highest of those rows."""
    found = rows(
        con,
        """
        WITH i AS (SELECT DISTINCT unnest($instants) AS at_ms),
        span AS (
            SELECT i.at_ms, c.start FROM i JOIN coverage c
              ON c.book = $book AND c.known
             AND epoch_ms(c.start) <= i.at_ms AND i.at_ms < epoch_ms(c."end")
        ), latest AS (
            SELECT span.at_ms, side, price, amount, orders,
                   max(sequence) OVER (PARTITION BY span.at_ms) AS book_sequence,
                   row_number() OVER (
                       PARTITION BY span.at_ms, side, price
                       ORDER BY local_timestamp DESC, sequence DESC
                   ) AS newest
            FROM span JOIN book_changes b
              ON b.book = $book AND b.local_timestamp >= span.start
             AND epoch_ms(b.local_timestamp) <= span.at_ms
        )
        SELECT span.at_ms, side, price, amount, orders, book_sequence
        FROM span LEFT JOIN latest
          ON latest.at_ms = span.at_ms AND newest = 1 AND amount > 0
        ORDER BY span.at_ms, side, CASE WHEN side = 'bid' THEN -price ELSE price END
        """,
        book=book,
        instants=instants,
    )
    books: dict[int, Book] = {}
    for row in found:
        _sequence, bids, asks = books.setdefault(row["at_ms"], (0, [], []))
        if row["side"] is None:
            continue  # a known instant with no level in the book
        books[row["at_ms"]] = (row["book_sequence"], bids, asks)
        level = (row["price"], row["amount"], row["orders"])
        (bids if row["side"] == "bid" else asks).append(level)
    return books


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


def quotes_at(
    con: duckdb.DuckDBPyConnection, book: str, instants: list[int]
) -> dict[int, dict[str, Any]]:
    """:func:`quote_at` of many instants in one query: each instant inside a known span with
    the quote in force then (the latest row at or before it, within the span)."""
    found = rows(
        con,
        """
        WITH q AS (
            SELECT *, epoch_ms(local_timestamp) AS since,
                   lead(epoch_ms(local_timestamp)) OVER (ORDER BY local_timestamp, sequence)
                       AS until
            FROM quotes WHERE book = $book
        ), i AS (SELECT unnest($instants) AS at_ms)
        SELECT i.at_ms, q.* EXCLUDE (since, until) FROM i
        JOIN coverage c ON c.book = $book AND c.known
             AND epoch_ms(c.start) <= i.at_ms AND i.at_ms < epoch_ms(c."end")
        JOIN q ON q.since >= epoch_ms(c.start) AND q.since <= i.at_ms
             AND (q.until IS NULL OR i.at_ms < q.until)
        """,
        book=book,
        instants=instants,
    )
    return {row.pop("at_ms"): row for row in found}
