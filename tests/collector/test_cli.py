"""`make run`'s command: waits for the next minute, collects, reports where files went."""

from __future__ import annotations

import json
import math
import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bitso_collector.cli import main
from bitso_collector.clock import ShiftedClock, SystemClock
from bitso_collector.reachability import unreachable
from bitso_format import iso_millis, iso_minute, seconds_to_ms
from bitso_testkit.fake_bitso import FakeBitso
from bitso_testkit.processes import REPO, base_env, free_port


def clock_before_a_minute(lead_s: float) -> ShiftedClock:
    """A clock that reads `lead_s` seconds before a whole minute five minutes ahead (so never
    one an earlier test collected)."""
    start = (math.ceil(time.time() / 60) + 5) * 60.0
    return ShiftedClock(start - lead_s - time.time())


def test_collects_into_the_local_directory_from_the_next_minute(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    monkeypatch.setenv("LOCAL_DATA_DIR", "collected")
    clock = clock_before_a_minute(1.0)  # one second before a minute begins

    assert main(["--books", "eth_mxn,xrp_mxn", "--duration", "2"], clock) == 0

    files = sorted((tmp_path / "collected").glob("[0-9]*/**/*.json"))
    assert [json.loads(f.read_text())["book"] for f in files] == ["eth_mxn", "xrp_mxn"]
    assert all(json.loads(f.read_text())["slot"].endswith(("00.000Z", "01.016Z")) for f in files)
    err = capsys.readouterr().err
    assert "waiting 1 s for" in err
    assert "ok, 2 of 2 snapshots written to collected" in err


def test_bad_settings_exit_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATEGY", "fastest")
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "STRATEGY='fastest' is not allowed" in capsys.readouterr().err


def test_a_sink_that_cannot_claim_exits_1_with_one_line(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    (tmp_path / "blocked").write_text("a file where the data directory should be")
    monkeypatch.setenv("LOCAL_DATA_DIR", "blocked")
    clock = clock_before_a_minute(0.5)

    assert main(["--duration", "1"], clock) == 1

    err = capsys.readouterr().err
    assert "cannot claim the minute: cannot write blocked/_runs/" in err
    assert "Traceback" not in err
    assert fake_bitso.requests == []


def test_a_minute_that_stores_nothing_exits_1_and_says_why(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    fake_bitso.configure(default="5xx")  # reachable, but every reply is a 503
    clock = clock_before_a_minute(0.5)

    assert main(["--duration", "2"], clock) == 1

    captured = capsys.readouterr()
    assert "degraded, 0 of 2 snapshots written to data" in captured.err
    assert "failed: http_5xx 2; nothing was stored" in captured.err
    failures = [json.loads(line) for line in captured.out.splitlines() if "slot failed" in line]
    assert len(failures) == 2  # piped (not a terminal): every line JSON, none collapsed
    assert all(line["reason"] == "http_5xx" for line in failures)


@contextmanager
def terminal_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """sys.stdout on a pseudo-terminal, as when a person runs the command; yields the lines the
    terminal showed, complete once the block ends."""
    controller, follower = pty.openpty()
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal was closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    lines: list[str] = []
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stdout", terminal)
        yield lines
        monkeypatch.undo()
    reader.join(timeout=10)
    os.close(controller)
    lines += shown.decode().splitlines()


def test_on_a_terminal_logs_are_readable_lines_with_repeats_collapsed(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"BITSO_API_URL={fake_bitso.url}\nBITSO_BOOK=eth_mxn\n")
    fake_bitso.configure(default="5xx")
    clock = clock_before_a_minute(0.5)

    with terminal_stdout(monkeypatch) as shown:
        assert main(["--duration", "4"], clock) == 1

    assert shown[0] == (
        "warning: BITSO_BOOK (in .env) is not a setting, so it is ignored; "
        "did you mean BITSO_BOOKS?"
    )
    assert re.fullmatch(
        r"warning: slot failed  book=btc_mxn slot=\S+:00\.000Z reason=http_5xx detail=HTTP 503",
        shown[1],
    )
    assert shown[2:] == [
        "  ... (x3 more)",
        "warning: run finished: degraded, 0 of 4 snapshots written",
    ]
    assert not any(line.startswith("{") for line in shown)
    last = capsys.readouterr().err.splitlines()[-1]
    assert "degraded, 0 of 4 snapshots written to data" in last
    assert last.endswith("; failed: http_5xx 4; nothing was stored")


class NeverWaits(SystemClock):
    """A clock that fails the test if the command waits for its minute."""

    def sleep_until(self, when: float) -> None:
        raise AssertionError(f"waited {when - self.now():.1f} s for a minute")


@pytest.mark.parametrize(
    ("url", "host", "cause"),
    [
        # A port nobody listens on, drawn when the test runs (not when it is collected, so
        # parallel workers collect the same test).
        ("http://127.0.0.1:{free_port}", "127.0.0.1:", "connection refused"),
        ("http://no-such-host.invalid", "no-such-host.invalid:80", "name resolution failed ("),
        ("https://no-such-host.invalid:8443/x", "no-such-host.invalid:8443", "name resolution"),
    ],
)
def test_an_unreachable_bitso_is_said_at_once_without_waiting_for_a_minute(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    host: str,
    cause: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    url = url.replace("{free_port}", str(free_port()))
    monkeypatch.setenv("BITSO_API_URL", url)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)

    assert main(["--minutes", "3"], NeverWaits()) == 1

    captured = capsys.readouterr()
    last = captured.err.splitlines()[-1]
    assert last.startswith(f"bitso-collect: cannot reach Bitso at {host}")
    assert f": {cause}" in last
    assert last.endswith(
        f"nothing was collected (check BITSO_API_URL={url.rstrip('/')} and the network)"
    )
    assert captured.out == ""  # not one slot was tried
    assert not (tmp_path / "data").exists()


def test_the_command_stops_within_15_s_when_bitso_does_not_resolve(tmp_path: Path) -> None:
    env = base_env({"BITSO_API_URL": "http://no-such-host.invalid"})
    finished = subprocess.run(
        [str(Path(sys.executable).parent / "bitso-collect"), "--minutes", "5"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=15,  # the promise; without the check it waits for the next minute
    )
    assert finished.returncode == 1
    last = finished.stderr.splitlines()[-1]
    assert last.startswith("bitso-collect: cannot reach Bitso at no-such-host.invalid:80: ")
    assert "name resolution failed" in last


def test_through_a_proxy_it_is_the_proxy_that_must_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    problem = unreachable("https://no-such-host.invalid")
    assert str(problem) == (
        f"cannot reach Bitso at no-such-host.invalid:443 through the proxy 127.0.0.1:{port}: "
        "connection refused"
    )


def test_a_bitso_that_never_answers_is_given_up_on() -> None:
    """A listener whose queue is full leaves new connections unanswered (as a blackhole does)."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        url = f"http://127.0.0.1:{full.getsockname()[1]}"
        with socket.create_connection(full.getsockname(), timeout=5):  # fills the queue
            hung = unreachable(url, connect_timeout=0.3)
            given_up = unreachable(url, connect_timeout=30, give_up_after=0.3)
    assert hung is not None and hung.cause == "no connection within 0.3 s"
    assert given_up is not None
    assert given_up.cause == "no answer within 0.3 s (name resolution or connection)"


def test_a_reachable_bitso_passes_the_check_without_a_request(fake_bitso: FakeBitso) -> None:
    assert unreachable(fake_bitso.url) is None
    assert fake_bitso.requests == []  # a connection opened and closed: nothing of the budget


def test_a_minute_collected_already_says_so_and_when_the_next_starts(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    clock = clock_before_a_minute(0.5)
    start = math.ceil(clock.now() / 60) * 60.0
    assert main(["--duration", "1"], clock) == 0
    sent = len(fake_bitso.requests)

    assert main(["--now", "--duration", "1"], clock) == 1  # the same minute again

    last = capsys.readouterr().err.splitlines()[-1]
    minute = iso_minute(seconds_to_ms(start))
    found = re.fullmatch(
        rf"{minute}: claimed; the minute {minute} was already collected "
        r"\(claimed by another call\), so nothing was requested; the next minute "
        rf"starts at {iso_millis(seconds_to_ms(start + 60))}, in (\d+) s",
        last,
    )
    assert found, last
    assert 50 <= int(found[1]) <= 60
    assert len(fake_bitso.requests) == sent


def test_progress_is_printed_while_a_minute_runs(
    fake_bitso: FakeBitso,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BITSO_API_URL", fake_bitso.url)
    clock = clock_before_a_minute(0.2)

    assert main(["--duration", "3"], clock, progress_every=0.8) == 0

    lines = capsys.readouterr().err.splitlines()
    progress = [re.fullmatch(r".*Z: (\d+) s in, (\d+) snapshots written so far", x) for x in lines]
    counts = [(int(m[1]), int(m[2])) for m in progress if m]
    assert len(counts) >= 2  # every 0.8 s of a call that takes 3 s and its reply grace
    assert counts == sorted(counts) and counts[-1][1] <= 3
    assert lines[-1].split("Z: ", 1)[1].startswith("ok, 3 of 3 snapshots written")


def test_make_serve_listens_on_this_machine_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")  # an exported HOST does not widen it

    def serve_command(*overrides: str) -> str:
        shown = subprocess.run(
            ["make", "--dry-run", "--no-print-directory", "serve", *overrides],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return " ".join(shown.replace("\\\n", " ").split())

    assert "functions-framework --target=fetch_book" in serve_command()
    assert "--host=127.0.0.1 --port=8080" in serve_command()
    assert "--host=0.0.0.0 --port=9000" in serve_command("HOST=0.0.0.0", "PORT=9000")
