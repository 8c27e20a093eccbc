"""Snapshot normalisation to schema version 1: the exact decimal strings Bitso sent."""

from __future__ import annotations

import gzip
import json
from typing import Any

from bitso_format import DECIMAL_PATTERN, SNAPSHOT_SCHEMA_VERSION, iso_millis, seconds_to_ms

from .errors import MalformedReply


def _levels(levels: list[Any], side: str, keep_oid: bool) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for index, level in enumerate(levels):
        if not isinstance(level, dict):
            raise MalformedReply(f"{side}[{index}] is not an object")
        price, amount = level.get("price"), level.get("amount")
        if not (isinstance(price, str) and DECIMAL_PATTERN.fullmatch(price)):
            raise MalformedReply(f"{side}[{index}].price is not a decimal string: {price!r}")
        if not (isinstance(amount, str) and DECIMAL_PATTERN.fullmatch(amount)):
            raise MalformedReply(f"{side}[{index}].amount is not a decimal string: {amount!r}")
        entry = {"price": price, "amount": amount}
        if keep_oid:
            oid = level.get("oid")
            if not (isinstance(oid, str) and oid):
                raise MalformedReply(f"{side}[{index}].oid is missing in an order-level book")
            entry["oid"] = oid
        out.append(entry)
    return out


def normalise(
    book: str,
    slot_at: float,
    requested_at: float,
    received_at: float,
    payload: dict[str, Any],
    aggregate: bool,
) -> dict[str, Any]:
    """The stored snapshot for one reply, in the field order of the design."""
    raw_sequence = str(payload.get("sequence"))
    if not (raw_sequence.isascii() and raw_sequence.isdigit()):
        raise MalformedReply(f"sequence is not a whole number: {payload.get('sequence')!r}")
    updated_at = payload.get("updated_at")
    if not (isinstance(updated_at, str) and updated_at):
        raise MalformedReply(f"updated_at is missing or not a string: {updated_at!r}")
    return {
        "schema_version": SNAPSHOT_SCHEMA_VERSION,
        "book": book,
        "slot": iso_millis(seconds_to_ms(slot_at)),
        "requested_at": iso_millis(seconds_to_ms(requested_at)),
        "received_at": iso_millis(seconds_to_ms(received_at)),
        "latency_ms": round((received_at - requested_at) * 1000, 1),
        "sequence": int(raw_sequence),
        "updated_at": updated_at,
        "aggregate": aggregate,
        "bids": _levels(payload["bids"], "bids", keep_oid=not aggregate),
        "asks": _levels(payload["asks"], "asks", keep_oid=not aggregate),
    }


def encode(snapshot: dict[str, Any], compression: str = "none") -> bytes:
    """One JSON line (NDJSON-ready); gzip with a fixed mtime so equal input gives equal bytes."""
    data = (json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    return gzip.compress(data, mtime=0) if compression == "gzip" else data
