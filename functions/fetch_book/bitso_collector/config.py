"""Settings from environment variables (and `.env` for local runs), parsed once and frozen.

Every bad value fails with one `ConfigError` naming the variable and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from bitso_format import (
    BITSO_LIMIT_PER_MINUTE,
    BOOK_PATTERN,
    DEFAULT_REQUESTS_PER_MINUTE,
    STREAM_CHANNELS,
    parse_bucket,
    parse_object_prefix,
)
from bitso_logs import mask_url_credentials

from .signing import credential_problem

STRATEGIES = ("sequential", "threaded", "asyncio")
COMPRESSIONS = ("none", "gzip")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
DEFAULT_WS_URL = "wss://ws.bitso.com"
#: How often an unbroken diff chain is anchored again (`ANCHOR_EVERY_MINUTES`): `book --at` at
#: the worst instant reads this many minutes of diffs after the anchor. Measured (make bench):
#: at ten times the expected rate (60 diffs/s), 10 minutes take 1.3 s, 15 minutes 2.6 s.
DEFAULT_ANCHOR_EVERY_MINUTES = 10
#: A day: a chain anchored less often than that is one nobody could read back quickly.
MAX_ANCHOR_EVERY_MINUTES = 1440
#: How alike (difflib's ratio) a name must be to a setting's to be taken for a misspelling of it:
#: loosely for `BITSO_*` names and names in `.env` (all meant for the collector), strictly for
#: the rest of the process environment (full of other programs' variables).
LIKELY_MEANT = 0.6
CLOSE_ENOUGH_IN_ENVIRONMENT = 0.85
_SECRET_VERSION = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names both."""


@dataclass(frozen=True)
class Settings:
    books: tuple[str, ...] = ("btc_mxn",)
    api_url: str = "https://api.bitso.com"
    aggregate: bool = True
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE
    strategy: str = "threaded"
    gcs_bucket: str | None = None
    local_data_dir: str = "data"
    object_prefix: str = ""
    compression: str = "none"
    api_key: str | None = None
    api_secret: str | None = None
    api_key_secret: str | None = None
    api_secret_secret: str | None = None
    #: WebSocket channels recorded beside the snapshots, in `STREAM_CHANNELS` order (empty: none).
    streams: tuple[str, ...] = ()
    ws_url: str = DEFAULT_WS_URL
    anchor_every_minutes: int = DEFAULT_ANCHOR_EVERY_MINUTES
    #: Variables that look meant for the collector but are not settings (`unknown_variables`),
    #: for whoever runs it to log; they change nothing.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __repr__(self) -> str:
        """Like the dataclass repr, with the credentials masked so they never reach a log."""
        masked = {"api_key", "api_secret"}
        fields = ", ".join(
            f"{name}={'***' if name in masked and value else value!r}"
            for name, value in self.__dict__.items()
            if name != "warnings"
        )
        return mask_url_credentials(f"Settings({fields})")


def parse_books(raw: str, source: str = "BITSO_BOOKS") -> tuple[str, ...]:
    """Comma-separated book names, each matching `^[a-z0-9]+_[a-z0-9]+$`, no duplicates."""
    books = tuple(part.strip() for part in raw.split(","))
    return validate_books(books, source)


def validate_books(books: tuple[str, ...], source: str) -> tuple[str, ...]:
    if not books or books == ("",):
        raise ConfigError(f"{source} is empty; give at least one book such as btc_mxn")
    for book in books:
        if not BOOK_PATTERN.fullmatch(book):
            raise ConfigError(
                f"{source} has {book!r}, which is not a book name; "
                "allowed: lower-case letters and digits on both sides of one '_', e.g. btc_mxn"
            )
    duplicates = sorted(book for book, count in Counter(books).items() if count > 1)
    if duplicates:
        raise ConfigError(f"{source} names {', '.join(duplicates)} more than once")
    return books


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; allowed: true or false")


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name}={raw!r} is not allowed; allowed: {', '.join(allowed)}")
    return value


