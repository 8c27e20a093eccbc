"""Normalisation to schema version 1, on a real Bitso reply."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jsonschema
import pytest

from bitso_collector.errors import (
    BitsoApiError,
    HttpError,
    MalformedReply,
    ServerError,
    Throttled,
    UnknownBook,
)
from bitso_collector.replies import parse_order_book_reply
from bitso_collector.snapshot import encode, normalise
from tests.support.schemas import SNAPSHOT

SAMPLE = (Path(__file__).parents[1] / "fixtures/publicOrderBook.json").read_bytes()
T = 1_795_515_307.118  # 2026-11-24T10:15:07.118Z


def sample_payload() -> dict[str, object]:
    return parse_order_book_reply(200, SAMPLE)


def test_a_real_reply_becomes_a_valid_snapshot_with_the_exact_strings() -> None:
    payload = sample_payload()
    snapshot = normalise("btc_mxn", T, T + 0.001, T + 0.183, payload, aggregate=True)
    jsonschema.validate(snapshot, SNAPSHOT)
    assert list(snapshot) == [
        "schema_version", "book", "slot", "requested_at", "received_at", "latency_ms",
        "sequence", "updated_at", "aggregate", "bids", "asks",
    ]  # fmt: skip
    assert snapshot["slot"] == "2026-11-24T10:15:07.118Z"
    assert snapshot["requested_at"] == "2026-11-24T10:15:07.119Z"
    assert snapshot["received_at"] == "2026-11-24T10:15:07.301Z"
    assert snapshot["latency_ms"] == 182.0
    assert snapshot["sequence"] == 18805917
    assert snapshot["updated_at"] == "2017-08-01T21:07:54+00:00"
    assert snapshot["bids"][0] == {"price": "46850.01", "amount": "0.60271953"}
    raw = json.loads(SAMPLE)["payload"]
    assert [b["price"] for b in snapshot["bids"]] == [b["price"] for b in raw["bids"]]
    assert [a["amount"] for a in snapshot["asks"]] == [a["amount"] for a in raw["asks"]]
    assert (len(snapshot["bids"]), len(snapshot["asks"])) == (32, 34)


def test_encoding_keeps_strings_and_is_one_line() -> None:
    snapshot = normalise("btc_mxn", T, T, T, sample_payload(), aggregate=True)
    data = encode(snapshot)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert b'"price":"46850.01"' in data  # never re-formatted as a number
    assert json.loads(data) == snapshot
    zipped = encode(snapshot, "gzip")
    assert gzip.decompress(zipped) == data
    assert encode(snapshot, "gzip") == zipped  # deterministic bytes


def test_order_level_books_keep_oid() -> None:
    payload = {
        "bids": [{"book": "btc_mxn", "price": "1.10", "amount": "2.0", "oid": "abc"}],
        "asks": [{"book": "btc_mxn", "price": "1.20", "amount": "0.00000001", "oid": "def"}],
        "sequence": "7",
        "updated_at": "2026-11-24T10:15:07+00:00",
    }
    snapshot = normalise("btc_mxn", T, T, T, payload, aggregate=False)
    jsonschema.validate(snapshot, SNAPSHOT)
    assert snapshot["asks"] == [{"price": "1.20", "amount": "0.00000001", "oid": "def"}]
    payload["bids"][0].pop("oid")
    with pytest.raises(MalformedReply, match=r"bids\[0\]\.oid"):
        normalise("btc_mxn", T, T, T, payload, aggregate=False)


@pytest.mark.parametrize(
    ("price", "amount"),
    [(46850.01, "1.0"), ("1e5", "1.0"), ("1.0", None), ("-1.0", "1.0"), ("1.0\n", "1.0")],
)
def test_non_decimal_strings_are_refused(price: object, amount: object) -> None:
    payload = {"bids": [{"price": price, "amount": amount}], "asks": [], "sequence": "1"}
    with pytest.raises(MalformedReply):
        normalise("btc_mxn", T, T, T, payload, aggregate=True)


def envelope(code: str, message: str = "m") -> bytes:
    return json.dumps({"success": False, "error": {"code": code, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (420, envelope("0801"), Throttled),
        (429, b"", Throttled),
        (400, envelope("0802"), Throttled),
        (400, envelope("0301", "Unknown order book nope_usd"), UnknownBook),
        (400, envelope("0201"), BitsoApiError),
        (500, envelope("0100"), ServerError),
        (503, b"<html>busy</html>", ServerError),
        (404, b"", HttpError),
        (200, b'{"success": true, "payload": {"bids": [{"pri', MalformedReply),
        (200, b"[]", MalformedReply),
        (200, b'{"success": true, "payload": {"bids": []}}', MalformedReply),
    ],
)
def test_each_failure_has_its_own_error_type(
    status: int, body: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        parse_order_book_reply(status, body)
    assert type(caught.value) is error


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sequence": "-5"}, "sequence"),
        ({"sequence": None}, "sequence"),
        ({"sequence": "12a"}, "sequence"),
        ({"updated_at": None}, "updated_at"),
        ({"updated_at": ""}, "updated_at"),
    ],
)
def test_a_bad_sequence_or_update_time_is_refused(changes: dict[str, object], message: str) -> None:
    payload = {**sample_payload(), **changes}
    with pytest.raises(MalformedReply, match=message):
        normalise("btc_mxn", T, T, T, payload, aggregate=True)
