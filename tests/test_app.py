"""The HTTP function in-process: `create_app(...).test_client()` against the fake Bitso."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app

from bitso_collector import app as app_module
from bitso_collector.clock import ShiftedClock
from bitso_format import iso_millis, seconds_to_ms
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from tests.support.schemas import check_run_record

MAIN = Path(__file__).parents[1] / "functions/fetch_book/main.py"


class Harness:
    def __init__(self, client: FlaskClient, fake: FakeBitso, data: Path) -> None:
        self.client, self.fake, self.data = client, fake, data
        self._minute = math.ceil(time.time() / 60) + 1

    def fresh_minute(self, seconds_into: float = -0.2) -> float:
        """Put the app's clock `seconds_into` a minute no call has used; return its start."""
        self._minute += 1
        start = self._minute * 60.0
        app_module.clock = ShiftedClock(start + seconds_into - time.time())
        app_module.reset_runtime()
        return start

    def post(self, body: Any = None, minute: float | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if minute is not None:
            headers["X-CloudScheduler-ScheduleTime"] = iso_millis(seconds_to_ms(minute))
        data = kw.pop("data", None)
        if data is None and body is not None:
            data = json.dumps(body)
        reply = self.client.post("/", data=data, headers=headers, **kw)
        check_run_record(reply.get_json())
        return reply


@pytest.fixture
def harness(
    fake_bitso: FakeBitso, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    monkeypatch.setenv("BITSO_BOOKS", "btc_mxn,eth_mxn")
    monkeypatch.setenv("LOCAL_DATA_DIR", str(tmp_path / "data"))
    app_module.reset_runtime()
    client = create_app(target="fetch_book", source=str(MAIN)).test_client()
    yield Harness(client, fake_bitso, tmp_path / "data")
    app_module.reset_runtime()
    app_module.clock = ShiftedClock(0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"books": "btc_mxn"}', "non-empty list"),
        ('{"books": []}', "non-empty list"),
        ('{"books": ["BTC/MXN"]}', "'BTC/MXN'"),
        ('{"books": ["btc_mxn", "btc_mxn"]}', "more than once"),
        ('{"duration_seconds": 0}', "from 1 to 60"),
        ('{"duration_seconds": 61}', "from 1 to 60"),
        ('{"duration_seconds": "5"}', "from 1 to 60"),
        ('{"duration_seconds": true}', "from 1 to 60"),
        ('{"minutes": 2}', "unknown field(s) minutes; allowed: books, duration_seconds"),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(harness: Harness, data: str, message: str) -> None:
    harness.fresh_minute()
    reply = harness.post(data=data)
    assert reply.status_code == 400
    assert message in reply.get_json()["error"]
    assert harness.fake.requests == []  # nothing was requested
    assert not harness.data.exists()  # nor claimed


def test_bad_schedule_headers_get_400(harness: Harness) -> None:
    start = harness.fresh_minute()
    reply = harness.post(headers={"X-CloudScheduler-ScheduleTime": "yesterday"})
    assert reply.status_code == 400
    assert "X-CloudScheduler-ScheduleTime='yesterday'" in reply.get_json()["error"]
    reply = harness.post(minute=start + 3600)
    assert reply.status_code == 400
    assert "at most 10 s ahead" in reply.get_json()["error"]


def test_books_in_the_body_replace_the_configured_ones(harness: Harness) -> None:
    minute = harness.fresh_minute()
    reply = harness.post({"books": ["xrp_mxn"], "duration_seconds": 2}, minute=minute)
    assert reply.status_code == 200, reply.get_json()
    assert {entry.book for entry in harness.fake.requests} == {"xrp_mxn"}
    assert reply.get_json()["books"] == ["xrp_mxn"]
    assert reply.get_json()["written"] == 2


def test_an_unknown_book_fails_its_slots_only(harness: Harness) -> None:
    minute = harness.fresh_minute()
    reply = harness.post({"books": ["btc_mxn", "nope_usd"], "duration_seconds": 4}, minute=minute)
    record = reply.get_json()
    assert reply.status_code == 200
    assert record["status"] == "degraded"
    assert record["failed"] == {"unknown_book": 2}
    assert record["per_book"] == {
        "btc_mxn": {"planned": 2, "written": 2},
        "nope_usd": {"planned": 2, "written": 0},
    }
    assert {f["reason"] for f in record["failures"]} == {"unknown_book"}


def test_a_throttled_call_stops_requesting_and_answers_503(harness: Harness) -> None:
    minute = harness.fresh_minute()
    harness.fake.configure(script=["ok", "throttle"])
    reply = harness.post({"duration_seconds": 6}, minute=minute)
    record = reply.get_json()
    assert reply.status_code == 503
    assert record["status"] == "throttled"
    assert len(harness.fake.requests) == 2  # nothing after the throttling reply
    assert record["throttled"] == 1
    assert record["written"] == 1
    assert record["skipped_after_throttle"] == record["slots_planned"] - 2


def test_a_misconfigured_instance_answers_500_naming_the_variable(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.fresh_minute()
    monkeypatch.setenv("REQUESTS_PER_MINUTE", "120")
    reply = harness.post()
    assert reply.status_code == 500
    assert "REQUESTS_PER_MINUTE=120 is outside 1 to 60" in reply.get_json()["error"]
    assert harness.fake.requests == []


def test_logs_are_json_lines_with_the_trace_and_one_summary(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    minute = harness.fresh_minute()
    harness.fake.configure(script=["ok", "5xx"])
    trace = "105445aa7843bc8bf206b12000100000/1;o=1"
    reply = harness.post(
        {"duration_seconds": 2},
        minute=minute,
        headers={"X-Cloud-Trace-Context": trace},
    )
    assert reply.status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines, "nothing was logged"
    run_id = reply.get_json()["run_id"]
    for line in lines:
        assert {"severity", "message", "run_id", "books"} <= set(line)
        assert line["run_id"] == run_id
        assert line["logging.googleapis.com/trace"].endswith("105445aa7843bc8bf206b12000100000")
    summaries = [line for line in lines if line.get("event") == "run_summary"]
    assert len(summaries) == 1
    assert summaries[0]["severity"] == "WARNING"
    assert (summaries[0]["written"], summaries[0]["failed"]) == (1, 1)
    assert summaries[0]["failed_by_reason"] == {"http_5xx": 1}


def test_local_keys_sign_every_request_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key, secret = "key-AbC123", "secret-XyZ789-never-print"
    with FakeBitso(Behaviour(api_key=key, api_secret=secret)) as fake:
        monkeypatch.chdir(tmp_path)
        (tmp_path / ".env").write_text(f"BITSO_API_KEY={key}\nBITSO_API_SECRET={secret}\n")
        monkeypatch.setenv("BITSO_API_URL", fake.url)
        monkeypatch.setenv("LOCAL_DATA_DIR", str(tmp_path / "data"))
        app_module.reset_runtime()
        client = create_app(target="fetch_book", source=str(MAIN)).test_client()
        harness = Harness(client, fake, tmp_path / "data")
        try:
            minute = harness.fresh_minute()
            harness.fake.configure(script=["ok", "5xx"])
            reply = harness.post({"duration_seconds": 2}, minute=minute)
        finally:
            app_module.reset_runtime()
            app_module.clock = ShiftedClock(0)
        assert [entry.auth for entry in fake.requests] == ["valid", "valid"]
    shown = capsys.readouterr().out + reply.get_data(as_text=True)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            shown += path.read_text()
    assert secret not in shown
    assert key not in shown


def test_an_unexpected_error_answers_json_500_and_logs_its_trace(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.fresh_minute()
    runtime = app_module.get_runtime()

    def broken(job: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runtime.collector.strategy, "run", broken)
    reply = harness.post({"duration_seconds": 2})
    assert reply.status_code == 500
    assert reply.get_json() == {"error": "unexpected error: ZeroDivisionError", "status": "error"}
    errors = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert errors[-1]["severity"] == "ERROR"
    assert "ZeroDivisionError: a bug" in errors[-1]["stack_trace"]


def test_a_window_asked_for_mid_minute_is_ok_and_a_late_full_minute_is_degraded(
    harness: Harness,
) -> None:
    minute = harness.fresh_minute(seconds_into=20.0)
    record = harness.post({"duration_seconds": 2}, minute=minute).get_json()
    assert (record["status"], record["slots_missed_late"], record["written"]) == ("ok", 20, 2)

    minute = harness.fresh_minute(seconds_into=57.5)
    record = harness.post(minute=minute).get_json()
    assert record["status"] == "degraded"
    assert record["slots_missed_late"] == 57  # slot 56 (56.949 s) is past its 0.508 s allowance
    assert record["written"] == record["slots_planned"] == 2
