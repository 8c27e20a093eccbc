"""``export``: the tables of any range (the current hour included) into a local directory, and
``compact``'s part: the tables of one ended hour into the archive. Both go through
:func:`~bitso_archive.datasets.build.write_book_hour`, a book and an hour at a time, so memory
is bounded by one book-hour however long the range.

Bad input is refused before anything is written: an unknown table, a depth or interval out of
range (:class:`~bitso_archive.datasets.tables.TableOptions`), a range that is empty or holds
nothing recorded, an output directory that cannot be written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitso_archive.datasets.build import ArchiveSink, DirectorySink, TableFile, write_book_hour
from bitso_archive.datasets.source_adapter import books_with_data
from bitso_archive.datasets.tables import TableOptions
from bitso_archive.layout import TimeLike, check_books, check_range, hours_in_range
from bitso_archive.snapshots import Corrupt
from bitso_archive.sources import Source, SourceLike, open_source
from bitso_format import HOUR_MS, iso_millis


class NothingRecordedError(ValueError):
    """The range holds nothing of the books asked for."""


class OutputDirectoryError(ValueError):
    """The output directory cannot be created or written into."""


@dataclass
class ExportResult:
    """The files written (or found empty) and the objects skipped as corrupt."""

    out: str
    books: list[str]
    files: list[TableFile] = field(default_factory=list)
    corrupt: list[Corrupt] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "books": self.books,
            "written": self.count("written"),
            "empty": self.count("empty"),
            "rows": sum(f.rows for f in self.files),
            "bytes": sum(f.bytes for f in self.files),
            "corrupt": [c.as_dict() for c in self.corrupt],
            "files": [f.as_dict() for f in self.files],
        }


def writable_directory(path: Path) -> Path:
    """``path`` as a directory that exists and can be written into (created if missing)."""
    if path.exists() and not path.is_dir():
        raise OutputDirectoryError(f"--out {str(path)!r} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputDirectoryError(
            f"--out {str(path)!r} cannot be written ({reason}); give a directory you can write"
        ) from None
    return path


def export(
    source: SourceLike,
    start: TimeLike,
    end: TimeLike,
    out: str | os.PathLike[str],
    books: Iterable[str] | None = None,
    options: TableOptions | None = None,
) -> ExportResult:
    """Write ``options.tables`` of ``books`` (default: every book recorded in the range) over
    ``[start, end)`` into ``out/<table>/book=B/year=/month=/day=/hour=/B_YYYYMMDDTHH.parquet``,
    replacing those files; an hour cut by the range holds only its part of the range."""
    src = open_source(source)
    start_ms, end_ms = check_range(start, end)
    wanted = check_books(books)
    options = options or TableOptions()
    recorded = books_with_data(src, start_ms, end_ms)
    chosen = [book for book in (wanted or recorded) if book in recorded]
    if not chosen:
        which = ", ".join(wanted) if wanted else "any book"
        raise NothingRecordedError(
            f"nothing of {which} was recorded from {iso_millis(start_ms)} to "
            f"{iso_millis(end_ms)} (no snapshots, diffs or trades); nothing written"
        )
    sink = DirectorySink(writable_directory(Path(out)))
    result = ExportResult(str(out), chosen)
    for hour_ms in hours_in_range(start_ms, end_ms):
        span = (max(start_ms, hour_ms), min(end_ms, hour_ms + HOUR_MS))
        present = set(books_with_data(src, *span))
        for book in chosen:
            if book in present:
                written = write_book_hour(src, book, hour_ms, span, options, sink)
                result.files.extend(written.files)
                result.corrupt.extend(written.corrupt)
    return result


def compact_tables(
    src: Source, hour_ms: int, books: list[str] | None, compacted_prefix: str
) -> dict[str, tuple[list[TableFile], list[Corrupt]]]:
    """``compact``'s part: every table of every book recorded in the hour (default options),
    created under ``compacted_prefix`` in the archive; files already there are left alone."""
    span = (hour_ms, hour_ms + HOUR_MS)
    recorded = books_with_data(src, *span)
    chosen = [book for book in recorded if books is None or book in books]
    sink = ArchiveSink(src)
    done: dict[str, tuple[list[TableFile], list[Corrupt]]] = {}
    for book in chosen:
        written = write_book_hour(src, book, hour_ms, span, TableOptions(), sink, compacted_prefix)
        done[book] = (written.files, written.corrupt)
    return done
