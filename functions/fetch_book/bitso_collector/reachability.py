"""Whether Bitso can be reached at all: one TCP connection to its host (or to the proxy that
`requests` would go through), opened and closed again.

`bitso-collect` asks before it waits for a minute, so an unreachable Bitso is said at once
rather than after a minute of failed slots. No HTTP request is sent, so the check spends
nothing of the rate budget. The HTTP function never asks: in the cloud a minute just runs.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from requests.utils import get_environ_proxies, select_proxy

from .bitso_client import CONNECT_TIMEOUT
from .errors import connection_cause

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The check never takes longer than this, however slowly a name fails to resolve.
GIVE_UP_AFTER_S = 10.0


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


def unreachable(
    url: str, connect_timeout: float = CONNECT_TIMEOUT, give_up_after: float = GIVE_UP_AFTER_S
) -> Unreachable | None:
    """None when a connection to `url`'s host opens (each address tried for `connect_timeout`
    seconds, as the client would), else why not: its name does not resolve, the connection is
    refused, nothing answers. Gives up after `give_up_after` seconds in all, name resolution
    included (which has no timeout of its own)."""
    host, port = _host_port(url)
    proxy_url = select_proxy(url, get_environ_proxies(url))
    proxy = None
    target = (host, port)
    if proxy_url:
        target = _host_port(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
        proxy = f"{target[0]}:{target[1]}"
    outcome: list[OSError | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection(target, timeout=connect_timeout):
                outcome.append(None)
        except OSError as error:
            outcome.append(error)

    worker = threading.Thread(target=attempt, name="reachability", daemon=True)
    worker.start()
    worker.join(give_up_after)
    if not outcome:
        cause = f"no answer within {give_up_after:g} s (name resolution or connection)"
    elif outcome[0] is None:
        return None
    elif isinstance(outcome[0], TimeoutError):
        cause = f"no connection within {connect_timeout:g} s"
    else:
        cause = connection_cause(outcome[0])
    return Unreachable(f"{host}:{port}", cause, proxy)
