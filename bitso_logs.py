"""Structured logs for both functions: one JSON object a line on stdout, with `severity` and
`message`, so Cloud Logging parses them into jsonPayload. Never pass credentials as fields.

Standard library only; terraform zips this file into each function beside `bitso_format.py`."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import traceback
from typing import Any, TextIO

_write_lock = threading.Lock()
#: `scheme://user:password@`: the credentials a URL can carry. The match stops at whitespace,
#: quotes and backslashes, so in a JSON line it never leaves the string it starts in; a scheme
#: starts a word and userinfo is at most 1024 characters, so no text makes it slow.
_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.\-])([A-Za-z][A-Za-z0-9+.\-]*://)[^\s\"'\\<>@]{1,1024}@"
)


def mask_url_credentials(text: str) -> str:
    """`text` with the user and password of every URL in it replaced by `***`."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


class JsonLogger:
    def __init__(self, stream: TextIO | None = None, **fields: Any) -> None:
        self._stream = stream
        self._fields = fields

    def bind(self, **fields: Any) -> JsonLogger:
        """A logger that adds `fields` to every line (run id, trace, books)."""
        return JsonLogger(self._stream, **{**self._fields, **fields})

    def log(self, severity: str, message: str, exc_info: bool = False, **fields: Any) -> None:
        entry = {"severity": severity, "message": message, **self._fields, **fields}
        if exc_info:  # Error Reporting picks up `stack_trace`
            entry["stack_trace"] = traceback.format_exc()
        # A URL's credentials never reach a log, whichever field carries them.
        line = mask_url_credentials(json.dumps(entry, default=str, separators=(",", ":")))
        stream = self._stream or sys.stdout
        with _write_lock:
            stream.write(line + "\n")
            stream.flush()

    def warning(self, message: str, **fields: Any) -> None:
        self.log("WARNING", message, **fields)

    def error(self, message: str, exc_info: bool = False, **fields: Any) -> None:
        self.log("ERROR", message, exc_info=exc_info, **fields)


def trace_fields(header: str | None, project: str | None = None) -> dict[str, str]:
    """Cloud Logging's trace fields from `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`."""
    if not header:
        return {}
    trace_id, _, rest = header.partition("/")
    span_id = rest.split(";", 1)[0]
    if not trace_id.isalnum():
        return {}
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    fields = {
        "logging.googleapis.com/trace": (
            f"projects/{project}/traces/{trace_id}" if project else trace_id
        )
    }
    if span_id.isdigit():
        fields["logging.googleapis.com/spanId"] = span_id
    return fields
