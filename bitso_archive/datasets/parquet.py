"""Rows to one Parquet file's bytes, a batch at a time (pyarrow only, as ``compact_hour`` has).

Decimals are exact DECIMAL(38, 9): a value that would need rounding raises
:class:`~bitso_archive.table.DecimalRangeError` naming the column and the value, never rounds.
Times are epoch milliseconds stored as TIMESTAMP(ms, UTC). Times and sequences are delta
encoded and everything else dictionary encoded, then zstd: what makes a book-hour of changes
smaller than the gzip stream objects it came from.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from bitso_archive.table import DECIMAL, PRECISION, SCALE, DecimalRangeError

#: Rows held before they go out as one row group.
BATCH_ROWS = 131_072
ZSTD_LEVEL = 9


def _is_delta(field: pa.Field) -> bool:
    return bool(pa.types.is_timestamp(field.type) or pa.types.is_int64(field.type))


def _array(values: tuple[Any, ...], field: pa.Field) -> pa.Array:
    if field.type != DECIMAL:
        return pa.array(values, field.type)
    try:
        return pa.array(values, DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        bad = next(v for v in values if v is not None and not _fits(v))
        raise DecimalRangeError(
            f"{field.name} {bad} does not fit DECIMAL({PRECISION},{SCALE}) exactly"
        ) from None


def _fits(value: Decimal) -> bool:
    try:
        pa.array([value], DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False
    return True


class ParquetRows:
    """Collects rows (tuples in the schema's column order) into one Parquet file in memory."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows = 0
        self._pending: list[tuple[Any, ...]] = []
        self._sink = pa.BufferOutputStream()
        self._writer: pq.ParquetWriter | None = None

    def add(self, row: tuple[Any, ...]) -> None:
        self._pending.append(row)
        self.rows += 1
        if len(self._pending) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        columns = list(zip(*self._pending, strict=True))
        arrays = [_array(values, field) for values, field in zip(columns, self.schema, strict=True)]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if self._writer is None:
            delta = [f.name for f in self.schema if _is_delta(f)]
            self._writer = pq.ParquetWriter(
                self._sink,
                self.schema,
                compression="zstd",
                compression_level=ZSTD_LEVEL,
                use_dictionary=[f.name for f in self.schema if not _is_delta(f)],
                column_encoding=dict.fromkeys(delta, "DELTA_BINARY_PACKED"),
                write_statistics=True,
            )
        self._writer.write_table(table, row_group_size=BATCH_ROWS)
        self._pending.clear()

    def finish(self) -> bytes | None:
        """The file's bytes; None when no row was added (no file is worth writing)."""
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        return bytes(self._sink.getvalue().to_pybytes())
