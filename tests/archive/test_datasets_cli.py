"""``export`` refuses bad input with one clear line naming what was wrong and what is allowed, and
a refused export changes nothing already written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitso_archive.cli import main
from bitso_archive.datasets.tables import TableOptionError, TableOptions
from tests.archive.stream_market import MinutePlan, World, build_world

HOUR = ["--start", "2026-11-20T10:00", "--end", "2026-11-20T11:00"]


@pytest.fixture(scope="module")
def world() -> World:
    return build_world([MinutePlan(), MinutePlan(drops=(20_000,))], seed=3)


@pytest.fixture(scope="module")
def archive_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world.archive.write_local(tmp_path_factory.mktemp("archive"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


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
    assert run(capsys, "export", str(archive_dir), *HOUR, "--out", str(out))[0] == 0
    before = state(out)
    assert len(before) == 5
    got, _out, err = run(capsys, "export", str(archive_dir), *HOUR, *args, "--out", str(out))
    assert got == code, err
    assert message in err.strip().splitlines()[-1]  # one line says it (after argparse's usage)
    assert "Traceback" not in err
    assert state(out) == before


def test_an_output_that_cannot_be_written_is_named(
    archive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "tables.txt"
    a_file.write_text("keep me")
    code, _out, err = run(capsys, "export", str(archive_dir), *HOUR, "--out", str(a_file))
    assert code == 1 and f"--out '{a_file}' is a file; give a directory" in err
    below = a_file / "tables"
    code, _out, err = run(capsys, "export", str(archive_dir), *HOUR, "--out", str(below))
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
    assert run(capsys, "export", str(archive_dir), *HOUR, "--out", str(out))[0] == 0
    first = state(out)
    shallow = ["--depth", "3", "--tables", "book_snapshots"]
    assert run(capsys, "export", str(archive_dir), *HOUR, *shallow, "--out", str(out))[0] == 0
    second = state(out)
    changed = [p.relative_to(out).parts[0] for p in second if second[p] != first[p]]
    assert changed == ["book_snapshots"]  # the other tables' files are left as they were
    assert sorted(second) == sorted(first)
    assert not [p for p in out.rglob(".*")]  # no temporary file left behind
