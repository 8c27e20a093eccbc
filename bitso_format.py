"""The archive format, defined once: what the collector writes and every reader reads.

Object names and hour prefixes, time stamps, the slot grid and which book a slot belongs to, run
record and claim names, schema versions, the book-name and decimal patterns, the stream object
names and line format, and the create-only local write. Standard library only and no I/O at
import, so both deployable functions carry it (terraform zips this file into each).

Every time is an integer number of milliseconds since the Unix epoch (UTC): one representation,
so the writer and the reader always compute the same names.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
#: Bitso's public budget: requests a minute per IP.
BITSO_LIMIT_PER_MINUTE = 60
DEFAULT_REQUESTS_PER_MINUTE = 59

SNAPSHOT_SCHEMA_VERSION = 1
RUN_RECORD_SCHEMA_VERSION = 1
SHUTDOWN_RECORD_SCHEMA_VERSION = 1
#: The fields of a stored snapshot, in the order they are written.
SNAPSHOT_FIELDS = (
    "schema_version",
    "book",
    "slot",
    "requested_at",
    "received_at",
    "latency_ms",
    "sequence",
    "updated_at",
    "aggregate",
    "bids",
    "asks",
)

BOOK_PATTERN = re.compile(r"[a-z0-9]+_[a-z0-9]+")
#: A price or amount as Bitso sends it: digits, optionally a point and more digits.
DECIMAL_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)?")
#: `2026-11-24T10:15:07.118Z`, the stamp of every snapshot and stream line.
UTC_MILLIS_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")

#: `OBJECT_PREFIX`: path parts of letters, digits, '.', '_' and '-', joined by '/'.
OBJECT_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*")
#: A GCS bucket name (`GCS_BUCKET`, without `gs://`).
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]")

RUNS_DIR = "_runs"
DEFAULT_COMPACTED_PREFIX = "compacted"
TRADES_CHANNEL = "trades"
DIFF_ORDERS_CHANNEL = "diff-orders"
#: The WebSocket channels a call can record beside its snapshots (`STREAMS`).
STREAM_CHANNELS = (TRADES_CHANNEL, DIFF_ORDERS_CHANNEL)
#: Where a backfilled trade came from, in its stream line.
REST_SOURCE = "rest"
#: What a slot of the grid was used for, as the run record's `slot_uses` names it: an ordinary
#: snapshot, an order-level snapshot that anchors the diffs (`aggregate=false`, stored like any
#: snapshot), or a `GET /v3/trades/` page that fills the socket's holes (no snapshot stored).
SLOT_USES = ("snapshot", "anchor", "trades_backfill")
#: The use whose slot stores no snapshot: gap reports never count it as a missing one.
TRADES_BACKFILL_USE = SLOT_USES[2]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SNAPSHOT_NAME = re.compile(
    r"(?P<book>[a-z0-9]+_[a-z0-9]+)_(?P<stamp>[0-9]{8}T[0-9]{6}\.[0-9]{3})Z\.json(?P<gz>\.gz)?"
)
_MINUTE_NAME = re.compile(r"(?P<stamp>[0-9]{8}T[0-9]{4})Z\.(?P<kind>json|claim)")
_STREAM_NAME = re.compile(
    r"(?P<book>[a-z0-9]+_[a-z0-9]+)_(?P<stamp>[0-9]{8}T[0-9]{4}(?:[0-9]{2}\.[0-9]{3})?)Z"
    r"(?:-(?P<instance>[0-9a-f]{8}))?\.ndjson\.gz"
)
_SHUTDOWN_NAME = re.compile(
    r"(?P<stamp>[0-9]{8}T[0-9]{6}\.[0-9]{3})Z-(?P<instance>[0-9a-f]{8})\.shutdown\.json"
)
#: An instance's id: 8 lowercase hex digits, drawn when the instance starts. It names the
#: objects an instance stores outside a call (its shutdown flush), so two never collide.
INSTANCE_PATTERN = re.compile(r"[0-9a-f]{8}")
#: Why the stream was not watched over a span (`unwatched[].reason` in the run record, and the
#: reader's reasons for the holes between records):
#: the subscription was down (a lost connection, until it was acknowledged again) ...
OUTAGE_REASON = "outage"
#: ... the process did not run (Cloud Run froze the instance between requests, or it was
#: starved of CPU): messages from then arrive in a burst with late receipt times ...
FROZEN_REASON = "frozen"
#: ... before an instance's first subscription, after another instance shut down ...
INSTANCE_START_REASON = "instance_start"
#: ... after an instance's last cut when no shutdown flush followed (SIGKILL, a crash).
CRASH_REASON = "crash"
_NAME_STAMP = re.compile(
    r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})(?:([0-9]{2})\.([0-9]{3}))?"
)


# -- time stamps ---------------------------------------------------------------------------------
def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(moment: datetime) -> int:
    """Epoch milliseconds of `moment` (a naive datetime is taken as UTC), truncated."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def seconds_to_ms(epoch_seconds: float) -> int:
    """Milliseconds of an epoch-seconds clock reading, truncated (robust to float error)."""
    return int(epoch_seconds * 1000 + 1e-6)


