"""GCS sink: create-only object writes (`if_generation_match=0`) with bounded retries.

One `google.cloud.storage.Client` per sink (so per instance), created on the first write and reused;
the library is imported then, never when the package is imported.

Retries: 408, 429, 5xx, timeouts and dropped connections are retried with exponential backoff and
jitter until the caller's `deadline` (or `DEFAULT_BUDGET_S` from now without one); anything else
(403, 404, 400, bad credentials) fails at once.
A retry is safe because every write is create-only, but it needs one decision: when an attempt that
may have landed (a timeout, a dropped reply, a 5xx) is followed by a 412, the object exists, and
either our earlier attempt wrote it or another writer did. The sink reads the object's metadata and
compares its MD5 and CRC32C with our bytes: equal means our write landed (True, written); different
means someone else's (False, duplicate). A 412 on the first attempt is a plain duplicate (no read).
This matters most for the minute claim: mistaking our own landed claim for someone else's would
answer 409 and leave the minute uncollected. When the answer cannot be proven (the service account
may create but not read objects: 403 on the read), it is False: a snapshot is stored either way,
and a claim we cannot prove is never used, so a minute's budget is never spent twice.

Deadlines are epoch seconds on the sink's clock, which is the collector's (tests shift it).
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import threading
import time
from typing import Any

from ..clock import Clock, SystemClock
from ..errors import StorageError

#: Longest one upload attempt may take (connect, read), in seconds.
CONNECT_TIMEOUT_S = 5.0
ATTEMPT_TIMEOUT_S = 10.0
#: Backoff between attempts: first delay, factor, cap (each delay is jittered to 50-100 %).
BACKOFF_INITIAL_S = 0.25
BACKOFF_FACTOR = 2.0
BACKOFF_MAX_S = 4.0
#: How long a write may keep trying when the caller gives no deadline (the runner always does).
DEFAULT_BUDGET_S = 20.0
#: An attempt is not started with less time than this left before the deadline.
MIN_ATTEMPT_S = 0.1
#: Give up this much before the deadline, so the caller hears the reason before it stops waiting.
DEADLINE_MARGIN_S = 0.05

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _crc32c_b64(data: bytes) -> str:
    import google_crc32c  # noqa: PLC0415 - a dependency of google-cloud-storage, loaded with it

    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode("ascii")


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")  # noqa: S324 - GCS's hash


def _status_of(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


def _is_retryable(error: BaseException) -> bool:
    """Transient: worth another attempt before the deadline."""
    import requests  # noqa: PLC0415
    from google.api_core import exceptions as api_exceptions  # noqa: PLC0415
    from google.auth import exceptions as auth_exceptions  # noqa: PLC0415

    if isinstance(error, api_exceptions.GoogleAPICallError):
        return _status_of(error) in _RETRYABLE_STATUS
    if isinstance(error, auth_exceptions.TransportError):
        return True  # the token endpoint (metadata server) did not answer
    if isinstance(error, auth_exceptions.GoogleAuthError):
        return False  # no or bad credentials: retrying will not help
    return isinstance(
        error,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | ConnectionError
        | TimeoutError,
    )


def _describe(error: BaseException) -> str:
    """A short reason for logs and run records: the status and the server's message."""
    status = _status_of(error)
    text = str(getattr(error, "message", None) or error or "")
    text = re.sub(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ", "", text).split(": ('Request failed")[0]
    inner = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text)  # GCS's JSON error body
    if inner:
        text = inner.group(1)
    text = " ".join(text.split())[:200]
    kind = type(error).__name__
    if status:
        return f"HTTP {status} {kind}: {text}" if text else f"HTTP {status} {kind}"
    return f"{kind}: {text}" if text else kind


class GcsSink:
    """Objects in `gs://bucket/`; `create` never overwrites (see the module docstring)."""

    def __init__(
        self,
        bucket: str,
        clock: Clock | None = None,
        *,
        client_factory: Any = None,
        attempt_timeout: float = ATTEMPT_TIMEOUT_S,
        default_budget: float = DEFAULT_BUDGET_S,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_max: float = BACKOFF_MAX_S,
    ) -> None:
        self.bucket_name = bucket
        self.clock = clock or SystemClock()
        self.attempt_timeout = attempt_timeout
        self.default_budget = default_budget
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._client_factory = client_factory
        self._client: Any = None
        self._bucket: Any = None
        self._lock = threading.Lock()

    def location(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{key}"

    # -- the one client of the instance ----------------------------------------------------
    def _get_bucket(self) -> Any:
        with self._lock:
            if self._bucket is None:
                factory = self._client_factory
                if factory is None:
                    from google.cloud import storage  # type: ignore[attr-defined]  # noqa: PLC0415

                    factory = storage.Client
                try:
                    self._client = factory()
                except Exception as error:
                    raise StorageError(
                        f"cannot create the GCS client for gs://{self.bucket_name}: "
                        f"{_describe(error)}"
                    ) from error
                self._bucket = self._client.bucket(self.bucket_name)
            return self._bucket

    # -- writes ----------------------------------------------------------------------------
    def create(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/json",
        content_encoding: str | None = None,
        deadline: float | None = None,
    ) -> bool:
        bucket = self._get_bucket()
        where = self.location(key)
        if deadline is None:
            deadline = self.clock.now() + self.default_budget
        give_up_at = deadline - DEADLINE_MARGIN_S
        upload = _Upload(key, data, content_type, content_encoding)
        delay = self.backoff_initial
        attempts = 0
        may_have_landed = False
        last_error = "the deadline had passed before the first attempt"
        while True:
            left = give_up_at - self.clock.now()
            if left < MIN_ATTEMPT_S:
                raise StorageError(
                    f"{where} not stored after {attempts} attempt(s) before the deadline; "
                    f"last: {last_error}"
                )
            attempts += 1
            try:
                outcome = upload.attempt(bucket, min(self.attempt_timeout, left), may_have_landed)
            except StorageError:
                raise
            except Exception as error:
                if not _is_retryable(error):
                    raise StorageError(f"{where}: {_describe(error)}") from error
                may_have_landed = True
                last_error = _describe(error)
                pause = delay * random.uniform(0.5, 1.0)
                delay = min(delay * BACKOFF_FACTOR, self.backoff_max)
                # The last pause is cut short so one more attempt still fits before the deadline.
                pause = min(pause, give_up_at - MIN_ATTEMPT_S - self.clock.now())
                if pause < 0:
                    raise StorageError(
                        f"{where} not stored after {attempts} attempt(s) before the deadline; "
                        f"last: {last_error}"
                    ) from error
                time.sleep(pause)
                continue
            if outcome is not None:
                return outcome
            # The name was taken, then gone when read back: try again at once.


class _Upload:
    """One object to create, and how to tell our bytes from someone else's."""

    def __init__(
        self, key: str, data: bytes, content_type: str, content_encoding: str | None
    ) -> None:
        self.key = key
        self.data = data
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.crc32c = _crc32c_b64(data)
        self.md5 = _md5_b64(data)

    def attempt(self, bucket: Any, timeout: float, may_have_landed: bool) -> bool | None:
        """True: written (now or by an earlier attempt). False: someone else's object has the
        name. None: unknown yet (ask again). Raises the client's errors for the caller to judge."""
        from google.api_core.exceptions import Forbidden, PreconditionFailed  # noqa: PLC0415

        blob = bucket.blob(self.key)
        blob.content_encoding = self.content_encoding
        try:
            blob.upload_from_string(
                self.data,
                content_type=self.content_type,
                if_generation_match=0,
                checksum="crc32c",
                retry=None,  # GcsSink.create is the one retry layer, bounded by the deadline
                timeout=(min(CONNECT_TIMEOUT_S, timeout), timeout),
            )
        except PreconditionFailed:
            if not may_have_landed:
                return False  # nothing of ours can be there: a plain duplicate
            try:
                existing = bucket.get_blob(self.key, timeout=timeout, retry=None)
            except Forbidden:
                return False  # may create but not read (objectCreator only): cannot prove ours
            if existing is None:
                return None
            return self.is_ours(existing.md5_hash, existing.crc32c)
        stored = blob.crc32c
        if stored is not None and stored != self.crc32c:
            raise StorageError(
                f"gs://{bucket.name}/{self.key} was stored with CRC32C {stored}, "
                f"expected {self.crc32c}"
            )
        return True

    def is_ours(self, md5: str | None, crc32c: str | None) -> bool:
        """The stored object has exactly our bytes (GCS always reports CRC32C; MD5 too for
        objects uploaded whole). Unknown hashes count as not ours: never claim what we cannot
        prove, so a minute is never spent twice."""
        if md5 is None and crc32c is None:
            return False
        return md5 in (None, self.md5) and crc32c in (None, self.crc32c)