def _requests_per_minute(raw: str) -> int:
    name = "REQUESTS_PER_MINUTE"
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; allowed: 1 to {BITSO_LIMIT_PER_MINUTE}"
        ) from None
    if not 1 <= value <= BITSO_LIMIT_PER_MINUTE:
        raise ConfigError(
            f"{name}={value} is outside 1 to {BITSO_LIMIT_PER_MINUTE} "
            "(Bitso allows 60 public requests a minute per IP)"
        )
    return value


def _api_url(raw: str) -> str:
    """A base URL: http(s), printable ASCII, with no credentials, query or fragment."""
    value = raw.strip().rstrip("/")
    shown = f"BITSO_API_URL={mask_url_credentials(raw)!r}"
    if not (re.fullmatch(r"https?://[^\s/]+(/\S*)?", value) and value.isascii()):
        raise ConfigError(f"{shown} is not an http(s) URL; e.g. https://api.bitso.com")
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ConfigError(
            f"{shown} carries credentials (user:password@); the order book is public, and "
            "signing keys go in BITSO_API_KEY and BITSO_API_SECRET"
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigError(f"{shown} has a query or fragment; give the base URL only")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise ConfigError(f"{shown} has a port that is not a number from 0 to 65535") from None
    return value


def parse_streams(raw: str) -> tuple[str, ...]:
    """`STREAMS`: comma-separated channels from `STREAM_CHANNELS`, no repeats; empty for none."""
    allowed = ", ".join(STREAM_CHANNELS)
    chosen = [part.strip().lower() for part in raw.split(",") if part.strip()]
    for channel in chosen:
        if channel not in STREAM_CHANNELS:
            raise ConfigError(
                f"STREAMS has {channel!r}, which is not a channel; allowed: {allowed} "
                "(comma-separated), or empty to record no streams"
            )
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"STREAMS={raw!r} names a channel more than once; allowed: {allowed}")
    return tuple(channel for channel in STREAM_CHANNELS if channel in chosen)


def _anchor_every(raw: str) -> int:
    """`ANCHOR_EVERY_MINUTES`: a whole number of minutes from 1 to a day."""
    value = raw.strip()
    allowed = f"a whole number of minutes from 1 to {MAX_ANCHOR_EVERY_MINUTES}"
    if not value.isdigit() or not 1 <= int(value) <= MAX_ANCHOR_EVERY_MINUTES:
        raise ConfigError(f"ANCHOR_EVERY_MINUTES={raw!r} is not allowed; use {allowed}")
    return int(value)


def _ws_url(raw: str) -> str:
    """The WebSocket: ws(s), printable ASCII, with no credentials and a valid port."""
    value = raw.strip()
    shown = f"BITSO_WS_URL={mask_url_credentials(raw)!r}"
    if not (re.fullmatch(r"wss?://[^\s/]+(/\S*)?", value) and value.isascii()):
        raise ConfigError(f"{shown} is not a ws:// or wss:// URL; e.g. {DEFAULT_WS_URL}")
    parts = urlsplit(value)
    if "@" in parts.netloc:
        raise ConfigError(f"{shown} carries credentials (user:password@); the socket is public")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise ConfigError(f"{shown} has a port that is not a number from 0 to 65535") from None
    return value


def _credential(name: str, raw: str) -> str | None:
    value = raw.strip()
    problem = credential_problem(value)
    if problem:
        raise ConfigError(f"{name} {problem}")  # never the value itself
    return value or None


def _prefix(raw: str) -> str:
    try:
        return parse_object_prefix(raw)
    except ValueError as error:
        raise ConfigError(f"OBJECT_PREFIX={raw!r} {error}") from None


def _bucket(raw: str) -> str | None:
    try:
        return parse_bucket(raw)
    except ValueError as error:
        raise ConfigError(f"GCS_BUCKET={raw!r} {error}") from None


