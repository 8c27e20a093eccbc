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


class NonceSource:
    """Strictly increasing millisecond nonces, safe to share between threads."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, int(time.time() * 1000))
            return str(self._last)
