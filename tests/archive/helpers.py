"""Build test archives exactly as the collector writes them (locally or into a bucket).

Deliberately independent of bitso_archive: names, times and the snapshot format are
written out here from the design contract, so the tests check the reader against
the contract rather than against itself.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bitso_archive.cli import main

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(text: str) -> int:
    """Epoch ms of '2026-11-20T10:00:08.571Z' (or without ms)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt - EPOCH) // timedelta(milliseconds=1)


def iso(ms_: int) -> str:
    dt = EPOCH + timedelta(milliseconds=ms_)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms_ % 1000:03d}Z"


def encode(obj: dict[str, Any]) -> bytes:
    """As the collector writes: one compact JSON line."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def snapshot_name(book: str, slot_ms: int, gz: bool = False) -> str:
    dt = EPOCH + timedelta(milliseconds=slot_ms)
    ext = ".json.gz" if gz else ".json"
    return f"{dt:%Y/%m/%d/%H}/{book}_{dt:%Y%m%dT%H%M%S}.{slot_ms % 1000:03d}Z{ext}"


def run_name(minute_ms: int, ext: str = ".json") -> str:
    dt = EPOCH + timedelta(milliseconds=minute_ms)
    return f"_runs/{dt:%Y/%m/%d/%H}/{dt:%Y%m%dT%H%M}Z{ext}"


def book_levels(
    mid: str = "46920.005", n: int = 3, step: str = "0.01"
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A small plausible book: n bids (descending) and n asks (ascending)."""
    from decimal import Decimal

    m, s = Decimal(mid), Decimal(step)
    bids = [{"price": str(m - s * (i + 1)), "amount": f"0.{i + 1:08d}"} for i in range(n)]
    asks = [{"price": str(m + s * (i + 1)), "amount": f"1.{i + 1:08d}"} for i in range(n)]
    return bids, asks


def snapshot(
    book: str,
    slot_ms: int,
    sequence: int,
    bids: Sequence[dict[str, str]] | None = None,
    asks: Sequence[dict[str, str]] | None = None,
    aggregate: bool = True,
) -> dict[str, Any]:
    if bids is None or asks is None:
        default_bids, default_asks = book_levels()
        bids = default_bids if bids is None else bids
        asks = default_asks if asks is None else asks
    return {
        "schema_version": 1,
        "book": book,
        "slot": iso(slot_ms),
        "requested_at": iso(slot_ms + 1),
        "received_at": iso(slot_ms + 183),
        "latency_ms": 182.0,
        "sequence": sequence,
        "updated_at": "2026-11-20T10:00:00+00:00",
        "aggregate": aggregate,
        "bids": list(bids),
        "asks": list(asks),
    }


def run_record(
    minute_ms: int,
    books: Sequence[str],
    rpm: int,
    *,
    status: str = "ok",
    throttled: int = 0,
    lost: Sequence[dict[str, str]] = (),
    failures: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run_id": f"run-{minute_ms}",
        "minute": iso(minute_ms)[:19] + "Z",
        "started_at": iso(minute_ms + 20),
        "finished_at": iso(minute_ms + 58_140),
        "duration_ms": 58120.4,
        "strategy": "threaded",
        "books": list(books),
        "requests_per_minute": rpm,
        "aggregate": True,
        "status": status,
        "http_status": 200,
        "slots_in_minute": rpm,
        "slots_planned": rpm,
        "slots_missed_late": 0,
        "requests_sent": rpm,
        "written": rpm - len(lost),
        "duplicates": 0,
        "failed": {},
        "throttled": throttled,
        "skipped_after_throttle": 0,
        "abandoned": 0,
        "lost": list(lost),
        "failures": list(failures),
        "lateness_ms": {"p50": 0.4, "p99": 2.1, "max": 3.0},
        "per_book": {},
    }


