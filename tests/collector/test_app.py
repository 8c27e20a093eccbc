"""The HTTP function in-process: `create_app(...).test_client()` against the fake Bitso."""

from __future__ import annotations

import json
import math
import re
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

MAIN = Path(__file__).parents[2] / "functions/fetch_book/main.py"


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


def nothing_requested_or_claimed(harness: Harness) -> bool:
    return harness.fake.requests == [] and not harness.data.exists()


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
    assert nothing_requested_or_claimed(harness)


@pytest.mark.parametrize(
    "header",
    [
        "yesterday",
        "0001-01-01T00:00:00+00:01",  # before year 1 in UTC
        "9999-12-31T23:59:59-00:01",  # after year 9999 in UTC
        "2026-11-24T10:16:00",  # no offset
        "2026-02-30T10:16:00Z",
    ],
)
def test_bad_schedule_headers_get_400(harness: Harness, header: str) -> None:
    harness.fresh_minute()
    reply = harness.post(headers={"X-CloudScheduler-ScheduleTime": header})
    assert reply.status_code == 400
    assert reply.get_json()["status"] == "bad_request"
    assert f"X-CloudScheduler-ScheduleTime={header!r}" in reply.get_json()["error"]
    assert nothing_requested_or_claimed(harness)


@pytest.mark.parametrize(
    ("header", "minute"),
    [
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("2000-06-01T12:30:59.999+02:00", "2000-06-01T10:30:00Z"),
    ],
)
def test_a_minute_that_is_over_is_answered_at_once_and_never_claimed(
    harness: Harness, header: str, minute: str
) -> None:
    harness.fresh_minute()
    started = time.monotonic()
    reply = harness.post({"duration_seconds": 5}, headers={"X-CloudScheduler-ScheduleTime": header})
    assert time.monotonic() - started < 1
    record = reply.get_json()
    assert reply.status_code == 410
    assert (record["status"], record["minute"], record["slots_planned"]) == ("too_late", minute, 0)
    assert f"the minute {minute} is over for this call" in record["error"]
    assert nothing_requested_or_claimed(harness)


def test_the_last_minute_is_too_late_once_its_last_slot_is_past(harness: Harness) -> None:
    start = harness.fresh_minute(seconds_into=59.6)  # slot 58 could start until 59.49 s
    reply = harness.post(minute=start)
    assert reply.status_code == 410
    assert reply.get_json()["slots_missed_late"] == 59
    assert nothing_requested_or_claimed(harness)


def test_a_minute_too_far_ahead_is_answered_at_once_and_never_claimed(harness: Harness) -> None:
    start = harness.fresh_minute()
    reply = harness.post(minute=start + 3600)
    record = reply.get_json()
    assert reply.status_code == 422
    assert record["status"] == "too_early"
    assert "3600 s ahead of this server's clock; at most 10 s ahead is allowed" in record["error"]
    assert nothing_requested_or_claimed(harness)


def test_books_in_the_body_replace_the_configured_ones(harness: Harness) -> None:
    minute = harness.fresh_minute()
    reply = harness.post({"books": ["xrp_mxn"], "duration_seconds": 2}, minute=minute)
    assert reply.status_code == 200, reply.get_json()
    assert {entry.book for entry in harness.fake.requests} == {"xrp_mxn"}
    assert reply.get_json()["books"] == ["xrp_mxn"]
    assert reply.get_json()["written"] == 2


@pytest.mark.slow
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


def test_a_claimed_minute_answers_409_saying_it_was_collected_and_when_the_next_starts(
    harness: Harness,
) -> None:
    minute = harness.fresh_minute()
    assert harness.post({"duration_seconds": 1}, minute=minute).status_code == 200
    sent = len(harness.fake.requests)
    again = harness.post({"duration_seconds": 1}, minute=minute)
    assert again.status_code == 409
    record = again.get_json()
    assert record["status"] == "claimed"
    next_minute = iso_millis(seconds_to_ms(minute + 60))
    found = re.fullmatch(
        rf"the minute {iso_millis(seconds_to_ms(minute))[:-5]}Z was already collected "
        rf"\(claimed by another call\), so nothing was requested; the next minute starts at "
        rf"{next_minute}, in (\d+) s",
        record["error"],
    )
    assert found, record["error"]
    assert 50 <= int(found[1]) <= 60  # the first call took its second and its grace
    assert len(harness.fake.requests) == sent


