"""Structured logs for both functions: one JSON object a line on stdout, with `severity` and
`message`, so Cloud Logging parses them into jsonPayload. Never pass credentials as fields.
On a terminal (`bitso-collect` run by hand) the same entries can be readable lines instead.

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


#: Fields a readable line leaves out: what every line of a call repeats (its run, minute and
#: books), and Cloud Logging's trace.
_CONTEXT_FIELDS = frozenset({"run_id", "minute", "books"})
#: Fields that say where something happened (which slot of which book) rather than what: lines
#: that differ only in them are repeats.
_OCCURRENCE_FIELDS = frozenset({"book", "slot"})


class ReadableLines:
    """Entries as lines for a person at a terminal: `severity: message  key=value ...` (an entry
    with an `event` is a record for queries whose message says it all: the message alone).

    A line that repeats the one before it, where it happened aside (`_OCCURRENCE_FIELDS`), is
    counted rather than printed; the count comes out as `  ... (xN more)` before the next
    different line, or at `flush`."""

    def __init__(self) -> None:
        self._last: tuple[str, ...] | None = None
        self._repeats = 0

    def lines(self, entry: dict[str, Any]) -> list[str]:
        shown = {
            name: value
            for name, value in entry.items()
            if name not in ("severity", "message", "stack_trace", *_CONTEXT_FIELDS)
            and not name.startswith("logging.googleapis.com/")
        }
        what = [entry["severity"], entry["message"]]
        what += [f"{n}={_text(v)}" for n, v in shown.items() if n not in _OCCURRENCE_FIELDS]
        key = tuple(what)
        if key == self._last:
            self._repeats += 1
            return []
        lines = self.flush()
        self._last = key
        line = f"{entry['severity'].lower()}: {entry['message']}"
        if "event" not in entry and shown:
            line += "  " + " ".join(f"{name}={_text(value)}" for name, value in shown.items())
        lines.append(line)
        if "stack_trace" in entry:
            lines.append(str(entry["stack_trace"]).rstrip("\n"))
        return lines

    def flush(self) -> list[str]:
        """The count of repeats not yet printed, if any; the next line is news again."""
        lines = [f"  ... (x{self._repeats} more)"] if self._repeats else []
        self._last = None
        self._repeats = 0
        return lines


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


class JsonLogger:
    """One JSON object a line; or, given `readable` lines (a terminal), those."""

    def __init__(
        self, stream: TextIO | None = None, readable: ReadableLines | None = None, **fields: Any
    ) -> None:
        self._stream = stream
        self._readable = readable
        self._fields = fields

    def bind(self, **fields: Any) -> JsonLogger:
        """A logger that adds `fields` to every line (run id, trace, books)."""
        return JsonLogger(self._stream, self._readable, **{**self._fields, **fields})

    def log(self, severity: str, message: str, exc_info: bool = False, **fields: Any) -> None:
        entry = {"severity": severity, "message": message, **self._fields, **fields}
        if exc_info:  # Error Reporting picks up `stack_trace`
            entry["stack_trace"] = traceback.format_exc()
        with _write_lock:
            if self._readable is None:
                lines = [json.dumps(entry, default=str, separators=(",", ":"))]
            else:
                lines = self._readable.lines(entry)
            self._write(lines)

    def flush(self) -> None:
        """Print what is held back (the count of repeated readable lines): before other output."""
        if self._readable is not None:
            with _write_lock:
                self._write(self._readable.flush())

    def _write(self, lines: list[str]) -> None:
        stream = self._stream or sys.stdout
        for line in lines:
            # A URL's credentials never reach a log, whichever field carries them.
            stream.write(mask_url_credentials(line) + "\n")
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