@dataclass
class Archive:
    """Objects to write: name -> (bytes, content_encoding)."""

    prefix: str = ""
    objects: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)

    def _full(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/{name}" if self.prefix.strip("/") else name

    def add_snapshot(self, snap: dict[str, Any], gz: bool = False) -> str:
        name = snapshot_name(snap["book"], ms(snap["slot"]), gz)
        body = encode(snap)
        if gz:
            self.objects[self._full(name)] = (gzip.compress(body, mtime=0), "gzip")
        else:
            self.objects[self._full(name)] = (body, None)
        return name

    def add_run(self, record: dict[str, Any]) -> str:
        name = run_name(ms(record["minute"]))
        self.objects[self._full(name)] = (encode(record), None)
        claim = run_name(ms(record["minute"]), ".claim")
        self.objects[self._full(claim)] = (b'{"claimed_by": "x"}', None)
        return name

    def add_raw(self, name: str, data: bytes, content_encoding: str | None = None) -> str:
        self.objects[self._full(name)] = (data, content_encoding)
        return name

    def write_local(self, root: Path) -> Path:
        for name, (data, _encoding) in self.objects.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root

    def upload(self, bucket: Any) -> None:
        for name, (data, encoding) in self.objects.items():
            blob = bucket.blob(name)
            if encoding:
                blob.content_encoding = encoding
            blob.upload_from_string(data, content_type="application/json")


# --- The shared scenario: 2026-11-20, hour 10 (minutes 10:00-10:04) and hour 12 ----------
#
# Books ["btc_mxn", "eth_mxn"] at R = 7 requests a minute. Slot j of a minute is at
# j * 60000 // 7 ms: 0, 8571, 17142, 25714, 34285, 42857, 51428. 2026-11-20T10:00Z is
# minute 29919480 (even), so in even minutes btc_mxn has j = 0, 2, 4, 6 and eth_mxn
# j = 1, 3, 5; in odd minutes the other way round.
BOOKS = ["btc_mxn", "eth_mxn"]
RPM = 7
OFFSETS = [0, 8571, 17142, 25714, 34285, 42857, 51428]
T10 = ms("2026-11-20T10:00:00Z")
T12 = ms("2026-11-20T12:00:00Z")
LOST_SLOT = "2026-11-20T10:02:17.142Z"  # btc_mxn, fetched but not stored
CORRUPT_NAME = "2026/11/20/10/eth_mxn_20261120T100225.714Z.json"
DECIMAL_BIDS = [
    {"price": "46850.01", "amount": "0.60271953"},
    {"price": "46850.00", "amount": "0.00000001"},
]
DECIMAL_ASKS = [
    {"price": "46990.00", "amount": "0.19090000"},
    {"price": "46990.5", "amount": "12.5"},
]


def scenario(prefix: str = "") -> Archive:
    """Minute 0 complete; 1 throttled after j=2; 2 a lost write and a corrupt object;
    3 complete (eth_mxn gzip); 4 no run record, one eth_mxn slot missing. btc_mxn's
    snapshots 10:02:34.285, 10:02:51.428 and 10:03:08.571 share one sequence."""
    archive = Archive(prefix)
    seq = {"btc_mxn": 5000, "eth_mxn": 9000}
    for k in range(5):
        minute = T10 + k * 60_000
        for j, offset in enumerate(OFFSETS):
            g = (29919480 + k) * RPM + j
            book = BOOKS[g % 2]
            slot = minute + offset
            if (k == 1 and j >= 3) or (k == 4 and j == 5):
                continue
            if k == 2 and j == 2:
                continue  # the lost write
            if k == 2 and j == 3:
                archive.add_raw(CORRUPT_NAME, b'{"schema_version": 1, "book": "eth_')
                continue
            if not (book == "btc_mxn" and ((k == 2 and j == 6) or (k == 3 and j == 1))):
                seq[book] += 1
            bids, asks = (DECIMAL_BIDS, DECIMAL_ASKS) if slot == T10 else (None, None)
            snap = snapshot(book, slot, seq[book], bids, asks)
            gz = (k == 3 and book == "eth_mxn") or (k == 4 and j == 0)
            archive.add_snapshot(snap, gz=gz)
        if k < 4:
            status, throttled, lost = "ok", 0, []
            if k == 1:
                status, throttled = "throttled", 1
            if k == 2:
                status = "degraded"
                lost = [{"book": "btc_mxn", "slot": LOST_SLOT, "reason": "storage: 503"}]
            archive.add_run(
                run_record(minute, BOOKS, RPM, status=status, throttled=throttled, lost=lost)
            )
    # Hour 11 is missing altogether; hour 12 holds one snapshot per book.
    archive.add_snapshot(snapshot("btc_mxn", T12, 7000))
    archive.add_snapshot(snapshot("eth_mxn", T12 + 8571, 9900))
    # Things the reader must ignore.
    archive.add_raw("2026/11/20/10/README.txt", b"not a snapshot")
    decoy = json.dumps(snapshot("btc_mxn", T10 + 1, 1)).encode()
    archive.add_raw("_runs/2026/11/20/10/btc_mxn_20261120T100000.001Z.json", decoy)
    archive.add_raw("compacted/2026/11/20/10/btc_mxn_20261120T100000.001Z.json", decoy)
    return archive


def cli_exit_code(*args: str) -> int:
    """`bitso-archive ARGS`, in process: its exit code (argparse's own exits included)."""
    try:
        return main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`bitso-archive ARGS`, in process: its exit code, standard output and standard error."""
    code = cli_exit_code(*args)
    out, err = capsys.readouterr()
    return code, out, err
