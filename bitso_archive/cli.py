"""``python -m bitso_archive {load,gaps,compact,book,replay,trades,export,sql,plot} SOURCE ...``.

SOURCE is a local directory or ``gs://bucket[/prefix]``. Times are UTC, ISO 8601
(``2026-11-24T14:00`` or ``2026-11-24T14:00:00Z``); the end is excluded. Bad
input is an argparse error (exit 2); a failure while working, or an instant the
archive cannot know, exits 1 with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bitso_archive.layout import TimeError, parse_time
from bitso_archive.output import describe
from bitso_archive.sources import Source, SourceError, open_source
from bitso_archive.texttable import text_table
from bitso_format import (
    BITSO_LIMIT_PER_MINUTE,
    BOOK_PATTERN,
    DEFAULT_COMPACTED_PREFIX,
    DEFAULT_REQUESTS_PER_MINUTE,
    datetime_to_ms,
    iso_millis,
)

log = logging.getLogger("bitso_archive")

EXAMPLES = """\
shape: python -m bitso_archive COMMAND SOURCE --start TIME --end TIME [--books a,b]
       python -m bitso_archive book SOURCE --book B --at TIME [--depth N] [--json]
SOURCE is a directory or gs://bucket[/prefix]; times are UTC ISO 8601; the end is excluded.

examples:
  python -m bitso_archive load data --start 2026-11-24T14:00 --end 2026-11-24T15:00 \\
      --books btc_mxn --out btc.parquet
  python -m bitso_archive load gs://bucket/prefix --start 2026-11-24 --end 2026-11-25 --top
  python -m bitso_archive gaps data --start 2026-11-24T14:00 --end 2026-11-24T15:00 --png gaps.png
  python -m bitso_archive gaps data --start 2026-11-24T14:00 --end 2026-11-24T15:00 --json
  python -m bitso_archive compact data --start 2026-11-24T00:00 --end 2026-11-25T00:00
  python -m bitso_archive book data --book btc_mxn --at 2026-11-24T14:03:07.250Z --depth 10
  python -m bitso_archive replay data --book btc_mxn --start 2026-11-24T14:00 \\
      --end 2026-11-24T15:00 --every 1s --depth 10 --out top10.parquet
  python -m bitso_archive trades data --start 2026-11-24T14:00 --end 2026-11-24T15:00 \\
      --out trades.csv
  python -m bitso_archive trades data --start 2026-11-24T14:00 --end 2026-11-24T15:00 \\
      --out - | head        (--out -: CSV on stdout, for every command that writes a table)
  python -m bitso_archive export data --start 2026-11-24T14:00 --end 2026-11-24T15:00 \\
      --out tables --tables quotes,trades
  python -m bitso_archive sql tables "SELECT count(*) FROM quotes"
  python -m bitso_archive plot data --book btc_mxn --start 2026-11-24T14:00 \\
      --end 2026-11-24T14:10 --out btc.png
