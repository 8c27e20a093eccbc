"""Secret Manager adapter: read secret versions with google-cloud-secret-manager.

The library is imported on first use (never when the package is imported), over the REST
transport. Where the client connects:

- by default, Secret Manager itself, with Application Default Credentials;
- `SECRET_MANAGER_ENDPOINT=http://127.0.0.1:PORT` (an emulator or the tests' fake; the library
  has no emulator variable of its own): that endpoint, with anonymous credentials, as
  `STORAGE_EMULATOR_HOST` does for GCS. An `https://` value (e.g. a regional endpoint) keeps ADC;
- in-process tests may replace `client_factory` instead.

Errors say which secret and why, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

ENDPOINT_ENV = "SECRET_MANAGER_ENDPOINT"
#: Per attempt, and for all attempts of one secret (retries on 429, 500, 503, 504).
ATTEMPT_TIMEOUT_S = 5.0
READ_BUDGET_S = 10.0


class SecretReadError(Exception):
    """A secret version could not be read: `reason` says why (never a value), `name` which."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.name = name


def default_client() -> Any:
    """A `SecretManagerServiceClient` over REST, pointed as the module docstring says."""
    from google.api_core.client_options import ClientOptions  # noqa: PLC0415
    from google.cloud import secretmanager  # noqa: PLC0415 - keep imports fast

    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if not endpoint:
        return secretmanager.SecretManagerServiceClient(transport="rest")
    options = ClientOptions(api_endpoint=endpoint)
    if endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

        return secretmanager.SecretManagerServiceClient(
            transport="rest",
            client_options=options,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    return secretmanager.SecretManagerServiceClient(transport="rest", client_options=options)


#: Makes the client `read_secrets` uses; tests in the same process may replace it.
client_factory: Callable[[], Any] = default_client


def _retry() -> Any:
    import requests  # noqa: PLC0415
    from google.api_core import exceptions, retry  # noqa: PLC0415

    return retry.Retry(
        predicate=retry.if_exception_type(
            exceptions.TooManyRequests,
            exceptions.InternalServerError,
            exceptions.ServiceUnavailable,
            exceptions.GatewayTimeout,
            exceptions.DeadlineExceeded,
            requests.ConnectionError,
            requests.Timeout,
        ),
        initial=0.2,
        maximum=2.0,
        multiplier=2.0,
        timeout=READ_BUDGET_S,
    )


def _reason(error: BaseException) -> str:
    """Why a read failed, in words an operator can act on (no payloads are ever included)."""
    from google.api_core import exceptions  # noqa: PLC0415
    from google.auth import exceptions as auth_exceptions  # noqa: PLC0415

    if isinstance(error, exceptions.NotFound):
        return "it does not exist (404 NOT_FOUND): check the project, secret and version"
    if isinstance(error, exceptions.PermissionDenied | exceptions.Forbidden):
        return (
            "permission denied (403): grant roles/secretmanager.secretAccessor on it "
            "to the function's service account"
        )
    if isinstance(error, exceptions.Unauthenticated | exceptions.Unauthorized):
        return "not authenticated (401): the credentials were refused"
    if isinstance(error, exceptions.FailedPrecondition):
        return f"the version cannot be accessed (disabled or destroyed?): {error.message}"
    if isinstance(error, exceptions.RetryError):
        cause = error.cause
        detail = _reason(cause) if cause is not None else "no answer"
        return f"gave up after retrying for {READ_BUDGET_S:.0f} s: {detail}"
    if isinstance(error, auth_exceptions.DefaultCredentialsError):
        return (
            "no Application Default Credentials; run `gcloud auth application-default login` "
            "or set BITSO_API_KEY/BITSO_API_SECRET instead"
        )
    if isinstance(error, exceptions.GoogleAPICallError):
        message = re.sub(r"^(GET|POST) \S+: ", "", str(error.message))
        return f"HTTP {error.code}: {' '.join(message.split())[:200]}"
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _payload_text(response: Any) -> str:
    import google_crc32c  # noqa: PLC0415

    payload = response.payload
    data = bytes(payload.data)
    if "data_crc32c" in payload and google_crc32c.value(data) != payload.data_crc32c:
        raise SecretReadError("its payload failed the CRC32C check (corrupted in transit)")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretReadError("its value is not UTF-8 text") from None
    if not text:
        raise SecretReadError("its value is empty")
    return text


def read_secrets(names: list[str]) -> list[str]:
    """The values of `names` (full version names), in order; `SecretReadError` names the
    first that cannot be read (its `.name`)."""
    try:
        client = client_factory()
    except Exception as error:
        reason = f"cannot create the Secret Manager client: {_reason(error)}"
        raise SecretReadError(reason) from None
    try:
        values = []
        for name in names:
            try:
                response = client.access_secret_version(
                    request={"name": name}, retry=_retry(), timeout=ATTEMPT_TIMEOUT_S
                )
                values.append(_payload_text(response))
            except SecretReadError as error:
                raise SecretReadError(error.reason, name) from None
            except Exception as error:
                raise SecretReadError(_reason(error), name) from None
        return values
    finally:
        transport = getattr(client, "transport", None)
        if transport is not None and hasattr(transport, "close"):
            transport.close()