def _secret_name(name: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not _SECRET_VERSION.fullmatch(value):
        raise ConfigError(
            # Not repeating the value: it might be the secret itself, pasted in the wrong place.
            f"{name} is not a Secret Manager version name; "
            "allowed: projects/PROJECT/secrets/SECRET/versions/VERSION (VERSION may be latest)"
        )
    return value


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines of a `.env` file; `#` comments, `export ` and quotes are allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        text = text.removeprefix("export ").strip()
        key, sep, value = text.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ConfigError(f"{path}:{number} is not a KEY=VALUE line")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            # A comment starts at a '#' that begins the value or follows a space.
            value = re.split(r"(?:^|\s)#", value, maxsplit=1)[0].strip()
        values[key.strip()] = value
    return values


def unknown_variables(
    known: Collection[str], environment: Collection[str], dotenv: Collection[str] = ()
) -> tuple[str, ...]:
    """A warning for each variable that looks meant for the collector but is not one of the
    `known` settings, naming the setting it most likely meant: every name in `.env` (which holds
    settings only), every `BITSO_*` name, and any other name close to a setting's."""
    warnings = []
    found = dict.fromkeys(environment, "the environment") | dict.fromkeys(dotenv, ".env")
    for name, where in sorted(found.items()):
        if name in known:
            continue
        loose = where == ".env" or name.startswith("BITSO_")
        cutoff = LIKELY_MEANT if loose else CLOSE_ENOUGH_IN_ENVIRONMENT
        meant = difflib.get_close_matches(name, sorted(known), n=1, cutoff=cutoff)
        if meant:
            hint = f"; did you mean {meant[0]}?"
        elif loose:
            hint = f"; the settings are {', '.join(sorted(known))}"
        else:
            continue
        warnings.append(f"{name} (in {where}) is not a setting, so it is ignored{hint}")
    return tuple(warnings)


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
) -> Settings:
    """Settings from `environ` (default: the process environment) over the `.env` file."""
    from_file = read_dotenv(dotenv) if dotenv is not None else {}
    environment = os.environ if environ is None else environ
    env = {**from_file, **environment}
    read: set[str] = set()  # every setting's name, as it is read

    def get(name: str, default: str = "") -> str:
        read.add(name)
        return env.get(name, default)

    settings = Settings(
        books=parse_books(get("BITSO_BOOKS", "btc_mxn")),
        api_url=_api_url(get("BITSO_API_URL", "https://api.bitso.com")),
        aggregate=_boolean("BITSO_AGGREGATE", get("BITSO_AGGREGATE", "true")),
        requests_per_minute=_requests_per_minute(
            get("REQUESTS_PER_MINUTE", str(DEFAULT_REQUESTS_PER_MINUTE))
        ),
        strategy=_choice("STRATEGY", get("STRATEGY", "threaded"), STRATEGIES),
        gcs_bucket=_bucket(get("GCS_BUCKET")),
        local_data_dir=get("LOCAL_DATA_DIR", "data").strip() or "data",
        object_prefix=_prefix(get("OBJECT_PREFIX")),
        compression=_choice("COMPRESSION", get("COMPRESSION", "none"), COMPRESSIONS),
        api_key=_credential("BITSO_API_KEY", get("BITSO_API_KEY")),
        api_secret=_credential("BITSO_API_SECRET", get("BITSO_API_SECRET")),
        api_key_secret=_secret_name("BITSO_API_KEY_SECRET", get("BITSO_API_KEY_SECRET")),
        api_secret_secret=_secret_name("BITSO_API_SECRET_SECRET", get("BITSO_API_SECRET_SECRET")),
        streams=parse_streams(get("STREAMS")),
        ws_url=_ws_url(get("BITSO_WS_URL", DEFAULT_WS_URL)),
        anchor_every_minutes=_anchor_every(
            get("ANCHOR_EVERY_MINUTES", str(DEFAULT_ANCHOR_EVERY_MINUTES))
        ),
    )
    if bool(settings.api_key) != bool(settings.api_secret):
        raise ConfigError("BITSO_API_KEY and BITSO_API_SECRET must be set together, or neither")
    if bool(settings.api_key_secret) != bool(settings.api_secret_secret):
        raise ConfigError(
            "BITSO_API_KEY_SECRET and BITSO_API_SECRET_SECRET must be set together, or neither"
        )
    warnings = unknown_variables(read, environment.keys(), from_file.keys())
    return replace(settings, warnings=warnings) if warnings else settings
