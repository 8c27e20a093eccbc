"""Parsing Bitso's reply envelopes into a payload or one of the error types (no I/O)."""

from __future__ import annotations

import json
from typing import Any

from .errors import (
    BitsoApiError,
    BitsoError,
    HttpError,
    MalformedReply,
    ServerError,
    Throttled,
    UnknownBook,
)

THROTTLE_STATUSES = (420, 429)
THROTTLE_CODES = ("0801", "0802")
UNKNOWN_BOOK_CODE = "0301"


def _error_from_envelope(status: int, error: Any) -> BitsoError:
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    text = f"HTTP {status}, code {code or '?'}: {message or 'no message'}"
    if status in THROTTLE_STATUSES or code in THROTTLE_CODES:
        return Throttled(text)
    if code == UNKNOWN_BOOK_CODE:
        return UnknownBook(text)
    if status >= 500:
        return ServerError(text)
    return BitsoApiError(text)


def _status_error(status: int) -> BitsoError | None:
    """What a status means on its own, when the body says nothing more."""
    if status in THROTTLE_STATUSES:
        return Throttled(f"HTTP {status}")
    if status >= 500:
        return ServerError(f"HTTP {status}")
    if status != 200:
        return HttpError(f"HTTP {status}")
    return None


def reply_payload(status: int, body: bytes) -> Any:
    """The `payload` of a successful reply of any public endpoint; raises a `BitsoError`
    subtype for an error envelope, a failing status or a body that is not Bitso's envelope."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict):
        raise _status_error(status) or MalformedReply(
            f"HTTP 200 with a body that is not a JSON object ({len(body)} bytes)"
        )
    if document.get("success") is not True:
        if "error" in document or document.get("success") is False:
            raise _error_from_envelope(status, document.get("error"))
        raise MalformedReply(f"HTTP {status} without a success flag")
    status_error = _status_error(status)
    if status_error is not None:
        raise status_error
    return document.get("payload")


def parse_order_book_reply(status: int, body: bytes) -> dict[str, Any]:
    """The `payload` of a successful order book reply; raises a `BitsoError` subtype otherwise."""
    payload = reply_payload(status, body)
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("bids"), list)
        and isinstance(payload.get("asks"), list)
        and "sequence" in payload
    ):
        raise MalformedReply("the payload is not an order book (bids, asks, sequence)")
    return payload
