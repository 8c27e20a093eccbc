"""Ways to wait on requests; all driven by the same slot grid, pacing rules and recorder."""

from __future__ import annotations

from ..bitso_client import BitsoClient
from ..signing import ApiCredentials
from .base import FetchJob, Strategy
from .blocking import SequentialStrategy, ThreadedStrategy

__all__ = ["FetchJob", "Strategy", "make_strategy"]


def make_strategy(name: str, api_url: str, credentials: ApiCredentials | None) -> Strategy:
    if name == "sequential":
        return SequentialStrategy(BitsoClient(api_url, credentials))
    if name == "threaded":
        return ThreadedStrategy(BitsoClient(api_url, credentials))
    if name == "asyncio":
        # Imported here so aiohttp is loaded only when this strategy is chosen (fast cold start).
        from .asyncio_strategy import AsyncioStrategy  # noqa: PLC0415

        return AsyncioStrategy(api_url, credentials)
    raise ValueError(f"unknown strategy {name!r}; allowed: sequential, threaded, asyncio")
