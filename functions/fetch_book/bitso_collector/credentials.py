"""Which Bitso keys a call signs with, read once per instance (on its first call):

1. `BITSO_API_KEY_SECRET` and `BITSO_API_SECRET_SECRET` name Secret Manager versions: read them;
2. else `BITSO_API_KEY` and `BITSO_API_SECRET` from the environment or `.env`;
3. else none: the order book is public, so unsigned is the default.

A secret that cannot be read is a `CredentialsError` naming the variable and the secret version
(never a value). Nothing is cached on failure: `app.get_runtime` keeps no runtime when building it
raised, so the next call reads the secrets again (a permission granted late, or a transient
outage, heals without a redeploy).
"""

from __future__ import annotations

from . import secrets
from .config import Settings
from .signing import ApiCredentials, credential_problem


class CredentialsError(RuntimeError):
    """Keys were configured but cannot be read; the message names where, never the value."""


def resolve_credentials(settings: Settings) -> ApiCredentials | None:
    if settings.api_key_secret and settings.api_secret_secret:
        return _from_secret_manager(settings.api_key_secret, settings.api_secret_secret)
    if settings.api_key and settings.api_secret:
        return ApiCredentials(settings.api_key, settings.api_secret)
    return None


def _from_secret_manager(key_version: str, secret_version: str) -> ApiCredentials:
    variables = {key_version: "BITSO_API_KEY_SECRET", secret_version: "BITSO_API_SECRET_SECRET"}
    try:
        key, secret = secrets.read_secrets([key_version, secret_version])
    except secrets.SecretReadError as error:
        if error.name is None:
            raise CredentialsError(f"cannot read the Bitso API keys: {error.reason}") from None
        raise CredentialsError(
            f"cannot read {variables[error.name]}={error.name} from Secret Manager: {error.reason}"
        ) from None
    for version, value in ((key_version, key), (secret_version, secret)):
        problem = credential_problem(value)
        if problem:
            raise CredentialsError(f"{variables[version]}={version} holds a value that {problem}")
    return ApiCredentials(key, secret)
