"""The ``compact_hour`` function's logic: settings parsed once, the hour asked for, one answer.

POST with no body compacts the hour that closed before the request time (the
``X-CloudScheduler-ScheduleTime`` header when Cloud Scheduler sends one, else now); a JSON body
``{"hour": "2026-11-24T10"}`` names the hour instead. Answers a JSON summary: 200 when every
book-hour is written or already there, 400 for a bad body, a schedule time that is not one, or an
hour that has not ended, 500 when
the instance is misconfigured or something failed. Logs one JSON object a line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flask

from bitso_archive.compact import HourNotClosedError, compact_hour
from bitso_archive.layout import parse_time
from bitso_archive.sources import GcsSource, LocalSource, Source
from bitso_format import (
    DEFAULT_COMPACTED_PREFIX,
    HOUR_MS,
    floor_hour,
    iso_hour,
    parse_bucket,
    parse_object_prefix,
)
from bitso_http import BadRequest, InstanceRuntime, json_answer, schedule_time_ms
from bitso_logs import JsonLogger

_HOUR = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}(:00(:00(\.0+)?)?(Z|[+-]00:?00)?)?")
_BODY_SHAPE = 'the body must be JSON like {"hour": "2026-11-24T10"}'

log = JsonLogger()


class SettingsError(ValueError):
    """A setting has a value that is not allowed; the message names both."""

    reason = "misconfigured"


@dataclass(frozen=True)
class CompactSettings:
    gcs_bucket: str | None = None
    object_prefix: str = ""
    local_data_dir: str = "data"
    compacted_prefix: str = DEFAULT_COMPACTED_PREFIX

    def source(self) -> Source:
        """Where the archive is (nothing connects until the first read)."""
        if self.gcs_bucket:
            return GcsSource(self.gcs_bucket, self.object_prefix)
        root = os.path.join(self.local_data_dir, self.object_prefix)
        return LocalSource(root if self.object_prefix else self.local_data_dir)


def load_settings(environ: Mapping[str, str] | None = None) -> CompactSettings:
    env = os.environ if environ is None else environ

    def checked(name: str, parse: Any, default: str = "") -> Any:
        raw = env.get(name, default)
        try:
            return parse(raw)
        except ValueError as error:
            raise SettingsError(f"{name}={raw!r} {error}") from None

    return CompactSettings(
        gcs_bucket=checked("GCS_BUCKET", parse_bucket),
        object_prefix=checked("OBJECT_PREFIX", parse_object_prefix),
        local_data_dir=env.get("LOCAL_DATA_DIR", "data").strip() or "data",
        compacted_prefix=checked("COMPACTED_PREFIX", parse_object_prefix, DEFAULT_COMPACTED_PREFIX)
        or DEFAULT_COMPACTED_PREFIX,
    )


def hour_asked(body: bytes, schedule_ms: int | None, now_ms: int) -> int:
    """The hour to compact (epoch ms): the body's, else the one before the schedule time (the
    request's time when the call names none)."""
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError:
            raise BadRequest(_BODY_SHAPE) from None
        if not isinstance(parsed, dict) or set(parsed) - {"hour"}:
            raise BadRequest(_BODY_SHAPE)
        if "hour" in parsed:
            hour = parsed["hour"]
            if not isinstance(hour, str) or not _HOUR.fullmatch(hour.strip()):
                raise BadRequest(f"hour {hour!r} must look like 2026-11-24T10 (UTC)")
            try:
                return parse_time(hour.strip())
            except ValueError as error:  # e.g. 2026-13-01T10: the shape fits, the date does not
                raise BadRequest(str(error)) from None
    return floor_hour(now_ms if schedule_ms is None else schedule_ms) - HOUR_MS


class _JsonLines(logging.Handler):
    """bitso_archive's own warnings (corrupt objects) as structured log lines too."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelname, record.getMessage(), logger=record.name)


def _route_archive_warnings() -> None:
    archive_log = logging.getLogger("bitso_archive")
    if not any(isinstance(h, _JsonLines) for h in archive_log.handlers):
        archive_log.addHandler(_JsonLines())
    archive_log.setLevel(logging.WARNING)
    archive_log.propagate = False


def _runtime_from_environment() -> tuple[CompactSettings, Source]:
    settings = load_settings()
    _route_archive_warnings()
    return settings, settings.source()


_instance = InstanceRuntime(_runtime_from_environment)
#: The instance's settings and source, parsed and made once, on the first call.
get_runtime = _instance.get
#: Forget the instance's settings (tests that change the environment between apps).
reset_runtime = _instance.reset


def handle(request: flask.Request) -> flask.Response:
    now_ms = int(time.time() * 1000)
    try:
        settings, source = get_runtime()
    except SettingsError as error:
        log.error("cannot start: bad configuration", reason=str(error))
        return json_answer({"status": error.reason, "error": str(error)}, 500)
    try:
        hour_ms = hour_asked(
            request.get_data(cache=True), schedule_time_ms(request.headers), now_ms
        )
        started = time.monotonic()
        result = compact_hour(
            source, hour_ms, compacted_prefix=settings.compacted_prefix, now=now_ms
        )
    except (BadRequest, HourNotClosedError) as error:  # both checked before any I/O
        log.warning(f"bad request: {error}")
        return json_answer({"status": BadRequest.reason, "error": str(error)}, 400)
    except Exception as error:
        hour = iso_hour(hour_ms)
        log.error(f"compacting {hour} failed: {error}", hour=hour, exc_info=True)
        return json_answer({"status": "error", "hour": hour, "error": str(error)}, 500)

    summary = result.as_dict()
    summary["hour"] = iso_hour(hour_ms)
    summary["status"] = "ok"
    summary["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    log.log(
        "WARNING" if summary["corrupt"] else "INFO",
        f"compacted {summary['hour']}: {summary['written']} written, "
        f"{summary['existing']} already there, {summary['empty']} empty, "
        f"{len(summary['corrupt'])} corrupt objects skipped",
        **{k: v for k, v in summary.items() if k != "outputs"},
    )
    return json_answer(summary, 200)
