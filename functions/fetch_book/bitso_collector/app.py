"""The HTTP entry point's logic: one runtime per instance, built on the first call, reused after.

Nothing here opens a connection at import; `main.py` only forwards the request.
"""

from __future__ import annotations

import atexit
import uuid
from dataclasses import dataclass

import flask

from bitso_http import BadRequest, InstanceRuntime, json_answer
from bitso_logs import JsonLogger

from .call_options import MAX_BODY_BYTES, BodyTooLarge, parse_call
from .clock import Clock, SystemClock
from .config import ConfigError, Settings, load_settings
from .credentials import CredentialsError, resolve_credentials
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
    # The minute is gone: nothing of it can be collected any more.
    CallStatus.TOO_LATE: 410,
    # A well-formed schedule time that names a minute this server cannot serve yet.
    CallStatus.TOO_EARLY: 422,
}


#: The methods served (docs/operations.md: POST, or GET); anything else is a 405.
ALLOWED_METHODS = ("GET", "POST")
#: Bytes a body too large is read and dropped in, after its first `MAX_BODY_BYTES`.
DRAIN_CHUNK = 64 * 1024


@dataclass
class Runtime:
    settings: Settings
    collector: Collector


def build_runtime(
    settings: Settings, with_clock: Clock | None = None, with_log: JsonLogger | None = None
) -> Runtime:
    the_log = with_log or log
    for warning in settings.warnings:
        the_log.warning(warning, event="unknown_setting")
    credentials = resolve_credentials(settings)
    strategy = make_strategy(settings.strategy, settings.api_url, credentials)
    the_clock = with_clock or clock
    collector = Collector(settings, make_sink(settings, the_clock), strategy, the_clock, the_log)
    return Runtime(settings, collector)


def _runtime_from_environment() -> Runtime:
    runtime = build_runtime(load_settings())
    # Cloud Run stops an instance with SIGTERM; the server's worker then exits, and what the
    # stream holds since the last call's cut is stored on the way out.
    atexit.register(runtime.collector.shutdown)
    return runtime


def _shut_down(runtime: Runtime) -> None:
    atexit.unregister(runtime.collector.shutdown)
    runtime.collector.shutdown()


_instance = InstanceRuntime(_runtime_from_environment, _shut_down)
#: The instance's runtime; settings are parsed once, on the first call.
get_runtime = _instance.get
#: Forget the instance's runtime (tests that change the environment between apps).
reset_runtime = _instance.reset


def read_body(request: flask.Request) -> bytes:
    """The body, of which at most `MAX_BODY_BYTES + 1` bytes are ever held: a longer one is read
    on and dropped in pieces (so its sender hears the 413 rather than a reset connection, and the
    framework, which reads what is left after the answer, finds nothing) and is `BodyTooLarge`."""
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        chunk = stream.read(MAX_BODY_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    while stream.read(DRAIN_CHUNK):
        pass
    raise BodyTooLarge


def handle(request: flask.Request) -> flask.Response:
    if request.method not in ALLOWED_METHODS:
        allowed = ", ".join(ALLOWED_METHODS)
        log.warning("method not allowed", method=request.method)
        return json_answer(
            {
                "error": f"method {request.method} is not allowed; use {allowed}",
                "status": "method_not_allowed",
            },
            405,
            {"Allow": allowed},
        )
    try:
        options = parse_call(read_body(request), request.headers)
    except BodyTooLarge as error:
        log.warning("bad request", reason=str(error))
        return json_answer({"error": str(error), "status": "too_large"}, 413)
    except BadRequest as error:
        log.warning("bad request", reason=str(error))
        return json_answer({"error": str(error), "status": BadRequest.reason}, 400)
    try:
        runtime = get_runtime()
    except (ConfigError, CredentialsError) as error:
        log.error("cannot start: bad configuration", reason=str(error))
        now = clock.now()
        record = RunRecord(uuid.uuid4().hex, now, now, CallStatus.MISCONFIGURED, error=str(error))
        return json_answer(record.to_json(), HTTP_STATUS[record.status])
    try:
        record = runtime.collector.run(options)
    except Exception as error:  # a bug must still answer JSON and leave a trace in the logs
        log.error("unexpected error", error=f"{type(error).__name__}: {error}", exc_info=True)
        return json_answer(
            {"error": f"unexpected error: {type(error).__name__}", "status": "error"}, 500
        )
    return json_answer(record.to_json(), HTTP_STATUS[record.status])
