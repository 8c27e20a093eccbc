"""Which Bitso keys a call signs with: local keys from the environment or `.env`, or none (the
order book is public, so unsigned is the default)."""

from __future__ import annotations

from .config import Settings
from .signing import ApiCredentials


class CredentialsError(RuntimeError):
    """Keys were configured but cannot be read; the message names where, never the value."""


def resolve_credentials(settings: Settings) -> ApiCredentials | None:
    if settings.api_key and settings.api_secret:
        return ApiCredentials(settings.api_key, settings.api_secret)
    return None
