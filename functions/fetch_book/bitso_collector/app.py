"""The HTTP entry point's logic: one runtime per instance, built on the first call, reused after.

Nothing here opens a connection at import; `main.py` only forwards the request.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import flask

from bitso_logs import JsonLogger

from .call_options import BadRequest, parse_call
from .clock import Clock, SystemClock
from .config import ConfigError, Settings, load_settings
from .credentials import CredentialsError, resolve_credentials
from .errors import StorageError
from .outcomes import CallStatus
from .run_record import RunRecord
from .runner import Collector
from .sinks import make_sink
from .strategies import make_strategy

#: The clock every new runtime uses; a test launcher may replace it before the first call.
clock: Clock = SystemClock()
log = JsonLogger()

#: The HTTP answer to each way a call can end.
HTTP_STATUS = {
    CallStatus.OK: 200,
    CallStatus.DEGRADED: 200,
    CallStatus.CLAIMED: 409,
    CallStatus.THROTTLED: 503,
    CallStatus.BACKING_OFF: 503,
    CallStatus.LOST: 500,
    CallStatus.MISCONFIGURED: 500,
}


@dataclass
class Runtime:
    settings: Settings
    collector: Collector


def build_runtime(settings: Settings, with_clock: Clock | None = None) -> Runtime:
    credentials = resolve_credentials(settings)
    strategy = make_strategy(settings.strategy, settings.api_url, credentials)
    the_clock = with_clock or clock
    collector = Collector(settings, make_sink(settings, the_clock), strategy, the_clock, log)
    return Runtime(settings, collector)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The instance's runtime; settings are parsed once, on the first call."""
    global _runtime  # noqa: PLW0603 - one runtime per instance is the point
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(load_settings())
        return _runtime


def reset_runtime() -> None:
    """Forget the instance's runtime (tests that change the environment between apps)."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        if _runtime is not None:
            _runtime.collector.strategy.close()
        _runtime = None


def _answer(body: dict[str, Any], status: int) -> flask.Response:
    return flask.Response(
        json.dumps(body, indent=2) + "\n", status=status, mimetype="application/json"
    )


def handle(request: flask.Request) -> flask.Response:
    try:
        options = parse_call(request.get_data(cache=False), request.headers)
    except BadRequest as error:
        log.warning("bad request", reason=str(error))
        return _answer({"error": str(error), "status": "bad_request"}, 400)
    try:
        runtime = get_runtime()
    except (ConfigError, CredentialsError) as error:
        log.error("cannot start: bad configuration", reason=str(error))
        now = clock.now()
        record = RunRecord(uuid.uuid4().hex, now, now, CallStatus.MISCONFIGURED, error=str(error))
        return _answer(record.to_json(), HTTP_STATUS[record.status])
    try:
        record = runtime.collector.run(options)
    except BadRequest as error:
        log.warning("bad request", reason=str(error))
        return _answer({"error": str(error), "status": "bad_request"}, 400)
    except StorageError as error:
        log.error("cannot claim the minute", reason=str(error))
        return _answer({"error": f"cannot claim the minute: {error}", "status": "lost"}, 500)
    except Exception as error:  # a bug must still answer JSON and leave a trace in the logs
        log.error("unexpected error", error=f"{type(error).__name__}: {error}", exc_info=True)
        return _answer(
            {"error": f"unexpected error: {type(error).__name__}", "status": "error"}, 500
        )
    return _answer(record.to_json(), HTTP_STATUS[record.status])
