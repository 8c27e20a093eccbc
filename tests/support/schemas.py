"""The repository's JSON Schemas, for tests that check what the collector writes and answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SNAPSHOT = json.loads((SCHEMAS / "snapshot.schema.json").read_text())
RUN_RECORD = json.loads((SCHEMAS / "run_record.schema.json").read_text())
STREAM_LINE = json.loads((SCHEMAS / "stream_line.schema.json").read_text())


def check_run_record(body: Any) -> None:
    """A reply that carries a run record must match its schema (error replies carry none)."""
    if isinstance(body, dict) and "schema_version" in body:
        jsonschema.validate(body, RUN_RECORD)
