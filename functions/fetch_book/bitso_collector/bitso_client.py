"""Blocking Bitso client over one keep-alive `requests.Session` (used by sequential/threaded)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import requests

from .errors import ConnectionFailed, cut_off, timed_out, unreachable
from .replies import parse_order_book_reply
from .signing import ApiCredentials, NonceSource, authorization_header

ORDER_BOOK_PATH = "/v3/order_book/"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
USER_AGENT = "bitso-book-collector/0.1"


def order_book_path(book: str, aggregate: bool) -> str:
    """Path with query, exactly as signed and sent."""
    query = urlencode({"book": book, "aggregate": "true" if aggregate else "false"})
    return f"{ORDER_BOOK_PATH}?{query}"


class RequestSigner:
    """Builds the request headers, signed when keys are configured; shared by both clients."""

    def __init__(self, credentials: ApiCredentials | None) -> None:
        self._credentials = credentials
        self._nonces = NonceSource()

    def headers(self, method: str, path_with_query: str) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self._credentials is not None:
            headers["Authorization"] = authorization_header(
                self._credentials, self._nonces.next(), method, path_with_query
            )
        return headers


class BitsoClient:
    def __init__(
        self,
        api_url: str,
        credentials: ApiCredentials | None = None,
        *,
        pool_size: int = 16,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._signer = RequestSigner(credentials)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=pool_size, max_retries=0
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def order_book(
        self, book: str, aggregate: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """The order book payload; raises a `BitsoError` subtype for every kind of failure.

        `timeout` (the caller's limit for this request) can shorten the read timeout, never
        lengthen it.
        """
        return parse_order_book_reply(*self.get(order_book_path(book, aggregate), timeout))

    def get(self, path: str, timeout: float | None = None) -> tuple[int, bytes]:
        """Status and body of one signed GET, unread (the strategies read them with
        `strategies.slot_fetch`); raises a `BitsoError` subtype when there is no reply."""
        read_timeout = self.read_timeout if timeout is None else max(0.05, timeout)
        read_timeout = min(read_timeout, self.read_timeout)
        try:
            response = self._session.get(
                self.api_url + path,
                headers=self._signer.headers("GET", path),
                timeout=(min(self.connect_timeout, read_timeout), read_timeout),
            )
            body = response.content
        except requests.Timeout as error:
            raise timed_out(read_timeout) from error
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            raise cut_off() from None
        except requests.ConnectionError as error:
            if "timed out" in str(error).lower():
                raise timed_out(read_timeout) from error
            raise unreachable(self.api_url, error) from None
        except requests.RequestException as error:  # redirects, bad URLs, ...: still one slot
            raise ConnectionFailed(f"request failed: {type(error).__name__}") from None
        return response.status_code, body

    def close(self) -> None:
        self._session.close()
