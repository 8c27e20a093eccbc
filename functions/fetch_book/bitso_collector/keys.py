"""Object names: where snapshots, run records and minute claims go (the same in every sink)."""

from __future__ import annotations

from .timefmt import utc

RUNS_DIR = "_runs"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _hour_dir(epoch_seconds: float) -> str:
    return f"{utc(epoch_seconds):%Y/%m/%d/%H}"


def snapshot_key(prefix: str, book: str, slot_ms: int, compression: str = "none") -> str:
    """`[prefix/]YYYY/MM/DD/HH/<book>_<YYYYMMDD>T<HHMMSS>.<mmm>Z.json[.gz]`, by slot time."""
    seconds = slot_ms / 1000
    suffix = ".json.gz" if compression == "gzip" else ".json"
    name = f"{book}_{utc(seconds):%Y%m%dT%H%M%S}.{slot_ms % 1000:03d}Z{suffix}"
    return _join(prefix, f"{_hour_dir(seconds)}/{name}")


def _minute_key(prefix: str, minute_start: float, extension: str) -> str:
    stamp = f"{utc(minute_start):%Y%m%dT%H%M}Z"
    return _join(prefix, f"{RUNS_DIR}/{_hour_dir(minute_start)}/{stamp}{extension}")


def run_record_key(prefix: str, minute_start: float) -> str:
    return _minute_key(prefix, minute_start, ".json")


def claim_key(prefix: str, minute_start: float) -> str:
    return _minute_key(prefix, minute_start, ".claim")
