"""Settings: defaults, `.env`, and one clear message per bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bitso_collector.config import (
    ConfigError,
    Settings,
    load_settings,
    read_dotenv,
)


def settings(**env: str) -> Settings:
    return load_settings(env, dotenv=None)


def test_defaults_follow_the_design() -> None:
    s = settings()
    assert s.books == ("btc_mxn",)
    assert s.api_url == "https://api.bitso.com"
    assert s.aggregate is True
    assert s.requests_per_minute == 59
    assert s.strategy == "threaded"
    assert s.gcs_bucket is None
    assert s.local_data_dir == "data"
    assert s.object_prefix == ""
    assert s.compression == "none"


def test_values_are_parsed() -> None:
    s = settings(
        BITSO_BOOKS="btc_mxn, eth_mxn",
        BITSO_AGGREGATE="FALSE",
        REQUESTS_PER_MINUTE="60",
        STRATEGY="Sequential",
        GCS_BUCKET="gs://my-bucket/",
        OBJECT_PREFIX="/raw/bitso/",
        COMPRESSION="gzip",
        BITSO_API_URL="http://127.0.0.1:9000/",
    )
    assert s.books == ("btc_mxn", "eth_mxn")
    assert s.aggregate is False
    assert s.requests_per_minute == 60
    assert s.strategy == "sequential"
    assert s.gcs_bucket == "my-bucket"
    assert s.object_prefix == "raw/bitso"
    assert s.compression == "gzip"
    assert s.api_url == "http://127.0.0.1:9000"


def test_settings_are_immutable() -> None:
    s = settings()
    with pytest.raises(AttributeError):
        s.books = ("eth_mxn",)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"STRATEGY": "multiprocess"}, ["STRATEGY", "sequential, threaded, asyncio"]),
        ({"BITSO_BOOKS": "BTC-MXN"}, ["BITSO_BOOKS", "'BTC-MXN'", "btc_mxn"]),
        ({"BITSO_BOOKS": "btc_mxn,"}, ["BITSO_BOOKS", "''"]),
        ({"BITSO_BOOKS": ""}, ["BITSO_BOOKS", "empty"]),
        ({"BITSO_BOOKS": "btc_mxn,btc_mxn"}, ["BITSO_BOOKS", "more than once"]),
        ({"REQUESTS_PER_MINUTE": "61"}, ["REQUESTS_PER_MINUTE", "1 to 60"]),
        ({"REQUESTS_PER_MINUTE": "0"}, ["REQUESTS_PER_MINUTE", "1 to 60"]),
        ({"REQUESTS_PER_MINUTE": "fast"}, ["REQUESTS_PER_MINUTE", "whole number"]),
        ({"BITSO_AGGREGATE": "maybe"}, ["BITSO_AGGREGATE", "true or false"]),
        ({"COMPRESSION": "zstd"}, ["COMPRESSION", "none, gzip"]),
        ({"BITSO_API_URL": "ftp://x"}, ["BITSO_API_URL", "http(s) URL"]),
        ({"BITSO_API_URL": "http://bitso.example/?token=1"}, ["BITSO_API_URL", "query"]),
        ({"BITSO_API_URL": "http://bitso.example/#top"}, ["BITSO_API_URL", "fragment"]),
        ({"BITSO_API_URL": "http://bitso.example:99999"}, ["BITSO_API_URL", "port"]),
        ({"BITSO_API_URL": "http://bitsö.example"}, ["BITSO_API_URL", "http(s) URL"]),
        ({"GCS_BUCKET": "Bad_Bucket!"}, ["GCS_BUCKET", "bucket name"]),
        ({"GCS_BUCKET": "gs://"}, ["GCS_BUCKET='gs://'", "names no bucket"]),
        ({"GCS_BUCKET": "gs:///"}, ["GCS_BUCKET", "names no bucket"]),
        ({"OBJECT_PREFIX": "a//b c"}, ["OBJECT_PREFIX"]),
        ({"OBJECT_PREFIX": "../x"}, ["OBJECT_PREFIX='../x'", "no '.' or '..' parts"]),
        ({"OBJECT_PREFIX": "raw/../../x"}, ["OBJECT_PREFIX", "'..'"]),
        ({"OBJECT_PREFIX": "./x"}, ["OBJECT_PREFIX", "'.'"]),
        ({"BITSO_API_KEY": "k"}, ["BITSO_API_KEY and BITSO_API_SECRET"]),
        ({"BITSO_API_KEY_SECRET": "my-secret"}, ["BITSO_API_KEY_SECRET", "projects/PROJECT"]),
    ],
)
def test_bad_values_name_the_variable_and_what_is_allowed(
    env: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    for name in names:
        assert name in str(caught.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# local settings\n"
        "export BITSO_BOOKS=eth_mxn,xrp_mxn\n"
        "STRATEGY='sequential'\n"
        'BITSO_API_KEY="key with spaces"\n'
        "BITSO_API_SECRET=s3cret # a comment\n"
        "GCS_BUCKET=          # unset: the local sink\n"
    )
    s = load_settings({"STRATEGY": "threaded"}, dotenv=dotenv)
    assert s.books == ("eth_mxn", "xrp_mxn")
    assert s.strategy == "threaded"
    assert s.api_key == "key with spaces"
    assert s.api_secret == "s3cret"
    assert s.gcs_bucket is None


def test_a_broken_dotenv_line_is_named(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("BITSO_BOOKS=btc_mxn\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2 is not a KEY=VALUE line"):
        read_dotenv(dotenv)


def test_credentials_never_show_in_the_repr() -> None:
    s = settings(BITSO_API_KEY="visible-key-123", BITSO_API_SECRET="hidden-secret-456")
    assert "hidden-secret-456" not in repr(s)
    assert "visible-key-123" not in repr(s)
    assert "api_secret='***'" in repr(s)


def test_the_example_dotenv_gives_the_defaults() -> None:
    example = Path(__file__).parents[2] / ".env.example"
    assert read_dotenv(example) == {}  # everything is commented out
    assert load_settings({}, dotenv=example) == Settings()


def test_every_setting_in_the_example_dotenv_is_known(tmp_path: Path) -> None:
    """`.env.example` with every setting uncommented draws no warning: the code knows them all."""
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    uncommented = re.sub(r"^# ([A-Z][A-Z0-9_]*=)", r"\1", example, flags=re.MULTILINE)
    dotenv = tmp_path / ".env"
    dotenv.write_text(uncommented)
    assert len(read_dotenv(dotenv)) >= 15
    assert load_settings({}, dotenv=dotenv).warnings == ()


@pytest.mark.parametrize(
    ("env", "dotenv", "warning"),
    [
        (
            {"BITSO_BOOK": "eth_mxn"},
            "",
            "BITSO_BOOK (in the environment) is not a setting, so it is ignored; "
            "did you mean BITSO_BOOKS?",
        ),
        (
            {},
            "COMPRESION=gzip\n",
            "COMPRESION (in .env) is not a setting, so it is ignored; did you mean COMPRESSION?",
        ),
        (
            {},
            "export BITSO_APIURL=http://127.0.0.1:9000\n",
            "BITSO_APIURL (in .env) is not a setting, so it is ignored; "
            "did you mean BITSO_API_URL?",
        ),
        (
            {"REQUEST_PER_MINUTE": "30"},
            "",
            "REQUEST_PER_MINUTE (in the environment) is not a setting, so it is ignored; "
            "did you mean REQUESTS_PER_MINUTE?",
        ),
    ],
)
def test_a_misspelled_variable_is_named_with_the_setting_it_meant(
    tmp_path: Path, env: dict[str, str], dotenv: str, warning: str
) -> None:
    path = tmp_path / ".env"
    path.write_text(dotenv)
    loaded = load_settings(env, dotenv=path)
    assert loaded.warnings == (warning,)
    assert loaded == Settings()  # the misspelled value changed nothing


def test_other_programs_variables_draw_no_warning(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "COMPRESS": "yes",  # another tool's, and not close enough to COMPRESSION
        "GOOGLE_CLOUD_PROJECT": "p",
        "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1",
        "BITSO_BOOKS": "eth_mxn",
    }
    assert settings(**env).warnings == ()


def test_anything_else_in_dotenv_is_named_as_ignored(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("GOOGLE_CLOUD_PROJECT=p\nBITSO_BOOKS=eth_mxn\n")
    (warning,) = load_settings({}, dotenv=path).warnings
    assert warning.startswith("GOOGLE_CLOUD_PROJECT (in .env) is not a setting, so it is ignored")
    assert "BITSO_BOOKS" in warning  # with the list of settings, as nothing is close
    assert "BITSO_BOOKS (in" not in warning


def test_a_misplaced_secret_value_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(BITSO_API_KEY_SECRET="sk-live-123456", BITSO_API_SECRET_SECRET="x")
    assert "BITSO_API_KEY_SECRET is not a Secret Manager version name" in str(caught.value)
    assert "sk-live-123456" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:PASSWORD@bitso.example",
        "https://PASSWORD@bitso.example/v3",
        "ftp://u:PASSWORD@x",
    ],
)
def test_credentials_in_the_api_url_are_refused_and_never_shown(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(BITSO_API_URL=url)
    message = str(caught.value)
    assert message.startswith("BITSO_API_URL=")
    assert "PASSWORD" not in message
    assert "***@" in message


@pytest.mark.parametrize("name", ["BITSO_API_KEY", "BITSO_API_SECRET"])
@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("abc\u20ac1", "is not ASCII"),  # beyond Latin-1: cannot be sent in a header at all
        ("abcé1", "is not ASCII"),
        ("abc\n1", "is a control character"),  # would split the header
        ("abc\x001", "is a control character"),
    ],
)
def test_keys_that_cannot_go_into_a_header_are_refused_unshown(
    name: str, value: str, kind: str
) -> None:
    env = {"BITSO_API_KEY": "k", "BITSO_API_SECRET": "s", name: value}
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    message = str(caught.value)
    assert message.startswith(f"{name} has a character that {kind} (at position 4)")
    assert "abc" not in message


def test_a_url_with_credentials_never_shows_in_the_repr() -> None:
    assert "PASSWORD" not in repr(Settings(api_url="http://user:PASSWORD@bitso.example"))
