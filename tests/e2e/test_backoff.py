"""Rate safety across minutes, end to end: the real functions-framework server as a process, the
fake Bitso with a neighbour spending part of the same per-IP budget, consecutive scheduler
minutes on a time-lapse clock (10x) that the server and the fake share.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from bitso_archive import gaps_report
from bitso_format import grid_minute, iso_minute, parse_iso_millis, seconds_to_ms
from bitso_testkit.fake_bitso import Behaviour, FakeBitso
from tests.conftest import StartFunction

pytestmark = pytest.mark.e2e
BOOKS = ("btc_mxn",)
SPEED = 10.0
NEIGHBOUR = 30  # requests a minute, from another client on our IP
MINUTES = 4
LOCKOUT = 60.0
#: How long before its minute each call is sent (virtual seconds).
LEAD = 0.3
#: A request's start as the fake notes it, after the collector's clock said go (virtual s).
ARRIVAL_SLACK = 0.5


def run_minutes(server: Any, first: float) -> list[tuple[int, dict[str, Any]]]:
    """One scheduled call per minute, each sent just before its minute (as Cloud Scheduler's
    call arrives); a call that stopped early after a throttling reply answered long before."""
    answers = []
    for index in range(MINUTES):
        minute_start = first + 60 * index
        server.clock.sleep_until(minute_start - LEAD)
        reply = server.call(minute_start=minute_start)
        answers.append((reply.status_code, reply.json()))
    return answers


def on_grid(minute_start: float, pace: int) -> list[float]:
    minute = seconds_to_ms(minute_start) // 60_000
    return [slot.at for slot in grid_minute(minute, pace, BOOKS)]


@pytest.mark.slow
def test_a_neighbour_on_our_ip_costs_a_share_and_one_lockout_never_two_in_a_row(
    start_function: StartFunction, tmp_path: Path
) -> None:
    with FakeBitso(Behaviour()) as fake:
        server = start_function({"BITSO_BOOKS": ",".join(BOOKS), "BITSO_API_URL": fake.url})
        assert server.clock is not None
        fake.clock = server.clock.now  # the fake's window and lockout on the server's timeline
        first = server.clock.jump_to_minute(-2 * LEAD, speed=SPEED)
        fake.configure(neighbour_per_window=NEIGHBOUR)

        answers = run_minutes(server, first)
        neighbour = fake.neighbour_starts()
        ours = sorted(fake.requests, key=lambda entry: entry.at)

    records = [record for _, record in answers]
    assert [record["minute"] for record in records] == [
        iso_minute(seconds_to_ms(first + 60 * i)) for i in range(MINUTES)
    ]
    # The neighbour kept spending its 30 a minute all along, refused during the lockout too.
    spent = [n for n in neighbour if first <= n.at < first + 60 * (MINUTES - 1)]
    assert len(spent) == NEIGHBOUR * (MINUTES - 1)
    assert any(n.refused for n in spent)

    # Minute 0 at the full pace ran into the shared budget: throttled, then nothing for exactly
    # one lockout after the last throttling reply.
    refused = [entry for entry in ours if entry.status == 420]
    assert refused and all(first <= entry.at < first + 60 for entry in refused)
    last_refused = refused[-1].at
    after = [entry for entry in ours if entry.at > last_refused]
    assert after, "requests must resume"
    silence = after[0].at - last_refused
    assert LOCKOUT <= silence <= LOCKOUT + 60 / 29 + ARRIVAL_SLACK, silence
    gaps = [b.at - a.at for a, b in itertools.pairwise(ours)]
    assert max(gaps) == pytest.approx(silence) and sorted(gaps)[-2] < 5, "one silence only"
    assert all(entry.status == 200 for entry in after), "never throttled again"

    status0, record0 = answers[0]
    assert (status0, record0["status"]) == (503, "throttled")
    assert record0["requests_per_minute"] == 59 and record0["back_off"]["mode"] == "full"
    # Bitso had accepted 30 of ours in the window before it refused one: the rest was the
    # neighbour's, so the pace comes back at 29, under our share.
    assert record0["back_off"]["next_requests_per_minute"] == 29
    silent_until = parse_iso_millis(record0["back_off"]["silent_until"]) / 1000
    assert 0 < silent_until - LOCKOUT - last_refused < ARRIVAL_SLACK

    # Minute 1 began in the silence: its slots before `silent_until` were skipped, the rest
    # requested at the reduced pace, and the record says until when.
    status1, record1 = answers[1]
    assert status1 == 200 and record1["status"] in ("ok", "degraded")
    assert record1["requests_per_minute"] == record1["slots_in_minute"] == 29
    assert record1["back_off"]["mode"] == "backing_off"
    assert record1["back_off"]["silent_until"] == record0["back_off"]["silent_until"]
    silenced = [at for at in on_grid(first + 60, 29) if at < silent_until]
    assert record1["failed"]["backing_off"] == len(silenced) > 0
    assert record1["throttled"] == 0 and record1["requests_sent"] > 0

    # Then clean minutes at the pace the neighbour leaves us: no two throttled minutes in a row.
    for status, record in answers[2:]:
        assert status == 200 and record["throttled"] == 0
        assert record["back_off"]["mode"] == "recovering"
        assert record["requests_per_minute"] == 29
    throttled_minutes = [i for i, record in enumerate(records) if record["throttled"]]
    assert throttled_minutes == [0]

    # Every request after the silence started on a slot of the 29-a-minute grid.
    for entry in after:
        minute_start = entry.at // 60 * 60
        slot = max(at for at in on_grid(minute_start, 29) if at <= entry.at + 1e-6)
        assert entry.at - slot <= 60 / 29 / 2 + ARRIVAL_SLACK, (entry.at, slot)

    # The gap report reads each minute's pace from its run record.
    span = [iso_minute(seconds_to_ms(first + 60 * i)) for i in (0, MINUTES)]
    report = gaps_report(server.data_dir, *span, now=span[1])  # the server's clock runs ahead
    minutes = report.books["btc_mxn"].minutes
    assert [m.requests_per_minute for m in minutes] == [59, 29, 29, 29]
    assert [m.expected for m in minutes] == [59, 29, 29, 29]
    assert minutes[0].throttled and not any(m.throttled for m in minutes[1:])
    assert all(not m.unexpected for m in minutes)
    assert len(minutes[1].missing) >= len(silenced)
    assert minutes[1].run_status == record1["status"]
