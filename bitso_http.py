"""The HTTP-function glue both Cloud Functions share (`fetch_book` and `compact_hour`): the
instance's runtime built once, on the first call; Cloud Scheduler's schedule-time header; the
bad-request error; and the JSON answer.

Zipped beside each function's `main.py`, like `bitso_format`; it needs only Flask, which
functions-framework brings.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import flask

from bitso_format import ms_to_datetime, parse_rfc3339

#: The header Cloud Scheduler sends with the time the job was scheduled for (RFC 3339).
SCHEDULE_HEADER = "X-CloudScheduler-ScheduleTime"

T = TypeVar("T")


class Headers(Protocol):
    """Case-insensitive header lookup, as Werkzeug's `Headers` does it."""

    def get(self, key: str) -> str | None: ...


class BadRequest(ValueError):
    """The call's body or headers are not allowed (HTTP 400); the message says what and what is."""

    reason = "bad_request"


def schedule_time_ms(headers: Headers) -> int | None:
    """The schedule time the call names (epoch ms), or None when it sends none."""
    raw = headers.get(SCHEDULE_HEADER)
    if not raw:
        return None
    try:
        at_ms = parse_rfc3339(raw)
    except ValueError:
        raise BadRequest(
            f"{SCHEDULE_HEADER}={raw!r} is not an RFC 3339 time such as 2026-11-24T10:15:00Z"
        ) from None
    try:
        ms_to_datetime(at_ms)  # a record must be able to name its minute or hour
    except OverflowError:
        raise BadRequest(
            f"{SCHEDULE_HEADER}={raw!r} is outside the years 0001 to 9999 in UTC"
        ) from None
    return at_ms


def json_answer(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> flask.Response:
    """A JSON answer, indented for a person reading it with curl."""
    return flask.Response(
        json.dumps(body, indent=2) + "\n",
        status=status,
        mimetype="application/json",
        headers=headers,
    )


class InstanceRuntime(Generic[T]):
    """What an instance builds once, on its first call (settings, clients), and reuses after:
    nothing connects at import. `reset` forgets it, for tests that change the environment."""

    def __init__(self, build: Callable[[], T], close: Callable[[T], None] | None = None) -> None:
        self._build = build
        self._close = close
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def reset(self) -> None:
        with self._lock:
            value, self._value = self._value, None
            if value is not None and self._close is not None:
                self._close(value)
