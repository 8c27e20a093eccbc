"""Which keys a call signs with: Secret Manager (the real client over REST against a local fake),
else local keys, else none; and what a secret that cannot be read does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.auth.exceptions import DefaultCredentialsError

from bitso_collector import app, secrets
from bitso_collector.config import Settings
from bitso_collector.credentials import CredentialsError, resolve_credentials
from bitso_testkit.fake_secret_manager import FakeSecretManager

KEY_VALUE = "bitso-key-4f1c"
SECRET_VALUE = "bitso-secret-9d2e7a"
KEY_NAME = "projects/demo/secrets/bitso-api-key/versions/latest"
SECRET_NAME = "projects/demo/secrets/bitso-api-secret/versions/2"
FROM_SECRET_MANAGER = Settings(api_key_secret=KEY_NAME, api_secret_secret=SECRET_NAME)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSecretManager]:
    values: dict[str, str | list[str]] = {
        "projects/demo/secrets/bitso-api-key": f"{KEY_VALUE}\n",  # as `echo key | gcloud ...`
        "projects/demo/secrets/bitso-api-secret": ["an-old-secret", SECRET_VALUE],
    }
    with FakeSecretManager(values) as server:
        monkeypatch.setenv(secrets.ENDPOINT_ENV, server.url)
        yield server


def read_error(settings: Settings = FROM_SECRET_MANAGER) -> str:
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(settings)
    message = str(caught.value)
    assert KEY_VALUE not in message
    assert SECRET_VALUE not in message
    return message


def test_no_keys_means_unsigned() -> None:
    assert resolve_credentials(Settings()) is None


def test_local_keys_from_settings() -> None:
    credentials = resolve_credentials(Settings(api_key="k", api_secret="s"))

    assert credentials is not None
    assert (credentials.key, credentials.secret) == ("k", "s")
    assert "k" not in repr(credentials).replace("key", "")


def test_secret_manager_versions_are_read(fake: FakeSecretManager) -> None:
    credentials = resolve_credentials(FROM_SECRET_MANAGER)

    assert credentials is not None
    assert (credentials.key, credentials.secret) == (KEY_VALUE, SECRET_VALUE)
    assert [name for name, _ in fake.requests] == [KEY_NAME, SECRET_NAME]


def test_secret_manager_wins_over_local_keys(fake: FakeSecretManager) -> None:
    settings = Settings(
        api_key="local", api_secret="local", api_key_secret=KEY_NAME, api_secret_secret=SECRET_NAME
    )
    credentials = resolve_credentials(settings)

    assert credentials is not None
    assert credentials.key == KEY_VALUE


def test_the_client_factory_can_be_replaced_in_process(
    fake: FakeSecretManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    url = fake.url
    monkeypatch.delenv(secrets.ENDPOINT_ENV)
    made: list[Any] = []

    def factory() -> Any:
        made.append(
            secretmanager.SecretManagerServiceClient(
                transport="rest",
                client_options=ClientOptions(api_endpoint=url),
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
        )
        return made[-1]

    monkeypatch.setattr(secrets, "client_factory", factory)
    credentials = resolve_credentials(FROM_SECRET_MANAGER)

    assert credentials is not None
    assert credentials.secret == SECRET_VALUE
    assert len(made) == 1


def test_a_missing_secret_names_the_variable_and_the_version(fake: FakeSecretManager) -> None:
    missing = "projects/demo/secrets/nope/versions/1"
    message = read_error(Settings(api_key_secret=KEY_NAME, api_secret_secret=missing))

    assert f"BITSO_API_SECRET_SECRET={missing}" in message
    assert "does not exist" in message


def test_a_missing_version_is_named(fake: FakeSecretManager) -> None:
    missing = "projects/demo/secrets/bitso-api-secret/versions/7"
    message = read_error(Settings(api_key_secret=KEY_NAME, api_secret_secret=missing))

    assert missing in message


def test_permission_denied_says_which_role(fake: FakeSecretManager) -> None:
    fake.denied.add("projects/demo/secrets/bitso-api-key")
    message = read_error()

    assert f"BITSO_API_KEY_SECRET={KEY_NAME}" in message
    assert "roles/secretmanager.secretAccessor" in message


def test_transient_errors_are_retried(fake: FakeSecretManager) -> None:
    fake.fail(2, 503)

    credentials = resolve_credentials(FROM_SECRET_MANAGER)

    assert credentials is not None
    assert credentials.key == KEY_VALUE
    assert [status for _, status in fake.requests] == [503, 503, 200, 200]


def test_a_corrupted_payload_is_refused(fake: FakeSecretManager) -> None:
    fake.corrupt_crc = True

    assert "CRC32C" in read_error()


def test_an_empty_secret_is_refused(fake: FakeSecretManager) -> None:
    fake.add("projects/demo/secrets/bitso-api-key", " \n")

    assert "empty" in read_error()


def test_no_application_default_credentials_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def factory() -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(secrets, "client_factory", factory)

    assert "gcloud auth application-default login" in read_error()


def test_an_unreachable_endpoint_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.ENDPOINT_ENV, "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setattr(secrets, "READ_BUDGET_S", 1.0)

    assert f"BITSO_API_KEY_SECRET={KEY_NAME}" in read_error()


def test_a_failed_read_is_not_cached_a_good_one_is(
    fake: FakeSecretManager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The instance's runtime is built on its first call: after a failure the next call reads
    again (so a late IAM grant heals without a redeploy); after success nothing is read again."""
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("BITSO_API_KEY_SECRET", KEY_NAME)
    monkeypatch.setenv("BITSO_API_SECRET_SECRET", SECRET_NAME)
    monkeypatch.setenv("LOCAL_DATA_DIR", str(tmp_path))
    fake.denied.add("projects/demo/secrets/bitso-api-key")
    app.reset_runtime()
    try:
        with pytest.raises(CredentialsError):
            app.get_runtime()
        fake.denied.clear()
        first = app.get_runtime()
        again = app.get_runtime()
    finally:
        app.reset_runtime()

    assert first is again
    assert [name for name, _ in fake.requests] == [KEY_NAME, KEY_NAME, SECRET_NAME]


def test_a_secret_that_cannot_go_into_a_header_is_refused_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values: dict[str, str | list[str]] = {
        "projects/demo/secrets/bitso-api-key": KEY_VALUE,
        "projects/demo/secrets/bitso-api-secret": ["an-old-secret", f"{SECRET_VALUE}\nline 2"],
    }
    with FakeSecretManager(values) as server:
        monkeypatch.setenv(secrets.ENDPOINT_ENV, server.url)
        message = read_error()
    assert message.startswith(f"BITSO_API_SECRET_SECRET={SECRET_NAME} holds a value that has")
    assert "control character (at position 20)" in message
