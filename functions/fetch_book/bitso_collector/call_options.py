"""What one HTTP call asks for: its body (`books`, `duration_seconds`) and scheduler headers.

Parsing is bounded: a body over `MAX_BODY_BYTES` is refused unparsed, nesting is checked in one
pass before `json` sees it, and at most `MAX_BOOKS` books are looked at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bitso_format import BITSO_LIMIT_PER_MINUTE
from bitso_http import BadRequest, Headers, schedule_time_ms

from .config import ConfigError, validate_books

TRACE_HEADER = "X-Cloud-Trace-Context"
BODY_FIELDS = ("books", "duration_seconds")
MAX_DURATION_SECONDS = 60
#: A call makes at most one request a slot and a minute holds at most Bitso's 60 slots, so a
#: 61st book could never be requested in the call's minute: more is a mistake, refused.
MAX_BOOKS = BITSO_LIMIT_PER_MINUTE
#: The largest body served (413 beyond). The largest useful one, `MAX_BOOKS` books with a
#: duration, pretty-printed, is under 2 KB.
MAX_BODY_BYTES = 4096
#: A body is an object holding at most a list: two levels. Deeper is refused before parsing,
#: so `json` never recurses on what a caller sends.
MAX_NESTING = 2


class BodyTooLarge(BadRequest):
    """The body is over `MAX_BODY_BYTES` (HTTP 413); it is not parsed."""

    def __init__(self) -> None:
        super().__init__(
            f"the body is larger than {MAX_BODY_BYTES} bytes, the limit; a body names at most "
            f"{MAX_BOOKS} books and a duration, e.g. "
            '{"books": ["btc_mxn"], "duration_seconds": 5}'
        )


@dataclass(frozen=True)
class CallOptions:
    books: tuple[str, ...] | None = None
    duration_seconds: float | None = None
    schedule_time: float | None = None
    trace_header: str | None = None


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON `text`, strings skipped: one linear pass."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_body(raw: bytes) -> dict[str, Any]:
    """Books and duration from a JSON body; an empty body asks for the defaults."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLarge
    not_json = BadRequest(
        'the body is not JSON in UTF-8; send {"books": [...], "duration_seconds": N} or nothing'
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise not_json from None
    if not text.strip():
        return {}
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise BadRequest(
            f"the body nests arrays or objects {depth} levels deep; allowed: an object with "
            'a list of books, e.g. {"books": ["btc_mxn"], "duration_seconds": 5}'
        )
    try:
        body = json.loads(text)
    except ValueError:
        raise not_json from None
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
        if len(books) > MAX_BOOKS:
            raise BadRequest(
                f'"books" names {len(books)} books; at most {MAX_BOOKS} are allowed, as a '
                f"minute holds at most {BITSO_LIMIT_PER_MINUTE} requests"
            )
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
    schedule_ms = schedule_time_ms(headers)
    return CallOptions(
        books=parsed.get("books"),
        duration_seconds=parsed.get("duration_seconds"),
        schedule_time=None if schedule_ms is None else schedule_ms / 1000,
        trace_header=headers.get(TRACE_HEADER),
    )
