"""The HTTP-function glue both functions share: the runtime built once, the schedule header, the
JSON answer."""

from __future__ import annotations

import json
import threading

import pytest

from bitso_http import SCHEDULE_HEADER, BadRequest, InstanceRuntime, json_answer, schedule_time_ms


def test_the_runtime_is_built_once_however_many_calls_race_for_it() -> None:
    built: list[object] = []
    closed: list[object] = []
    gate = threading.Barrier(8)

    def build() -> object:
        built.append(object())
        return built[-1]

    runtime = InstanceRuntime(build, closed.append)
    got: list[object] = []

    def call() -> None:
        gate.wait()
        got.append(runtime.get())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and got == built * 8
    runtime.reset()
    assert closed == built
    assert runtime.get() is not built[0]  # built anew after a reset
    assert len(built) == 2


def test_the_schedule_time_is_read_or_refused_naming_the_header() -> None:
    assert schedule_time_ms({}) is None
    assert schedule_time_ms({SCHEDULE_HEADER: "2026-11-24T10:15:00Z"}) == 1_795_515_300_000
    for bad, says in [("soon", "RFC 3339"), ("9999-12-31T23:30:00-01:00", "0001 to 9999")]:
        with pytest.raises(BadRequest, match=says) as caught:
            schedule_time_ms({SCHEDULE_HEADER: bad})
        assert str(caught.value).startswith(f"{SCHEDULE_HEADER}={bad!r}")


def test_a_json_answer_is_indented_json_with_its_status() -> None:
    answer = json_answer({"status": "ok", "n": 1}, 409, {"Retry-After": "5"})
    assert answer.status_code == 409 and answer.mimetype == "application/json"
    assert answer.headers["Retry-After"] == "5"
    text = answer.get_data(as_text=True)
    assert json.loads(text) == {"status": "ok", "n": 1} and text.endswith("}\n")
