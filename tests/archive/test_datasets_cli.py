"""The datasets' command line: ``export`` refuses bad input with one clear line naming what was
wrong and what is allowed, changing nothing already written; ``sql`` opens the tables with their
views named; ``plot`` draws them; and only the adapter reads the reader's stream internals."""

from __future__ import annotations

import ast
from pathlib import Path

import duckdb
import pytest

from bitso_archive.datasets.plot import plot
from bitso_archive.datasets.tables import TableOptionError, TableOptions
from tests.archive.helpers import run_cli
from tests.archive.stream_market import World, build_world

HOUR = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T11:00"]


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(seed=3)


def state(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--tables", "trades,depth"], 2, "'depth' is not a table; choose from trades, "),
        (["--tables", "quote,trade"], 2, "'quote', 'trade' are not tables"),
        (["--depth", "0"], 2, "'0' is out of range; book_snapshots take a whole number"),
        (["--depth", "1001"], 2, "from 1 to 1000"),
        (["--every", "10ms"], 2, "from every 100 ms to every hour"),
        (["--every", "2h"], 2, "out of range"),
        (["--every", "soon"], 2, "'soon' is not an interval"),
        (["--start", "2026-11-20T10:30", "--end", "2026-11-20T10:30"], 2, "must be after --start"),
        (["--start", "2026-11-20T12:00", "--end", "2026-11-20T13:00"], 1, "nothing of any book"),
        (["--books", "eth_mxn"], 1, "nothing of eth_mxn was recorded"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    archive_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    out = tmp_path / "tables"
    assert run_cli(capsys, "export", str(archive_dir), *HOUR, "--out", str(out))[0] == 0
    before = state(out)
    assert len(before) == 5
    got, _out, err = run_cli(capsys, "export", str(archive_dir), *HOUR, *args, "--out", str(out))
    assert got == code, err
    assert message in err.strip().splitlines()[-1]  # one line says it (after argparse's usage)
    assert "Traceback" not in err
    assert state(out) == before


def test_an_output_that_cannot_be_written_is_named(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "tables.txt"
    a_file.write_text("keep me")
    code, _out, err = run_cli(capsys, "export", str(archive_dir), *HOUR, "--out", str(a_file))
    assert code == 1 and f"--out '{a_file}' is a file; give a directory" in err
    below = a_file / "tables"
    code, _out, err = run_cli(capsys, "export", str(archive_dir), *HOUR, "--out", str(below))
    assert code == 1 and f"--out '{below}' cannot be written" in err
    assert a_file.read_text() == "keep me"


def test_the_options_refuse_what_the_command_line_refuses() -> None:
    for bad in ({"tables": ("quotes", "levels")}, {"depth": 0}, {"every_ms": 50}):
        with pytest.raises(TableOptionError):
            TableOptions(**bad)  # type: ignore[arg-type]
    assert TableOptions(("coverage", "trades")).tables == ("trades", "coverage")  # table order


def test_export_replaces_its_own_files_whole(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tables"
    assert run_cli(capsys, "export", str(archive_dir), *HOUR, "--out", str(out))[0] == 0
    first = state(out)
    shallow = ["--depth", "3", "--tables", "book_snapshots"]
    assert run_cli(capsys, "export", str(archive_dir), *HOUR, *shallow, "--out", str(out))[0] == 0
    second = state(out)
    changed = [p.relative_to(out).parts[0] for p in second if second[p] != first[p]]
    assert changed == ["book_snapshots"]  # the other tables' files are left as they were
    assert sorted(second) == sorted(first)
    assert not [p for p in out.rglob(".*")]  # no temporary file left behind


def test_sql_opens_the_tables_with_their_views_named(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tables"
    only = ["--tables", "quotes,coverage"]
    assert run_cli(capsys, "export", str(archive_dir), *HOUR, *only, "--out", str(out))[0] == 0
    [direct] = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/quotes/*/*/*/*/*/*.parquet')"
    ).fetchall()
    assert direct[0] > 5
    query = "SELECT count(*) AS n, min(book) AS book, min(year) AS year FROM quotes"
    code, printed, err = run_cli(capsys, "sql", str(out), query, "--csv")
    assert code == 0, err
    assert printed.splitlines() == ['"n","book","year"', f'{direct[0]},"btc_mxn",2026']
    # A table without files is an empty view with its columns, not an error.
    code, printed, _ = run_cli(capsys, "sql", str(out), "SELECT tid, price, hour FROM trades")
    assert code == 0 and printed.splitlines()[-1] == "(0 rows)"
    code, printed, _ = run_cli(
        capsys, "sql", str(out), "SELECT reason, known FROM coverage ORDER BY start LIMIT 3"
    )
    assert printed.splitlines()[2:5] == [
        "not_recorded         False",
        "before_first_anchor  False",
        "stream               True",
    ]
    code, _printed, err = run_cli(capsys, "sql", str(out), "SELECT * FROM levels")
    assert code == 1 and err.startswith("error: the query failed: Catalog Error")
    code, _printed, err = run_cli(capsys, "sql", "gs://bucket/x", "SELECT 1")
    assert code == 1 and "sql reads local directories, not gs://bucket/x" in err


def test_sql_on_an_archive_reads_what_compact_wrote(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = world.archive.write_local(tmp_path / "archive")
    assert run_cli(capsys, "compact", str(root), *HOUR)[0] == 0
    query = (
        "SELECT (SELECT count(*) FROM levels) > 0 AS levels, "
        "(SELECT count(DISTINCT tid) = count(*) FROM trades) AS once, "
        "(SELECT count(*) FROM book_snapshots) > 0 AS snapshots"
    )
    code, printed, err = run_cli(capsys, "sql", str(root), query, "--csv")
    assert code == 0, err
    assert printed.splitlines()[1] == "true,true,true"


def test_plot_draws_the_tables(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "btc.png"
    span = ["--start", "2026-11-20T10:54", "--end", "2026-11-20T10:57"]
    drawn = plot(archive_dir, "btc_mxn", "2026-11-20T10:54", "2026-11-20T10:57", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "tables"
    assert run_cli(capsys, "export", str(archive_dir), *span, "--out", str(out))[0] == 0
    counts = duckdb.sql(
        f"SELECT (SELECT count(*) FROM read_parquet('{out}/quotes/*/*/*/*/*/*.parquet')), "
        f"(SELECT count(*) FROM read_parquet('{out}/trades/*/*/*/*/*/*.parquet')), "
        f"(SELECT count(*) FROM read_parquet('{out}/coverage/*/*/*/*/*/*.parquet') "
        "WHERE NOT known)"
    ).fetchall()[0]
    assert counts == (drawn.quotes, drawn.trades, drawn.unknown_spans)
    assert drawn.quotes > 5 and drawn.trades > 100 and drawn.unknown_spans >= 3
    code, _out, err = run_cli(
        capsys, "plot", str(archive_dir), "--book", "btc_mxn", *span, "--out", "x.jpg"
    )
    assert code == 2 and "'x.jpg' must end in .png" in err
    later = ["--start", "2026-11-20T12:00", "--end", "2026-11-20T12:05"]
    code, _out, err = run_cli(
        capsys, "plot", str(archive_dir), "--book", "btc_mxn", *later, "--out", str(png)
    )
    assert code == 1 and "nothing of btc_mxn was recorded" in err


def test_only_the_adapter_reads_the_readers_stream_internals() -> None:
    """When the reader changes how it chains the streams, only source_adapter.py changes."""
    internals = {
        "bitso_archive.chain",
        "bitso_archive.stream_gaps",
        "bitso_archive.orderbook",
        "bitso_archive.replay",
        "bitso_archive.cut_records",
        "bitso_archive.stream_reader",
        "bitso_archive.trades",
        "bitso_archive.watched",
    }
    package = Path(__file__).resolve().parents[2] / "bitso_archive" / "datasets"
    users = {}
    for module in sorted(package.glob("*.py")):
        tree = ast.parse(module.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        if imported & internals:
            users[module.name] = sorted(imported & internals)
    assert users == {
        "source_adapter.py": [
            "bitso_archive.chain",
            "bitso_archive.cut_records",
            "bitso_archive.orderbook",
            "bitso_archive.replay",
            "bitso_archive.trades",
        ]
    }
