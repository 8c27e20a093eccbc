"""Whether Bitso can be reached at all: one TCP connection to its host (or to the proxy that
`requests` would go through), opened and closed again.

`bitso-collect` asks before it waits for a minute, so an unreachable Bitso is said at once
rather than after a minute of failed slots. No HTTP request is sent, so the check spends
nothing of the rate budget. The HTTP function never asks: in the cloud a minute just runs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from requests.utils import get_environ_proxies, select_proxy

from .bitso_client import CONNECT_TIMEOUT
from .errors import connection_cause

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Unreachable:
    """Why a connection to `host` could not even be opened."""

    host: str
    cause: str
    #: The proxy the connection was tried through (`host:port`), when one is configured.
    proxy: str | None = None

    def __str__(self) -> str:
        via = f" through the proxy {self.proxy}" if self.proxy else ""
        return f"cannot reach Bitso at {self.host}{via}: {self.cause}"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT) -> Unreachable | None:
    """None when a connection to `url`'s host opens within `timeout` seconds, else why not (its
    name does not resolve, the connection is refused, nothing answers, ...)."""
    host, port = _host_port(url)
    proxy_url = select_proxy(url, get_environ_proxies(url))
    proxy = None
    target = (host, port)
    if proxy_url:
        target = _host_port(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
        proxy = f"{target[0]}:{target[1]}"
    try:
        with socket.create_connection(target, timeout=timeout):
            return None
    except TimeoutError:
        cause = f"no connection within {timeout:.0f} s"
    except OSError as error:
        cause = connection_cause(error)
    return Unreachable(f"{host}:{port}", cause, proxy)