"""
TIME_HELP = "UTC time, ISO 8601, e.g. 2026-11-24T14:00 or 2026-11-24T14:00:00Z"
OUT_HELP = "file.csv or file.parquet, or - for CSV on stdout"
DEFAULT_DEPTH = 50
MAX_DEPTH = 100_000


def _time(text: str) -> int:
    try:
        return parse_time(text)
    except TimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO 8601 in UTC such as 2026-11-24T14:00 "
            "or 2026-11-24T14:00:00Z"
        ) from None


def _books(text: str) -> list[str]:
    books = [b.strip() for b in text.split(",") if b.strip()]
    if not books:
        raise argparse.ArgumentTypeError("give at least one book, e.g. btc_mxn,eth_mxn")
    for book in books:
        if not BOOK_PATTERN.fullmatch(book):
            raise argparse.ArgumentTypeError(
                f"{book!r} is not a book name; use lowercase names like btc_mxn "
                "([a-z0-9]+_[a-z0-9]+), comma-separated"
            )
    return list(dict.fromkeys(books))


def _rpm(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= BITSO_LIMIT_PER_MINUTE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a request rate; use a whole number from 1 to {BITSO_LIMIT_PER_MINUTE}"
        )
    return value


def _book(text: str) -> str:
    book = text.strip()
    if not BOOK_PATTERN.fullmatch(book):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a book name; use a lowercase name like btc_mxn ([a-z0-9]+_[a-z0-9]+)"
        )
    return book


def _depth(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a depth; use a whole number of levels a side from 1 to {MAX_DEPTH}"
        )
    return int(text)


_INTERVAL_RE = re.compile(r"([0-9]+)(ms|s|m|h)")
_INTERVAL_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _interval(text: str) -> int:
    match = _INTERVAL_RE.fullmatch(text.strip())
    value = int(match.group(1)) * _INTERVAL_UNIT_MS[match.group(2)] if match else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an interval; use a positive whole number with ms, s, m or h "
            "(e.g. 250ms, 1s, 5m)"
        )
    return value


def _out_path(text: str) -> Path | None:
    """``--out``: a file to write, or None for ``-`` (CSV on stdout)."""
    if text == "-":
        return None
    path = Path(text)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in .csv or .parquet, or be - for CSV on stdout"
        )
    return path


def _tables(text: str) -> tuple[str, ...]:
    from bitso_archive.datasets.tables import check_tables  # noqa: PLC0415

    try:
        return check_tables(text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _table_depth(text: str) -> int:
    from bitso_archive.datasets.tables import MAX_DEPTH  # noqa: PLC0415

    if not text.isdigit() or not 1 <= int(text) <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(
            f"{text!r} is out of range; book_snapshots take a whole number of levels a side "
            f"from 1 to {MAX_DEPTH}"
        )
    return int(text)


def _table_every(text: str) -> int:
    from bitso_archive.datasets.tables import check_every  # noqa: PLC0415

    try:
        return check_every(_interval(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _png_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text!r} must end in .png")
    return path


def build_parser() -> argparse.ArgumentParser:
    base = argparse.ArgumentParser(add_help=False)
    base.add_argument("source", help="a local directory or gs://bucket[/prefix]")
    base.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no info lines"
    )
    span = argparse.ArgumentParser(add_help=False)
    span.add_argument("--start", type=_time, required=True, help=TIME_HELP)
    span.add_argument(
        "--end", type=_time, required=True, help=TIME_HELP + " (excluded, after --start)"
    )
    common = argparse.ArgumentParser(add_help=False, parents=[base, span])
    common.add_argument(
        "--books", type=_books, default=None, help="comma-separated books (default: all found)"
    )
    one_book = argparse.ArgumentParser(add_help=False, parents=[base])
    one_book.add_argument("--book", type=_book, required=True, help="the book, e.g. btc_mxn")
    one_book.add_argument(
        "--depth",
        type=_depth,
        default=DEFAULT_DEPTH,
        help=f"levels a side, best first (default {DEFAULT_DEPTH})",
    )

    parser = argparse.ArgumentParser(
        prog="bitso-archive",
        description="Read the Bitso order book archive back: load, gaps, compact, "
        "and from the streams book, replay, trades.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="{load,gaps,compact,book,replay,trades,export,sql,plot}",
    )

    p_load = sub.add_parser(
        "load",
        parents=[common],
        help="snapshots as a table of levels (or top of book), to CSV or Parquet",
        description="One row per level (or per snapshot with --top), exact decimals.",
    )
    p_load.add_argument(
        "--out",
        type=_out_path,
        default=None,
        help=f"{OUT_HELP} (default: CSV on stdout)",
    )
    p_load.add_argument(
        "--top", action="store_true", help="best bid/ask, mid and spread per snapshot"
    )

    p_gaps = sub.add_parser(
        "gaps",
        parents=[common],
        help="expected vs present slots per book and minute",
        description="Slots expected by the grid vs snapshots present, throttled minutes, "
        "lost writes, and runs of unchanged sequence.",
    )
    p_gaps.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p_gaps.add_argument("--png", type=_png_path, default=None, help="save a heat map as PNG")
    p_gaps.add_argument(
        "--rpm",
        type=_rpm,
        default=DEFAULT_REQUESTS_PER_MINUTE,
        help="requests per minute of minutes without a run record "
        f"(default {DEFAULT_REQUESTS_PER_MINUTE})",
    )

    p_compact = sub.add_parser(
        "compact",
        parents=[common],
        help="each closed hour in range to Parquet: the levels and the research tables",
        description="Compact every hour overlapping [start, end), whole, into "
        "compacted/book=B/year=Y/month=M/day=D/hour=H/*.parquet (the snapshots' levels) and "
        "compacted/<table>/book=B/... (trades, book_changes, book_snapshots, quotes, coverage: "
        "see export) in the same source, create-only.",
    )
    p_compact.add_argument(
        "--compacted-prefix",
        default=DEFAULT_COMPACTED_PREFIX,
        help=f"folder for the Parquet files, under the source (default {DEFAULT_COMPACTED_PREFIX})",
    )

    p_book = sub.add_parser(
        "book",
        parents=[one_book],
        help="the book at one instant, rebuilt from its anchor and diffs",
        description="The aggregated book at --at, rebuilt from the latest anchor (an "
        "aggregate=false snapshot) received by then and every diff received at or before it, "
        "across cuts and instances. An instant the archive cannot know (not watched: an "
        "outage, a freeze, a crash, before a new instance, nothing recorded; after a sequence "
        "gap until the next anchor; before the first anchor) is an error (exit 1) that says "
        "why.",
    )
    p_book.add_argument("--at", type=_time, required=True, help=TIME_HELP)
    p_book.add_argument(
        "--json",
        action="store_true",
        help='print {"book", "at", "sequence", "bids": [{"price", "amount", "orders"}], "asks"}',
    )

    p_replay = sub.add_parser(
        "replay",
        parents=[one_book, span],
        help="the book at a fixed interval, one row per level, to CSV or Parquet",
        description="The book every --every from --start (end excluded), one row per level "
        "(book, at, sequence, side, level, price, amount, orders). Instants the archive "
        "cannot know get no rows; they are counted, with the spans that explain them. "
        "With --every of a minute or more, each interval's row is its first instant the "
        "archive can know (its start when known; a minute's start never is, as it comes "
        "before the minute's first anchor).",
    )
    p_replay.add_argument(
        "--every",
        type=_interval,
        default=1000,
        help="the interval, e.g. 250ms, 1s, 1m (default 1s); from 1m up, each row is the "
        "first known instant of its interval",
    )
    p_replay.add_argument("--out", type=_out_path, required=True, help=OUT_HELP)

    p_trades = sub.add_parser(
        "trades",
        parents=[common],
        help="every trade once (streamed and backfilled merged), to CSV or Parquet",
        description="Every trade made in [start, end), once, in trade id order: tid, book, "
        "created_at, received_at, price, amount, value, taker_side, maker_order, "
        "taker_order, source (stream or rest).",
    )
    p_trades.add_argument("--out", type=_out_path, required=True, help=OUT_HELP)

    from bitso_archive.datasets import tables  # noqa: PLC0415 - argparse types need it anyway

    p_export = sub.add_parser(
        "export",
        parents=[common],
        help="the research tables of a range, as Parquet, into a directory",
        description="Write the tables trades, book_changes, book_snapshots, quotes and coverage "
        "of [start, end) (the current hour included) into DIR/<table>/book=B/year=Y/month=M/"
        "day=D/hour=H/B_YYYYMMDDTHH.parquet, one file per table, book and hour, replacing "
        "those files (see docs/datasets.md). Bad input changes nothing already written.",
    )
    p_export.add_argument("--out", type=Path, required=True, help="the directory to write into")
    p_export.add_argument(
        "--tables",
        type=_tables,
        default=tables.TABLES,
        help=f"comma-separated tables (default: all: {','.join(tables.TABLES)})",
    )
    p_export.add_argument(
        "--depth",
        type=_table_depth,
        default=tables.DEFAULT_DEPTH,
        help=f"book_snapshots: levels a side (default {tables.DEFAULT_DEPTH})",
    )
    p_export.add_argument(
        "--every",
        type=_table_every,
        default=tables.DEFAULT_EVERY_MS,
        help="book_snapshots: the interval, e.g. 500ms, 1s, 1m (default 1s)",
    )

    p_sql = sub.add_parser(
        "sql",
        parents=[base],
        help="query the tables in DuckDB, the views already named",
        description="Run one SQL query (DuckDB) over the tables of an export directory, or of "
        "an archive's compacted/ (where levels is a view too): the views trades, "
        "book_changes, book_snapshots, quotes and coverage, each with the partitions book, "
        "year, month, day and hour. Times in UTC.",
    )
    p_sql.add_argument("query", help='e.g. "SELECT count(*) FROM quotes"')
    p_sql.add_argument("--csv", action="store_true", help="print CSV instead of a text table")
    p_sql.add_argument(
        "--compacted-prefix",
        default=DEFAULT_COMPACTED_PREFIX,
        help=f"in an archive, the folder of the tables (default {DEFAULT_COMPACTED_PREFIX})",
    )

    p_plot = sub.add_parser(
        "plot",
        parents=[base, span],
        help="mid, spread and trades of one book over a range, unknown spans shaded, to PNG",
        description="Draw the mid and the spread of --book from its quotes, its trades on the "
        "mid, and every span the archive cannot know shaded grey, to a PNG.",
    )
    p_plot.add_argument("--book", type=_book, required=True, help="the book, e.g. btc_mxn")
    p_plot.add_argument("--out", type=_png_path, required=True, help="file.png")
    return parser


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if "end" in args and args.end <= args.start:
        parser.error(
            f"--end ({iso_millis(args.end)}) must be after --start ({iso_millis(args.start)}); "
            "the end is excluded"
        )
    try:
        source = open_source(args.source)
    except SourceError as exc:
        parser.error(str(exc))
    _setup_logging(args.quiet)
    try:
        if args.command == "load":
            return _cmd_load(args, source)
        command = {
            "gaps": _cmd_gaps,
            "compact": _cmd_compact,
            "book": _cmd_book,
            "replay": _cmd_replay,
            "trades": _cmd_trades,
            "export": _cmd_export,
            "sql": _cmd_sql,
            "plot": _cmd_plot,
        }[args.command]
        return command(args, source)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`| head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not _is_expected(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _is_expected(exc: BaseException) -> bool:
    """Failures worth one line, not a traceback: bad data, I/O, cloud errors."""
    if isinstance(exc, ValueError | OSError | LookupError):
        return True
    return type(exc).__module__.startswith(("google.", "requests."))


def _csv_ready(frame: Any) -> Any:
    """Decimals without padding zeros (still exact), for a readable CSV."""
    import polars as pl  # noqa: PLC0415

    decimals = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Decimal)]
    return frame.with_columns(
        pl.col(name).cast(pl.String).str.replace(r"(\.[0-9]*?)0+$", "${1}").str.replace(r"\.$", "")
        for name in decimals
    )


def _cmd_load(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.loader import load  # noqa: PLC0415

    result = load(
        source,
        args.start,
        args.end,
        args.books,
        progress=not args.quiet,
        levels=not args.top,
        top=args.top,
    )
    frame = result.top if args.top else result.levels
    time_format = "%Y-%m-%dT%H:%M:%S%.3fZ"
    if args.out is None:
        sys.stdout.write(_csv_ready(frame).write_csv(datetime_format=time_format))
    elif args.out.suffix.lower() == ".parquet":
        frame.write_parquet(args.out, compression="zstd")
    else:
        _csv_ready(frame).write_csv(args.out, datetime_format=time_format)
    where = f" to {args.out}" if args.out else ""
    log.info(
        "%d snapshots of %s, %d rows%s; %d corrupt objects skipped",
        result.snapshots,
        ",".join(result.books) or "no book",
        frame.height,
        where,
        len(result.corrupt),
    )
    return 0


def _cmd_gaps(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.gaps import gaps_report  # noqa: PLC0415

    report = gaps_report(
        source, args.start, args.end, args.books, rpm=args.rpm, progress=not args.quiet
    )
    if args.json:
        print(report.to_json())
    else:
        print(report.format_table())
    if args.png:
        report.save_png(args.png)
        log.info("heat map saved to %s", args.png)
    return 0


def _cmd_compact(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.compact import LEVELS_KIND, compact_range  # noqa: PLC0415

    result = compact_range(
        source, args.start, args.end, args.books, compacted_prefix=args.compacted_prefix
    )
    for out in result.outputs:
        size = f"{out.bytes:,} bytes" if out.status == "written" else ""
        what = f"{out.snapshots} snapshots" if out.kind == LEVELS_KIND else out.kind
        print(
            f"{out.status:8} {out.object}  {what}: {out.rows} rows"
            f"{', ' + str(len(out.corrupt)) + ' corrupt' if out.corrupt else ''}  {size}".rstrip()
        )
    summary = result.as_dict()
    print(
        f"{summary['written']} written, {summary['existing']} already there, "
        f"{summary['empty']} empty, {len(result.skipped_open_hours)} open hours skipped"
    )
    return 0


def _cmd_book(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.replay import book_at  # noqa: PLC0415

    view = book_at(source, args.book, args.at, args.depth)
    if args.json:
        print(json.dumps(view.as_dict()))
        return 0
    print(
        f"{view.book} at {iso_millis(view.at_ms)}, sequence {view.sequence} (anchor {view.anchor})"
    )
    rows = [
        [side, str(number), format(level.price, "f"), format(level.amount, "f"), str(level.orders)]
        for side, levels in (("bid", view.bids), ("ask", view.asks))
        for number, level in enumerate(levels)
    ]
    headers = ["side", "level", "price", "amount", "orders"]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for cells in [headers, *rows]:
        aligned = (
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        print("  ".join(aligned).rstrip())
    return 0


def _cmd_replay(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.replay import replay, write_replay  # noqa: PLC0415

    instants = replay(source, args.book, args.start, args.end, args.every, args.depth)
    out = args.out or sys.stdout
    summary = write_replay(instants, out)
    log.info(
        "%d instants of %s: %d known (%d rows to %s), %d unknown",
        summary.instants,
        args.book,
        summary.known,
        summary.rows,
        describe(out),
        summary.instants - summary.known,
    )
    for span, count in summary.unknown.items():
        start, end = iso_millis(span.start_ms), iso_millis(span.end_ms)
        log.info("  %d unknown from %s to %s: %s", count, start, end, span.detail)
    if not summary.known:
        print(f"error: no instant of {args.book} in the range can be known", file=sys.stderr)
        return 1
    return 0


def _cmd_trades(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.trades import write_trades  # noqa: PLC0415

    out = args.out or sys.stdout
    result = write_trades(source, args.start, args.end, out, args.books)
    log.info(
        "%d trades of %s to %s (%d duplicates dropped, %d objects read, %d lines skipped)",
        result.trades,
        ",".join(sorted(result.books)) or "no book",
        describe(out),
        result.duplicates,
        result.objects,
        len(result.corrupt),
    )
    return 0


def _cmd_export(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.datasets.export import export  # noqa: PLC0415
    from bitso_archive.datasets.tables import TableOptions  # noqa: PLC0415

    options = TableOptions(args.tables, args.depth, args.every)
    result = export(source, args.start, args.end, args.out, args.books, options)
    for written in result.files:
        if written.status == "written":
            log.info(
                "%s  %s rows, %s bytes", written.object, f"{written.rows:,}", f"{written.bytes:,}"
            )
    summary = result.as_dict()
    print(
        f"{summary['written']} files written to {args.out} ({summary['rows']:,} rows, "
        f"{summary['bytes']:,} bytes) for {', '.join(result.books)}; {summary['empty']} tables "
        f"without rows; {len(result.corrupt)} corrupt objects skipped"
    )
    return 0


def _cmd_sql(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.datasets.sql import query  # noqa: PLC0415
    from bitso_archive.sources import LocalSource  # noqa: PLC0415

    if not isinstance(source, LocalSource):
        raise ValueError(
            f"sql reads local directories, not {source.url}; copy the tables here "
            "(gcloud storage cp -r) or query them in BigQuery"
        )
    result = query(source.root, args.query, args.compacted_prefix)
    if args.csv:
        import pyarrow.csv as pacsv  # noqa: PLC0415

        sink = pacsv.CSVWriter(sys.stdout.buffer, result.schema)
        sink.write_table(result)
        sink.close()
        return 0
    rows = [["" if v is None else _cell(v) for v in row.values()] for row in result.to_pylist()]
    for line in text_table(result.schema.names, rows, right=set()):
        print(line)
    print(f"({result.num_rows} rows)")
    return 0


def _cell(value: Any) -> str:
    """A value as a researcher reads it: exact decimals without padding zeros, UTC times."""
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, datetime):
        return iso_millis(datetime_to_ms(value))
    return str(value)


def _cmd_plot(args: argparse.Namespace, source: Source) -> int:
    from bitso_archive.datasets.plot import plot  # noqa: PLC0415

    drawn = plot(source, args.book, args.start, args.end, args.out)
    log.info(
        "%s to %s: %d quotes, %d trades, %d unknown spans (%.1f s)",
        args.book,
        drawn.path,
        drawn.quotes,
        drawn.trades,
        drawn.unknown_spans,
        drawn.unknown_ms / 1000,
    )
    return 0
