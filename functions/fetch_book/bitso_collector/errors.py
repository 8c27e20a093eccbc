"""Error types of a Bitso request, one per way it can go wrong; `reason` names it in run records."""

from __future__ import annotations

from .outcomes import Outcome


class BitsoError(Exception):
    """A request for one slot failed; `reason` is the slot's outcome."""

    reason: Outcome = Outcome.BITSO_ERROR


class Throttled(BitsoError):
    """HTTP 420/429 or error code 0801/0802: stop requesting for the rest of the minute."""

    reason = Outcome.THROTTLED


class UnknownBook(BitsoError):
    """Error code 0301: the book does not exist on Bitso."""

    reason = Outcome.UNKNOWN_BOOK


class BitsoApiError(BitsoError):
    """Any other `{"success": false}` reply."""

    reason = Outcome.API_ERROR


class ServerError(BitsoError):
    """HTTP 5xx."""

    reason = Outcome.HTTP_5XX


class HttpError(BitsoError):
    """A non-2xx status that is neither 5xx nor a Bitso error envelope (e.g. 404)."""

    reason = Outcome.HTTP_ERROR


class RequestTimeout(BitsoError):
    reason = Outcome.TIMEOUT


class ConnectionFailed(BitsoError):
    reason = Outcome.CONNECTION


class MalformedReply(BitsoError):
    """A body that is not JSON or not the order book shape."""

    reason = Outcome.MALFORMED


class StorageError(Exception):
    """A snapshot or record could not be stored."""
