"""Bitso's HMAC-SHA256 request signature (header `Authorization: Bitso <key>:<nonce>:<sig>`)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ApiCredentials:
    key: str
    secret: str

    def __repr__(self) -> str:
        return "ApiCredentials(key=***, secret=***)"


def signature(secret: str, nonce: str, method: str, path_with_query: str, body: str = "") -> str:
    message = f"{nonce}{method.upper()}{path_with_query}{body}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def authorization_header(
    credentials: ApiCredentials, nonce: str, method: str, path_with_query: str, body: str = ""
) -> str:
    sig = signature(credentials.secret, nonce, method, path_with_query, body)
    return f"Bitso {credentials.key}:{nonce}:{sig}"


def credential_problem(value: str) -> str | None:
    """Why `value` cannot be a Bitso key or secret, or None; the answer never repeats it.

    Both go into (or sign) the `Authorization` header, so they must be printable ASCII: a
    newline would split the header, a character beyond Latin-1 cannot be sent at all.
    """
    for position, char in enumerate(value, start=1):
        if not " " <= char <= "~":
            kind = "is not ASCII" if not char.isascii() else "is a control character"
            return (
                f"has a character that {kind} (at position {position}); "
                "allowed: printable ASCII, as Bitso's keys are letters and digits"
            )
    return None


class NonceSource:
    """Strictly increasing millisecond nonces, safe to share between threads."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, int(time.time() * 1000))
            return str(self._last)