# `isoformat`, unlike `%Y`, writes years before 1000 with four digits (`0001-01-01T...`).
def iso_millis(ms: int) -> str:
    """`2026-11-24T10:15:07.118Z`: snapshots' and stream lines' stamps."""
    return ms_to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_minute(ms: int) -> str:
    """`2026-11-24T10:15:00Z`: the minute that holds `ms`, as run records name it."""
    return ms_to_datetime(ms - ms % MINUTE_MS).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_hour(ms: int) -> str:
    """`2026-11-24T10`: the hour that holds `ms`, as compaction names it."""
    return ms_to_datetime(ms - ms % HOUR_MS).isoformat(timespec="hours")[:13]


def parse_iso_millis(text: str) -> int:
    """Epoch ms of exactly `2026-11-24T10:15:07.118Z`; ValueError otherwise."""
    if UTC_MILLIS_PATTERN.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not a time like 2026-11-24T10:15:07.118Z")
    return _second_ms(text[:19]) + int(text[20:23])


@functools.lru_cache(maxsize=4096)
def _second_ms(text: str) -> int:
    """Epoch ms of `2026-11-24T10:15:07` (cached: a stream object's lines share seconds)."""
    moment = datetime(
        int(text[0:4]),
        int(text[5:7]),
        int(text[8:10]),
        int(text[11:13]),
        int(text[14:16]),
        int(text[17:19]),
        tzinfo=UTC,
    )
    return datetime_to_ms(moment)


