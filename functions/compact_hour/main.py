"""Cloud Functions entry point ``compact_hour``: one closed hour of snapshots to Parquet.

POST with no body compacts the hour that closed before the request time (the
``X-CloudScheduler-ScheduleTime`` header when Cloud Scheduler sends one, else
now); a JSON body ``{"hour": "2026-11-24T10"}`` names the hour instead.

Environment: ``GCS_BUCKET`` (unset: the local directory ``LOCAL_DATA_DIR``,
default ``data``), ``OBJECT_PREFIX`` (default empty), ``COMPACTED_PREFIX``
(default ``compacted``). Answers a JSON summary: 200 when every book-hour is
written or already there, 400 for a bad body or an hour that has not ended,
500 when something failed. Logs one JSON object a line with ``severity``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

import flask
import functions_framework

from bitso_archive.compact import HourNotClosedError
from bitso_archive.compact import compact_hour as compact
from bitso_archive.layout import HOUR_MS, floor_hour, iso_hour, parse_time
from bitso_archive.sources import GcsSource, LocalSource, Source

SCHEDULE_HEADER = "X-CloudScheduler-ScheduleTime"
_HOUR_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}(:00(:00(\.0+)?)?(Z|[+-]00:?00)?)?$")


def log(severity: str, message: str, **fields: Any) -> None:
    entry = {"severity": severity, "message": message, **fields}
    print(json.dumps(entry, default=str), file=sys.stdout, flush=True)


class _JsonLines(logging.Handler):
    """bitso_archive's own warnings (corrupt objects) as structured log lines too."""

    def emit(self, record: logging.LogRecord) -> None:
        log(record.levelname, record.getMessage(), logger=record.name)


_logger = logging.getLogger("bitso_archive")
if not any(isinstance(h, _JsonLines) for h in _logger.handlers):
    _logger.addHandler(_JsonLines())
_logger.setLevel(logging.WARNING)
_logger.propagate = False

_sources: dict[tuple[str, str, str], Source] = {}


def _source() -> Source:
    bucket = os.environ.get("GCS_BUCKET", "").strip()
    prefix = os.environ.get("OBJECT_PREFIX", "").strip().strip("/")
    local = os.environ.get("LOCAL_DATA_DIR", "data")
    key = (bucket, prefix, local)
    if key not in _sources:
        if bucket:
            _sources[key] = GcsSource(bucket, prefix)
        else:
            root = os.path.join(local, prefix) if prefix else local
            _sources[key] = LocalSource(root)
    return _sources[key]


def _answer(body: dict[str, Any], status: int) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def _hour_asked(request: flask.Request, now_ms: int) -> int:
    """The hour to compact (epoch ms); raises ValueError for a bad body."""
    raw = request.get_data(cache=True)
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            raise ValueError('the body must be JSON like {"hour": "2026-11-24T10"}') from None
        if not isinstance(body, dict) or set(body) - {"hour"}:
            raise ValueError('the body must be JSON like {"hour": "2026-11-24T10"}')
        if "hour" in body:
            hour = body["hour"]
            if not isinstance(hour, str) or not _HOUR_RE.match(hour.strip()):
                raise ValueError(f"hour {hour!r} must look like 2026-11-24T10 (UTC)")
            return parse_time(hour.strip())
    reference = now_ms
    header = request.headers.get(SCHEDULE_HEADER)
    if header:
        try:
            reference = parse_time(header)
        except ValueError:
            reference = now_ms
    return floor_hour(reference) - HOUR_MS


def compact_hour_request(request: flask.Request) -> flask.Response:
    now_ms = int(time.time() * 1000)
    try:
        hour_ms = _hour_asked(request, now_ms)
        if hour_ms + HOUR_MS > now_ms:
            raise HourNotClosedError(f"hour {iso_hour(hour_ms)} has not ended yet")
    except ValueError as exc:
        log("WARNING", f"bad request: {exc}")
        return _answer({"status": "bad_request", "error": str(exc)}, 400)

    prefix = os.environ.get("COMPACTED_PREFIX", "compacted").strip().strip("/") or "compacted"
    started = time.monotonic()
    try:
        result = compact(_source(), hour_ms, compacted_prefix=prefix, now=now_ms)
    except Exception as exc:
        log("ERROR", f"compacting {iso_hour(hour_ms)} failed: {exc}", hour=iso_hour(hour_ms))
        return _answer({"status": "error", "hour": iso_hour(hour_ms), "error": str(exc)}, 500)

    summary = result.as_dict()
    summary["hour"] = iso_hour(hour_ms)
    summary["status"] = "ok"
    summary["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    severity = "WARNING" if summary["corrupt"] else "INFO"
    log(
        severity,
        f"compacted {summary['hour']}: {summary['written']} written, "
        f"{summary['existing']} already there, {summary['empty']} empty, "
        f"{len(summary['corrupt'])} corrupt objects skipped",
        **{k: v for k, v in summary.items() if k != "outputs"},
    )
    return _answer(summary, 200)


@functions_framework.http
def compact_hour(request: flask.Request) -> flask.Response:
    """Compact one closed hour of snapshots into one Parquet file per book."""
    return compact_hour_request(request)
