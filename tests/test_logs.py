"""The shared JSON logger: one object a line, and no URL credentials in any field."""

from __future__ import annotations

import io
import json

from bitso_logs import JsonLogger, ReadableLines, mask_url_credentials


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


def readable_log() -> tuple[JsonLogger, io.StringIO]:
    stream = io.StringIO()
    return JsonLogger(stream, ReadableLines()), stream


def test_readable_lines_collapse_repeats_that_differ_only_in_slot_and_book() -> None:
    log, stream = readable_log()
    call = log.bind(run_id="abc", minute="2026-11-24T10:16:00Z", books=["btc_mxn", "eth_mxn"])
    for number in range(59):
        call.warning(
            "slot failed",
            book=("btc_mxn", "eth_mxn")[number % 2],
            slot=f"2026-11-24T10:16:{number:02d}.000Z",
            reason="connection",
            detail="cannot reach http://127.0.0.1:9: connection refused",
        )
    call.warning("slot failed", book="btc_mxn", slot="x", reason="timeout", detail="no reply")
    call.log("INFO", "run finished: degraded, 0 of 60 snapshots written", event="run_summary")
    assert stream.getvalue().splitlines() == [
        "warning: slot failed  book=btc_mxn slot=2026-11-24T10:16:00.000Z reason=connection "
        "detail=cannot reach http://127.0.0.1:9: connection refused",
        "  ... (x58 more)",
        "warning: slot failed  book=btc_mxn slot=x reason=timeout detail=no reply",
        "info: run finished: degraded, 0 of 60 snapshots written",
    ]


def test_the_count_of_repeats_comes_out_on_flush_and_the_next_line_is_news_again() -> None:
    log, stream = readable_log()
    for _ in range(3):
        log.warning("stream connection lost; reopening", reason="error")
    assert stream.getvalue().splitlines() == [
        "warning: stream connection lost; reopening  reason=error"
    ]
    log.flush()
    log.flush()  # nothing more held back
    log.warning("stream connection lost; reopening", reason="error")
    assert stream.getvalue().splitlines()[1:] == [
        "  ... (x2 more)",
        "warning: stream connection lost; reopening  reason=error",
    ]


def test_readable_lines_mask_url_credentials_and_keep_the_stack_trace() -> None:
    log, stream = readable_log()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.error("unexpected error", exc_info=True, url="https://user:PASSWORD@bitso.example")
    text = stream.getvalue()
    assert "PASSWORD" not in text
    assert text.startswith("error: unexpected error  url=https://***@bitso.example\n")
    assert "RuntimeError: boom" in text


def test_json_lines_are_never_collapsed() -> None:
    stream = io.StringIO()
    log = JsonLogger(stream)
    for _ in range(3):
        log.warning("slot failed", reason="connection")
    log.flush()
    assert [json.loads(line)["reason"] for line in stream.getvalue().splitlines()] == [
        "connection"
    ] * 3