def parse_rfc3339(text: str) -> int:
    """Epoch ms of an RFC 3339 time with a UTC offset (`2026-11-24T10:15:00Z`, `...+01:00`)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("time has no UTC offset")
    return datetime_to_ms(moment)


def floor_minute(ms: int) -> int:
    return ms - ms % MINUTE_MS


def floor_hour(ms: int) -> int:
    return ms - ms % HOUR_MS


# -- the slot grid -------------------------------------------------------------------------------
def slot_offset_ms(j: int, requests_per_minute: int, period_ms: int = MINUTE_MS) -> int:
    """Slot j of a minute starts this many ms after the minute (integer, so exact everywhere)."""
    return j * period_ms // requests_per_minute


def slot_book(number: int, books: tuple[str, ...] | list[str]) -> str:
    """Global slot `number = minute * R + j` belongs to `books[number % len(books)]`."""
    return books[number % len(books)]


@dataclass(frozen=True, slots=True)
class GridSlot:
    """One slot of the grid: its global number, its scheduled start and its book."""

    number: int
    at_ms: int
    book: str

    @property
    def at(self) -> float:
        """Scheduled start in epoch seconds, as clocks read."""
        return self.at_ms / 1000


def grid_minute(
    minute: int,
    requests_per_minute: int,
    books: tuple[str, ...] | list[str],
    period_ms: int = MINUTE_MS,
) -> list[GridSlot]:
    """Every slot of minute number `minute` (of `period_ms`), in time order."""
    start_ms = minute * period_ms
    first = minute * requests_per_minute
    return [
        GridSlot(
            first + j,
            start_ms + slot_offset_ms(j, requests_per_minute, period_ms),
            slot_book(first + j, books),
        )
        for j in range(requests_per_minute)
    ]


def book_slot_times(
    minute_ms: int, requests_per_minute: int, books: tuple[str, ...] | list[str], book: str
) -> Iterator[int]:
    """Scheduled times (epoch ms) of `book`'s slots in the minute starting at `minute_ms`."""
    if book not in books or requests_per_minute <= 0:
        return
    for slot in grid_minute(minute_ms // MINUTE_MS, requests_per_minute, books):
        if slot.book == book:
            yield slot.at_ms


# -- where the archive lives ---------------------------------------------------------------------
def parse_bucket(raw: str) -> str | None:
    """A bucket name from `name` or `gs://name`; None for an empty value. ValueError says why."""
    value = raw.strip()
    if value.startswith("gs://"):
        value = value[len("gs://") :].rstrip("/")
        if not value:
            raise ValueError("names no bucket after gs://")
    if not value:
        return None
    if not BUCKET_PATTERN.fullmatch(value):
        raise ValueError(
            "is not a bucket name; allowed: 3-222 lower-case letters, digits, '-', '_' and '.'"
        )
    return value


def parse_object_prefix(raw: str) -> str:
    """An object prefix without outer slashes; ValueError for anything that could leave the root."""
    value = raw.strip().strip("/")
    if value and (
        not OBJECT_PREFIX_PATTERN.fullmatch(value) or {".", ".."} & set(value.split("/"))
    ):
        raise ValueError(
            "is not allowed; use letters, digits, '.', '_', '-' and '/' between parts "
            "(no '.' or '..' parts)"
        )
    return value


# -- object names --------------------------------------------------------------------------------
def join_prefix(prefix: str, name: str) -> str:
    """`prefix/name` (no leading or doubled slash when the prefix is empty or has slashes)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


def hour_dir(ms: int) -> str:
    """`YYYY/MM/DD/HH/`: the folder of the hour that holds `ms`."""
    return f"{ms_to_datetime(ms - ms % HOUR_MS):%Y/%m/%d/%H}/"


def runs_hour_dir(ms: int) -> str:
    return f"{RUNS_DIR}/{hour_dir(ms)}"


def stream_hour_dir(channel: str, ms: int) -> str:
    return f"{channel}/{hour_dir(ms)}"


def _name_stamp(ms: int, seconds: bool) -> str:
    moment = ms_to_datetime(ms - ms % 1000)
    if seconds:
        return f"{moment:%Y%m%dT%H%M%S}.{ms % 1000:03d}Z"
    return f"{moment:%Y%m%dT%H%M}Z"


def snapshot_name(prefix: str, book: str, slot_ms: int, compression: str = "none") -> str:
    """`[prefix/]YYYY/MM/DD/HH/<book>_<YYYYMMDD>T<HHMMSS>.<mmm>Z.json[.gz]`, by slot time."""
    suffix = ".json.gz" if compression == "gzip" else ".json"
    return join_prefix(prefix, f"{hour_dir(slot_ms)}{book}_{_name_stamp(slot_ms, True)}{suffix}")


def run_record_name(prefix: str, minute_ms: int) -> str:
    """`[prefix/]_runs/YYYY/MM/DD/HH/<YYYYMMDD>T<HHMM>Z.json`: one call's run record."""
    return join_prefix(prefix, f"{runs_hour_dir(minute_ms)}{_name_stamp(minute_ms, False)}.json")


def claim_name(prefix: str, minute_ms: int) -> str:
    """`[prefix/]_runs/YYYY/MM/DD/HH/<YYYYMMDD>T<HHMM>Z.claim`: who spends this minute."""
    return join_prefix(prefix, f"{runs_hour_dir(minute_ms)}{_name_stamp(minute_ms, False)}.claim")


def stream_name(
    prefix: str, channel: str, book: str, hour_ms: int, cut_ms: int, instance: str | None = None
) -> str:
    """`[prefix/]<channel>/YYYY/MM/DD/HH/<book>_<cut>.ndjson.gz`: one book's channel, the
    messages of one cut received in the hour of `hour_ms` (a cut spanning an hour boundary is
    stored as one object per hour, so a message is always under the hour it was received in).

    `<cut>` is the call's minute, `<YYYYMMDD>T<HHMM>Z` (claimed, so no two calls share it), or,
    for a cut made outside a call (an instance's shutdown flush), its instant and instance:
    `<YYYYMMDD>T<HHMMSS>.<mmm>Z-<instance>`.
    """
    if instance is None:
        stamp = _name_stamp(cut_ms, False)
    else:
        stamp = f"{_name_stamp(cut_ms, True)}-{instance}"
    return join_prefix(prefix, f"{stream_hour_dir(channel, hour_ms)}{book}_{stamp}.ndjson.gz")


def shutdown_record_name(prefix: str, at_ms: int, instance: str) -> str:
    """`[prefix/]_runs/YYYY/MM/DD/HH/<YYYYMMDD>T<HHMMSS>.<mmm>Z-<instance>.shutdown.json`: what
    an instance's shutdown flush stored (the run record's `streams` part, outside any call)."""
    stamp = f"{_name_stamp(at_ms, True)}-{instance}"
    return join_prefix(prefix, f"{runs_hour_dir(at_ms)}{stamp}.shutdown.json")


def compacted_name(
    book: str, hour_ms: int, compacted_prefix: str = DEFAULT_COMPACTED_PREFIX, kind: str = ""
) -> str:
    """Hive-partitioned Parquet file of one book-hour: `[compacted_prefix/][kind/]book=...`."""
    moment = ms_to_datetime(floor_hour(hour_ms))
    root = join_prefix(compacted_prefix, join_prefix(kind, ""))
    return (
        f"{root}book={book}/year={moment:%Y}/month={moment:%m}/day={moment:%d}/"
        f"hour={moment:%H}/{book}_{moment:%Y%m%dT%H}.parquet"
    )


def _stamp_ms(stamp: str) -> int | None:
    match = _NAME_STAMP.fullmatch(stamp)
    if match is None:
        return None
    year, month, day, hour, minute, second, milli = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    return datetime_to_ms(moment) + int(milli or 0)


@dataclass(frozen=True, slots=True)
class SnapshotName:
    """What a snapshot's object name says about it."""

    name: str
    book: str
    slot_ms: int


@dataclass(frozen=True, slots=True)
class StreamName:
    """What a stream object's name says about it: the hour its messages were received in (its
    folder), and the cut that stored it (a call's minute, or a shutdown's instant and instance)."""

    name: str
    channel: str
    book: str
    hour_ms: int
    cut_ms: int
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class ShutdownName:
    """What a shutdown record's name says about it."""

    name: str
    at_ms: int
    instance: str


def parse_snapshot_name(name: str) -> SnapshotName | None:
    """`.../<book>_<YYYYMMDD>T<HHMMSS>.<mmm>Z.json[.gz]`; None when it is not one."""
    match = _SNAPSHOT_NAME.fullmatch(name.rsplit("/", 1)[-1])
    slot_ms = _stamp_ms(match.group("stamp")) if match else None
    if match is None or slot_ms is None:
        return None
    return SnapshotName(name, match.group("book"), slot_ms)


def parse_run_record_name(name: str) -> int | None:
    """The minute (epoch ms) of `.../<YYYYMMDD>T<HHMM>Z.json`; None otherwise."""
    match = _MINUTE_NAME.fullmatch(name.rsplit("/", 1)[-1])
    if match is None or match.group("kind") != "json":
        return None
    return _stamp_ms(match.group("stamp"))


def parse_stream_name(name: str) -> StreamName | None:
    """`.../<channel>/YYYY/MM/DD/HH/<book>_<cut>.ndjson.gz`; None otherwise."""
    parts = name.split("/")
    if len(parts) < 6 or parts[-6] not in STREAM_CHANNELS:
        return None
    match = _STREAM_NAME.fullmatch(parts[-1])
    cut_ms = _stamp_ms(match.group("stamp")) if match else None
    year, month, day, hour = parts[-5:-1]
    hour_ms = _stamp_ms(f"{year}{month}{day}T{hour}00")
    if match is None or cut_ms is None or hour_ms is None:
        return None
    instance = match.group("instance")
    if (instance is None) != ("." not in match.group("stamp")):
        return None  # a call's cut is named by its minute; only a shutdown's carries an instance
    return StreamName(name, parts[-6], match.group("book"), hour_ms, cut_ms, instance)


def parse_shutdown_record_name(name: str) -> ShutdownName | None:
    """`.../<YYYYMMDD>T<HHMMSS>.<mmm>Z-<instance>.shutdown.json`; None otherwise."""
    match = _SHUTDOWN_NAME.fullmatch(name.rsplit("/", 1)[-1])
    at_ms = _stamp_ms(match.group("stamp")) if match else None
    if match is None or at_ms is None:
        return None
    return ShutdownName(name, at_ms, match.group("instance"))


# -- stream lines --------------------------------------------------------------------------------
def stream_line(received_ms: int, message: dict[str, Any]) -> dict[str, Any]:
    """One WebSocket message as stored: when it arrived and exactly what Bitso sent."""
    return {"received_at": iso_millis(received_ms), "message": message}


def backfill_line(received_ms: int, trade: dict[str, Any]) -> dict[str, Any]:
    """One trade fetched from `GET /v3/trades/` that the socket did not deliver."""
    return {"received_at": iso_millis(received_ms), "source": REST_SOURCE, "trade": trade}


@dataclass(frozen=True, slots=True)
class StreamLine:
    """One stored stream line read back: a WebSocket message, or a trade backfilled from REST."""

    received_ms: int
    message: dict[str, Any] | None
    trade: dict[str, Any] | None


def parse_stream_line(line: Any) -> StreamLine:
    """The inverse of `stream_line` and `backfill_line`; ValueError naming what is wrong."""
    if not isinstance(line, dict):
        raise ValueError("a stream line must be a JSON object")
    received_at = line.get("received_at")
    if not isinstance(received_at, str):
        raise ValueError("received_at must be a time like 2026-11-24T10:15:07.118Z")
    received_ms = parse_iso_millis(received_at)
    if line.keys() == {"received_at", "message"} and isinstance(line["message"], dict):
        return StreamLine(received_ms, line["message"], None)
    if (
        line.keys() == {"received_at", "source", "trade"}
        and line["source"] == REST_SOURCE
        and isinstance(line["trade"], dict)
    ):
        return StreamLine(received_ms, None, line["trade"])
    raise ValueError(
        'a stream line holds "received_at" and either an object "message" or '
        f'"source": "{REST_SOURCE}" and an object "trade"'
    )


# -- the create-only local write -----------------------------------------------------------------
def write_new_file(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, whole or not at all; False when the name already exists.

    A temporary file is linked into place: `link()`, unlike `rename()`, fails when the name
    exists, so nothing is ever overwritten. OSError propagates for the caller to name.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
    return True
