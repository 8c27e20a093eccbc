"""Error types of a Bitso request, one per way it can go wrong; `reason` names it in run records."""

from __future__ import annotations


class BitsoError(Exception):
    reason = "bitso_error"


class Throttled(BitsoError):
    """HTTP 420/429 or error code 0801/0802: stop requesting for the rest of the minute."""

    reason = "throttled"


class UnknownBook(BitsoError):
    """Error code 0301: the book does not exist on Bitso."""

    reason = "unknown_book"


class BitsoApiError(BitsoError):
    """Any other `{"success": false}` reply."""

    reason = "api_error"


class ServerError(BitsoError):
    """HTTP 5xx."""

    reason = "http_5xx"


class HttpError(BitsoError):
    """A non-2xx status that is neither 5xx nor a Bitso error envelope (e.g. 404)."""

    reason = "http_error"


class RequestTimeout(BitsoError):
    reason = "timeout"


class ConnectionFailed(BitsoError):
    reason = "connection"


class MalformedReply(BitsoError):
    """A body that is not JSON or not the order book shape."""

    reason = "malformed"


class StorageError(Exception):
    """A snapshot or record could not be stored."""