def test_a_misspelled_setting_is_logged_once_naming_the_one_meant(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BITSO_BOOK", "xrp_mxn")
    minute = harness.fresh_minute()
    first = harness.post({"duration_seconds": 1}, minute=minute)
    harness.post({"duration_seconds": 1}, minute=minute)  # settings are read once an instance
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [line for line in lines if line.get("event") == "unknown_setting"]
    assert [(w["severity"], w["message"]) for w in warnings] == [
        (
            "WARNING",
            "BITSO_BOOK (in the environment) is not a setting, so it is ignored; "
            "did you mean BITSO_BOOKS?",
        )
    ]
    assert first.get_json()["books"] == ["btc_mxn", "eth_mxn"]  # BITSO_BOOKS' books


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
    minute = harness.fresh_minute()
    runtime = app_module.get_runtime()

    def broken(job: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(runtime.collector.strategy, "run", broken)
    reply = harness.post({"duration_seconds": 2}, minute=minute)
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


def test_a_deeply_nested_body_is_refused_before_json_parses_it(harness: Harness) -> None:
    harness.fresh_minute()
    reply = harness.post(data="[" * 3000)  # json.loads would raise RecursionError
    assert reply.status_code == 400
    assert "nests arrays or objects 3000 levels deep" in reply.get_json()["error"]
    reply = harness.post(data='{"books": [["btc_mxn"]]}')
    assert reply.status_code == 400
    assert "3 levels deep" in reply.get_json()["error"]
    assert nothing_requested_or_claimed(harness)


def test_a_body_over_the_size_limit_is_a_413_never_parsed(harness: Harness) -> None:
    harness.fresh_minute()
    sixty_thousand_books = json.dumps({"books": [f"b{n}_mxn" for n in range(60_000)]})
    for data in ("[" * 100_000, sixty_thousand_books, " " * 4096 + "{}"):
        reply = harness.post(data=data)
        assert reply.status_code == 413
        assert reply.get_json()["status"] == "too_large"
        assert "larger than 4096 bytes" in reply.get_json()["error"]
    assert nothing_requested_or_claimed(harness)


def test_a_body_of_exactly_the_size_limit_is_served(harness: Harness) -> None:
    minute = harness.fresh_minute()
    body = '{"duration_seconds": 1}'
    reply = harness.post(data=body + " " * (4096 - len(body)), minute=minute)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["written"] == 1


def test_a_call_names_at_most_60_books(harness: Harness) -> None:
    harness.fresh_minute()
    reply = harness.post({"books": [f"b{n}_mxn" for n in range(61)]})
    assert reply.status_code == 400
    assert '"books" names 61 books; at most 60 are allowed' in reply.get_json()["error"]
    assert nothing_requested_or_claimed(harness)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
def test_only_post_and_get_are_served(harness: Harness, method: str) -> None:
    harness.fresh_minute()
    reply = harness.client.open("/", method=method, data='{"duration_seconds": 1}')
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, POST"
    if method != "HEAD":  # a HEAD answer has no body
        assert reply.get_json() == {
            "error": f"method {method} is not allowed; use GET, POST",
            "status": "method_not_allowed",
        }
    assert nothing_requested_or_claimed(harness)


def test_a_get_collects_like_a_post(harness: Harness) -> None:
    minute = harness.fresh_minute(seconds_into=58.6)  # one slot left: 58.983 s
    reply = harness.client.get(
        "/", headers={"X-CloudScheduler-ScheduleTime": iso_millis(seconds_to_ms(minute))}
    )
    assert reply.status_code == 200, reply.get_json()
    assert (reply.get_json()["slots_planned"], reply.get_json()["written"]) == (1, 1)


def test_an_api_url_with_credentials_is_refused_and_the_password_never_shown(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    minute = harness.fresh_minute()
    monkeypatch.setenv("BITSO_API_URL", harness.fake.url.replace("//", "//user:PASSWORD@"))
    reply = harness.post({"duration_seconds": 2}, minute=minute)
    assert reply.status_code == 500
    record = reply.get_json()
    assert record["status"] == "misconfigured"
    assert record["error"].startswith("BITSO_API_URL='http://***@127.0.0.1:")
    assert "carries credentials" in record["error"]
    assert "PASSWORD" not in capsys.readouterr().out + reply.get_data(as_text=True)
    assert nothing_requested_or_claimed(harness)


def test_a_request_that_fails_in_an_unexpected_way_fails_its_slot_with_a_warning(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a key beyond Latin-1 did before keys were checked: the header cannot be encoded."""
    minute = harness.fresh_minute()
    runtime = app_module.get_runtime()

    def unencodable(*args: object, **kwargs: object) -> None:
        "ключ".encode("latin-1")

    monkeypatch.setattr(runtime.collector.strategy.client, "get", unencodable)
    record = harness.post({"duration_seconds": 2}, minute=minute).get_json()
    assert record["failed"] == {"bitso_error": 2}
    assert record["abandoned"] == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [line for line in lines if line["message"] == "slot failed"]
    assert len(warnings) == 2
    assert all(w["detail"].startswith("unexpected UnicodeEncodeError") for w in warnings)


def test_storage_refused_mid_call_is_lost_with_its_path_and_the_record_still_answers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with a directory made unreadable (chmod 000) once the minute is claimed, for a server
    that is not root: every later look-up of a name raises PermissionError."""
    minute = harness.fresh_minute()
    real_exists = Path.exists

    def refused(self: Path, *args: Any, **kwargs: Any) -> bool:
        if self.suffix == ".json" and harness.data in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", refused)
    reply = harness.post({"duration_seconds": 2}, minute=minute)
    record = reply.get_json()
    assert reply.status_code == 500
    assert (record["status"], record["written"], record["requests_sent"]) == ("lost", 0, 2)
    assert [lost["slot"] for lost in record["lost"]] == [
        iso_millis(seconds_to_ms(minute)),
        iso_millis(seconds_to_ms(minute) + 1016),
    ]
    for lost in record["lost"]:
        assert lost["reason"].startswith(f"storage: cannot write {harness.data}/")
        assert lost["reason"].endswith(".json: Permission denied")
    assert record["error"].startswith(f"run record not stored: cannot write {harness.data}/_runs/")
    assert "run_record" not in record


def test_a_minute_that_cannot_be_claimed_answers_its_run_record(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    minute = harness.fresh_minute()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data directory should be")
    monkeypatch.setenv("LOCAL_DATA_DIR", str(blocked))
    reply = harness.post({"duration_seconds": 2}, minute=minute)
    record = reply.get_json()
    assert reply.status_code == 500
    assert (record["status"], record["requests_sent"], record["slots_planned"]) == ("lost", 0, 2)
    assert record["error"].startswith(f"cannot claim the minute: cannot write {blocked}/_runs/")
    assert harness.fake.requests == []
