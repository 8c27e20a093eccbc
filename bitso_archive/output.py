"""Where a command's table goes: a ``.csv`` or ``.parquet`` file, or CSV on a text stream
(``--out -``: standard output), so every table can be piped."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeGuard

#: A file named ``.csv`` or ``.parquet``, or an open text stream that takes CSV.
TableOut = Path | TextIO


def is_parquet(out: TableOut) -> TypeGuard[Path]:
    return isinstance(out, Path) and out.suffix.lower() == ".parquet"


def describe(out: TableOut) -> str:
    """``out`` as a log line names it."""
    return str(out) if isinstance(out, Path) else "stdout"


@contextmanager
def csv_rows(out: TableOut) -> Iterator[Any]:
    """A ``csv.writer`` on ``out``: the file, created anew, or the stream (left open)."""
    if isinstance(out, Path):
        with out.open("w", newline="", encoding="utf-8") as handle:
            yield csv.writer(handle)
        return
    yield csv.writer(out)
    out.flush()
