"""``sql``: the tables opened in DuckDB with their views already named, so a researcher can query
them locally without writing paths::

    bitso-archive sql tables "SELECT count(*) FROM quotes"
    bitso-archive sql data "SELECT * FROM coverage WHERE NOT known"   # an archive: compacted/

The directory is an ``export`` output, or an archive whose ``compacted/`` holds what ``compact``
wrote (then the REST snapshots' ``levels`` are a view too). Every view has the table's columns
and the partitions ``book``, ``year``, ``month``, ``day`` and ``hour``; a table without files is
an empty view, so queries never fail on a missing table. Times are shown in UTC.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pyarrow as pa

from bitso_archive.datasets.build import SCHEMAS
from bitso_archive.datasets.tables import PARTITIONS, TABLES
from bitso_archive.table import PARQUET_SCHEMA
from bitso_format import DEFAULT_COMPACTED_PREFIX

#: The view of the compacted REST snapshots (``compact``'s levels files), in an archive.
LEVELS_VIEW = "levels"
_PARTITION_TYPES = [pa.string(), pa.int32(), pa.int32(), pa.int32(), pa.int32()]
_HIVE_TYPES = (
    "{'book': 'VARCHAR', 'year': 'INTEGER', 'month': 'INTEGER', 'day': 'INTEGER', "
    "'hour': 'INTEGER'}"
)


def tables_root(directory: Path, compacted_prefix: str = DEFAULT_COMPACTED_PREFIX) -> Path:
    """Where the tables are: ``directory/compacted`` in an archive, else ``directory``."""
    compacted = directory / compacted_prefix
    if any((compacted / table).is_dir() for table in TABLES):
        return compacted
    return directory


def _pattern(folder: Path) -> str:
    """The files of one table under ``folder``: ``book=B/year=Y/month=M/day=D/hour=H/*``."""
    return str(folder / "book=*" / "*" / "*" / "*" / "*" / "*.parquet")


def _empty(schema: pa.Schema) -> pa.Table:
    partitions = (pa.field(n, t) for n, t in zip(PARTITIONS, _PARTITION_TYPES, strict=True))
    return pa.schema([*schema, *partitions]).empty_table()


def connect(directory: Path, compacted_prefix: str = DEFAULT_COMPACTED_PREFIX) -> Any:
    """A DuckDB connection (in memory) with one view per table of ``directory``."""
    import duckdb  # noqa: PLC0415 - only `sql` needs it; compact_hour does not ship it

    if not directory.is_dir():
        raise ValueError(f"{str(directory)!r} is not a directory of tables")
    root = tables_root(directory, compacted_prefix)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    views = {table: (root / table, SCHEMAS[table]) for table in TABLES}
    if root != directory:
        views[LEVELS_VIEW] = (root, PARQUET_SCHEMA)  # compact's levels files: compacted/book=B/
    for name, (folder, schema) in views.items():
        pattern = _pattern(folder)
        if not glob.glob(pattern):
            con.register(name, _empty(schema))
            continue
        quoted = pattern.replace("'", "''")  # a view cannot take parameters: quote the path
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{quoted}', "  # noqa: S608
            f"hive_partitioning = true, union_by_name = true, hive_types = {_HIVE_TYPES})"
        )
    return con


def query(directory: Path, sql: str, compacted_prefix: str = DEFAULT_COMPACTED_PREFIX) -> pa.Table:
    """The result of ``sql`` over the tables of ``directory``, as an Arrow table (a query
    DuckDB refuses is a ValueError carrying DuckDB's message)."""
    import duckdb  # noqa: PLC0415

    con = connect(directory, compacted_prefix)
    try:
        result = con.sql(sql)
        return result.to_arrow_table() if result is not None else pa.table({})
    except duckdb.Error as exc:
        raise ValueError(f"the query failed: {exc}") from None
    finally:
        con.close()
