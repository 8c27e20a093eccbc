"""Error types of a Bitso request, one per way it can go wrong; `reason` names it in run records."""

from __future__ import annotations

import socket
import ssl

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


def connection_cause(error: BaseException) -> str:
    """Why a connection failed, in words (`name resolution failed (...)`, `connection refused`),
    found among the errors HTTP clients wrap one in another (causes, `reason`, `os_error`)."""
    seen: set[int] = set()
    queue: list[BaseException] = [error]
    described: str | None = None
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return f"name resolution failed ({current.strerror or current})"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS certificate refused ({current.verify_message or current.reason})"
        if isinstance(current, ssl.SSLError):
            return f"TLS failed ({current.reason or current})"
        if described is None and isinstance(current, OSError) and current.strerror:
            described = current.strerror
        wrapped = [current.__cause__, current.__context__, *current.args]
        wrapped += [getattr(current, "reason", None), getattr(current, "os_error", None)]
        queue.extend(item for item in wrapped if isinstance(item, BaseException))
    return described or type(error).__name__


# The transport failures both clients name alike, whatever their HTTP library calls them.
def timed_out(limit: float) -> RequestTimeout:
    """No reply within the request's time limit (`limit` seconds)."""
    return RequestTimeout(f"no reply within {limit:.1f} s")


def cut_off() -> MalformedReply:
    """A reply whose body ended early or could not be decoded."""
    return MalformedReply("the reply body was cut off or badly encoded")


def unreachable(api_url: str, error: BaseException) -> ConnectionFailed:
    """No connection to `api_url`; the cause is found in the library's wrapped errors."""
    return ConnectionFailed(f"cannot reach {api_url}: {connection_cause(error)}")


def unexpected(error: Exception) -> BitsoError:
    """A request that failed in a way no error type above covers (a bug), as a slot failure.

    Only the type is named: the message of an unknown error may quote a header, and so a key.
    """
    return BitsoError(f"unexpected {type(error).__name__}")


class StorageError(Exception):
    """A snapshot or record could not be stored."""
