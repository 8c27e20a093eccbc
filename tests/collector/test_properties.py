"""Hostile input, generated: whatever body or schedule header a caller sends, the function answers
a 4xx that says what was wrong, never a 500, and sends Bitso nothing (through the real app).

A body or header that happens to be valid must not collect either, so every body is sent for a
minute that is over (a valid one is then `too_late`, 410) and every header names a minute other
than the app's own (a valid one is then `too_late` or `too_early`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bitso_collector import app as app_module
from bitso_format import parse_rfc3339
from bitso_http import SCHEDULE_HEADER
from bitso_testkit.fake_bitso import FakeBitso
from tests.support.schemas import check_run_record

MAIN = Path(__file__).parents[2] / "functions/fetch_book/main.py"
#: Bounded, so the suite stays fast; no deadline, as a call's timing is not what is tested.
BOUNDED = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ANSWER_STATUSES = {"bad_request", "too_large", "too_late", "too_early"}
OVER = "1970-01-01T00:00:00Z"


@dataclass
class App:
    client: FlaskClient
    fake: FakeBitso
    data: Path

    def answer(self, body: bytes, header: str) -> tuple[int, dict[str, Any]]:
        reply = self.client.post("/", data=body, headers={SCHEDULE_HEADER: header})
        document = reply.get_json()
        check_run_record(document)
        return reply.status_code, document

    def assert_refused(self, status: int, document: dict[str, Any]) -> None:
        assert 400 <= status < 500, (status, document)
        assert document["status"] in ANSWER_STATUSES
        assert isinstance(document["error"], str) and document["error"]
        assert self.fake.requests == []
        assert not self.data.exists()  # nothing claimed


@pytest.fixture
def function(
    fake_bitso: FakeBitso, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    monkeypatch.setenv("LOCAL_DATA_DIR", str(tmp_path / "data"))
    app_module.reset_runtime()
    yield App(
        create_app(target="fetch_book", source=str(MAIN)).test_client(),
        fake_bitso,
        tmp_path / "data",
    )
    app_module.reset_runtime()


#: Any JSON value, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
#: Objects with the real field names and values of every kind, so parsing gets past the shape.
field_values = {
    "books": json_values | st.lists(st.text(max_size=12), max_size=70),
    "duration_seconds": json_values | st.floats() | st.integers(-(10**30), 10**30),
}
near_bodies = st.fixed_dictionaries({}, optional=field_values).flatmap(
    lambda body: st.dictionaries(st.text(max_size=8), json_values, max_size=2).map(
        lambda extra: {**body, **extra}
    )
)
bodies = st.one_of(
    st.binary(max_size=5000),
    json_values.map(lambda value: json.dumps(value).encode()),
    near_bodies.map(lambda body: json.dumps(body).encode()),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(0, 6000).map(lambda depth: b"[" * depth),
)


@pytest.mark.slow
@BOUNDED
@given(body=bodies)
def test_any_body_is_a_4xx_with_an_error_and_requests_nothing(function: App, body: bytes) -> None:
    status, document = function.answer(body, OVER)
    function.assert_refused(status, document)


#: Header values as a server hands them over (Latin-1, one line), free-form and time-like.
header_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=60)
time_like = st.builds(
    lambda moment, offset, sep, zone: (
        moment.isoformat(sep=sep, timespec="milliseconds") + (zone or f"{offset:+03d}:00")
    ),
    st.datetimes(),
    st.integers(-23, 23),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["Z", "z", "", None]),
)


def naming_another_minute(header: str) -> bool:
    """False when the header is a valid time within the minute the app could serve now."""
    try:
        moment = parse_rfc3339(header) / 1000
    except ValueError:
        return True
    return not time.time() - 70 < moment < time.time() + 15


@pytest.mark.slow
@BOUNDED
@given(header=st.one_of(header_text, time_like))
def test_any_schedule_header_is_a_4xx_with_an_error_and_requests_nothing(
    function: App, header: str
) -> None:
    assume(header and naming_another_minute(header))  # an empty header is no header
    status, document = function.answer(b"", header)
    function.assert_refused(status, document)
