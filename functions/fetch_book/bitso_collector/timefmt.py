"""UTC timestamp formatting and parsing used in object names, snapshots and run records."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


def iso_millis(epoch_seconds: float) -> str:
    """`2026-11-24T10:15:07.118Z`: milliseconds, truncated, always UTC."""
    millis = int(epoch_seconds * 1000 + 1e-6)
    moment = datetime.fromtimestamp(millis // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def iso_minute(epoch_seconds: float) -> str:
    return f"{utc(epoch_seconds):%Y-%m-%dT%H:%M}:00Z"


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of an RFC 3339 time such as `2026-11-24T10:15:00Z` or with an offset."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("time has no UTC offset")
    return moment.timestamp()
