"""The shared JSON logger: one object a line, and no URL credentials in any field."""

from __future__ import annotations

import io
import json

from bitso_logs import JsonLogger, mask_url_credentials


def test_url_credentials_are_masked_in_every_field_and_lines_stay_json() -> None:
    stream = io.StringIO()
    log = JsonLogger(stream, api="https://user:PASSWORD@bitso.example/v3")
    log.warning(
        "cannot reach http://user:PASSWORD@bitso.example: refused",
        detail={"url": "http://PASSWORD@h", "mail": "x@y", "plain": "http://bitso.example/a"},
    )
    text = stream.getvalue()
    assert "PASSWORD" not in text
    line = json.loads(text)
    assert line["message"] == "cannot reach http://***@bitso.example: refused"
    assert line["api"] == "https://***@bitso.example/v3"
    assert line["detail"] == {
        "url": "http://***@h",
        "mail": "x@y",
        "plain": "http://bitso.example/a",
    }


def test_masking_leaves_text_without_credentials_alone() -> None:
    for text in ("http://bitso.example/a", "a://" * 1000, "x" * 10_000, "name@example.com"):
        assert mask_url_credentials(text) == text
    # An '@' later in a URL is masked up to it as well: erring on the safe side.
    assert mask_url_credentials("http://bitso.example/a@b") == "http://***@b"
