"""What one HTTP call asks for: its body (`books`, `duration_seconds`) and scheduler headers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from bitso_format import parse_rfc3339

from .config import ConfigError, validate_books

SCHEDULE_HEADER = "X-CloudScheduler-ScheduleTime"
TRACE_HEADER = "X-Cloud-Trace-Context"
BODY_FIELDS = ("books", "duration_seconds")
MAX_DURATION_SECONDS = 60


class Headers(Protocol):
    """Case-insensitive header lookup, as Werkzeug's `Headers` does it."""

    def get(self, key: str) -> str | None: ...


class BadRequest(ValueError):
    """The call's body or headers are not allowed; the message says what and what is."""


@dataclass(frozen=True)
class CallOptions:
    books: tuple[str, ...] | None = None
    duration_seconds: float | None = None
    schedule_time: float | None = None
    trace_header: str | None = None


def parse_body(raw: bytes) -> dict[str, Any]:
    """Books and duration from a JSON body; an empty body asks for the defaults."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(
            'the body is not JSON; send {"books": [...], "duration_seconds": N} or nothing'
        ) from None
    if not isinstance(body, dict):
        raise BadRequest(
            'the body must be a JSON object such as {"books": ["btc_mxn"], "duration_seconds": 5}'
        )
    unknown = sorted(set(body) - set(BODY_FIELDS))
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(BODY_FIELDS)}"
        )
    parsed: dict[str, Any] = {}
    if "books" in body:
        books = body["books"]
        if not (isinstance(books, list) and books and all(isinstance(b, str) for b in books)):
            raise BadRequest('"books" must be a non-empty list of book names such as ["btc_mxn"]')
        try:
            parsed["books"] = validate_books(tuple(books), '"books"')
        except ConfigError as error:
            raise BadRequest(str(error)) from None
    if "duration_seconds" in body:
        duration = body["duration_seconds"]
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not 1 <= duration <= MAX_DURATION_SECONDS
        ):
            raise BadRequest(
                f'"duration_seconds" must be a number from 1 to {MAX_DURATION_SECONDS}, '
                f"got {duration!r}"
            )
        parsed["duration_seconds"] = float(duration)
    return parsed


def parse_call(body: bytes, headers: Headers) -> CallOptions:
    parsed = parse_body(body)
    schedule_time = None
    raw_time = headers.get(SCHEDULE_HEADER)
    if raw_time:
        try:
            schedule_time = parse_rfc3339(raw_time) / 1000
        except ValueError:
            raise BadRequest(
                f"{SCHEDULE_HEADER}={raw_time!r} is not an RFC 3339 time "
                "such as 2026-11-24T10:15:00Z"
            ) from None
    return CallOptions(
        books=parsed.get("books"),
        duration_seconds=parsed.get("duration_seconds"),
        schedule_time=schedule_time,
        trace_header=headers.get(TRACE_HEADER),
    )
